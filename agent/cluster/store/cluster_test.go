package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

func memberNames(t *testing.T, c *Client) ([]string, error) {
	t.Helper()
	members, err := c.Members(context.Background())
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range members {
		if m.Learner {
			return nil, fmt.Errorf("member %q is still a learner", m.Name)
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names, nil
}

// TestThreeMembers joins two members to a first one, checks that data written through one member is read through
// another, that two of three keep serving writes, that a restarted member is back in the cluster, and that a
// member that leaves is gone with its files.
func TestThreeMembers(t *testing.T) {
	// Not parallel: its three members would add to the load under which the parallel tests time lease expiry.
	// It takes about 15 s, 10 of them etcd's refusing member changes until the leader has been connected to
	// every member for 5 s (after node-2's join, and after node-1's restart).
	log := testLog(t)
	ctx := context.Background()
	n1 := initNode(t, log)
	n2 := joinNode(t, "node-2", n1.m.ClientURL(), log)
	n3 := joinNode(t, "node-3", n1.m.ClientURL(), log)
	m1 := n1.m // the resumed member once node-1 restarts
	defer func() { closeLeaderFirst(m1, n2.m, n3.m) }()

	c1 := connect(t, log, n1.m.ClientURL())
	if names, err := memberNames(t, c1); err != nil || !slices.Equal(names, []string{"node-1", "node-2", "node-3"}) {
		t.Fatalf("members: %v, %v; want node-1..3, all voting", names, err)
	}
	for _, n := range []*node{n2, n3} {
		ms, err := LoadMembership(n.root)
		if err != nil || ms == nil || ms.ClusterName != n1.ms.ClusterName || !ms.Member || !slices.Contains(ms.Endpoints, n1.m.ClientURL()) {
			t.Fatalf("membership of %s: %+v, %v; want cluster %s with node-1's endpoint", n.m.Name(), ms, err, n1.ms.ClusterName)
		}
	}

	// Written through node-1, read through node-3.
	if _, err := c1.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.36")); err != nil {
		t.Fatal(err)
	}
	c3 := connect(t, log, n3.m.ClientURL())
	if ds, err := c3.GetDaemonSet(ctx, "default", "logs"); err != nil || ds.Spec.Template.Spec.Containers[0].Image != "busybox:1.36" {
		t.Fatalf("read through node-3: %v, %v", ds, err)
	}

	// node-1 stops (it was the first, likely the leader): node-2 and node-3 still take writes.
	c23 := connect(t, log, n2.m.ClientURL(), n3.m.ClientURL())
	n1.m.Close()
	eventually(t, 10*time.Second, func() error {
		_, err := c23.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.37"))
		return err
	})
	if ds, err := c3.GetDaemonSet(ctx, "default", "logs"); err != nil || ds.Generation != 2 {
		t.Fatalf("after losing node-1: %v, %v; want generation 2", ds, err)
	}

	// node-1's agent restarts: its membership brings it back into the cluster, with what it missed.
	resumed, ms1, err := Resume(ctx, n1.root, log, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	m1 = resumed
	if ms1.ClusterName != n1.ms.ClusterName || m1.ID() != n1.m.ID() {
		t.Fatalf("resumed as %x in %s, want %x in %s", m1.ID(), ms1.ClusterName, n1.m.ID(), n1.ms.ClusterName)
	}
	c1b := connect(t, log, m1.ClientURL())
	eventually(t, 10*time.Second, func() error {
		ds, err := c1b.GetDaemonSet(ctx, "default", "logs")
		if err == nil && ds.Generation != 2 {
			err = fmt.Errorf("node-1 serves generation %d, want 2", ds.Generation)
		}
		return err
	})

	// node-3 leaves: two members remain, node-3's etcd stopped and its files are gone.
	stop3, err := c3.RegisterNode(ctx, Node{Name: "node-3"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stop3()
	if err := Leave(ctx, c3, n3.m, n3.root, removeVia(c3, "node-3")); err != nil {
		t.Fatal(err)
	}
	if names, err := memberNames(t, c1b); err != nil || !slices.Equal(names, []string{"node-1", "node-2"}) {
		t.Fatalf("members after node-3 left: %v, %v", names, err)
	}
	select {
	case <-n3.m.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("node-3's etcd still runs after leave")
	}
	if _, err := os.Stat(DataDir(n3.root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node-3's etcd data after leave: %v, want it deleted", err)
	}
	if ms, err := LoadMembership(n3.root); ms != nil || err != nil {
		t.Fatalf("node-3's membership after leave: %v, %v; want none", ms, err)
	}
	if _, err := nodeByName(t, c1b, "node-3"); err == nil {
		t.Fatal("node-3's node record survived leave")
	}
	if err := Leave(ctx, c3, n3.m, n3.root, removeVia(c3, "node-3")); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("leaving twice: %v, want ErrNotInCluster", err)
	}

	// Writes still work on the two that remain.
	if _, err := c1b.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.38")); err != nil {
		t.Fatal(err)
	}
}

// TestJoinCleansUpWhenTheMemberCannotStart: the joining member cannot bind its peer port: StartJoining leaves no
// data behind, and removing the learner (what the join service's abort does) leaves the cluster as it was.
func TestJoinCleansUpWhenTheMemberCannotStart(t *testing.T) {
	log := testLog(t)
	ctx := context.Background()
	n1 := initNode(t, log)
	c1 := connect(t, log, n1.m.ClientURL())

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	root := t.TempDir()
	_, id, err := startJoining(t, root, "node-2", "https://"+busy.Addr().String(), n1.m.ClientURL(), log)
	if err == nil || !strings.Contains(err.Error(), "node-2") {
		t.Fatalf("join on a busy peer port: %v, want an error naming the member", err)
	}
	if err := c1.RemoveMemberID(ctx, id); err != nil {
		t.Fatal(err)
	}
	if names, err := memberNames(t, c1); err != nil || !slices.Equal(names, []string{"node-1"}) {
		t.Fatalf("members after the failed join: %v, %v; want only node-1", names, err)
	}
	if _, err := os.Stat(DataDir(root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data dir after the failed join: %v", err)
	}
	if ms, _ := LoadMembership(root); ms != nil {
		t.Fatalf("membership after the failed join: %+v", ms)
	}
	// The cluster took no harm, and the node can join for real now.
	if _, err := c1.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.36")); err != nil {
		t.Fatal(err)
	}
	busy.Close()
	n2 := joinNode(t, "node-2", n1.m.ClientURL(), log)
	defer closeLeaderFirst(n1.m, n2.m)
	if names, err := memberNames(t, c1); err != nil || !slices.Equal(names, []string{"node-1", "node-2"}) {
		t.Fatalf("members after the second join: %v, %v", names, err)
	}
}

func TestLastMemberLeavingEndsTheCluster(t *testing.T) {
	log := testLog(t)
	n := initNode(t, log)
	c := connect(t, log, n.m.ClientURL())
	if err := Leave(context.Background(), c, n.m, n.root, removeVia(c, "node-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(DataDir(n.root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data dir after leave: %v", err)
	}
	// Out of the cluster, the node can start a new one.
	m, ms, err := initAt(t, n.root, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if ms.ClusterName == n.ms.ClusterName {
		t.Fatalf("new cluster has the old one's ID %s", ms.ClusterName)
	}
}

// TestClientOnlyNode: with cluster.etcd-endpoints set, a node joins as a client of the cluster's etcd, runs no
// member, resumes as a client, and leaves without touching the members.
func TestClientOnlyNode(t *testing.T) {
	log := testLog(t)
	ctx := context.Background()
	n1 := initNode(t, log)
	root := t.TempDir()
	admin := connect(t, log, n1.m.ClientURL())
	if err := admin.AddNodeUser(ctx, "node-2"); err != nil {
		t.Fatal(err)
	}
	ms, err := JoinAsClient(ctx, root, "node-2", []string{n1.m.ClientURL()}, issueTLS(pki.NodeCN("node-2"), pki.UsageClient), false, "", log)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Member || ms.ClusterName != n1.ms.ClusterName || ms.PeerURL != "" {
		t.Fatalf("client-only membership %+v, want no member, cluster %s", ms, n1.ms.ClusterName)
	}
	m, resumed, err := Resume(ctx, root, log, testOpts...)
	if err != nil || m != nil || resumed == nil || resumed.NodeName != "node-2" {
		t.Fatalf("resume of a client-only node: (%v, %+v, %v), want no member and its membership", m, resumed, err)
	}
	if _, err := os.Stat(DataDir(root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a client-only node has etcd data: %v", err)
	}
	c := connectAs(t, issueTLS(pki.NodeCN("node-2"), pki.UsageClient), log, resumed.Endpoints...)
	stop, err := c.RegisterNode(ctx, Node{Name: "node-2"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := Leave(ctx, c, nil, root, nil); err != nil {
		t.Fatal(err)
	}
	if ms, _ := LoadMembership(root); ms != nil {
		t.Fatalf("membership after leave: %+v", ms)
	}
	if _, err := nodeByName(t, admin, "node-2"); err == nil {
		t.Fatal("node-2's record survived leave")
	}
	if names, err := memberNames(t, admin); err != nil || !slices.Equal(names, []string{"node-1"}) {
		t.Fatalf("members after a client left: %v, %v", names, err)
	}
}
