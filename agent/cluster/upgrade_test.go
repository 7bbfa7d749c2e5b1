package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/cluster/store"
)

// TestMembershipBeforeTLS: a node whose membership an older agentd recorded (plain-HTTP etcd) starts all the same,
// says what to do, uses nothing of that cluster, and leaves it with --force.
func TestMembershipBeforeTLS(t *testing.T) {
	root := t.TempDir()
	old := &store.Membership{ClusterName: "c0ffee", NodeName: "node-1", Member: true, PeerURL: "http://127.0.0.1:2380",
		ClientURL: "http://127.0.0.1:2379", Endpoints: []string{"http://127.0.0.1:2379"}, JoinedAt: time.Now()}
	if err := store.SaveMembership(root, old); err != nil {
		t.Fatal(err)
	}
	h := &host{ready: map[types.UID]bool{}}
	n := New(Config{Root: root, NodeName: "node-1", Host: h, Log: logr.Discard()})
	t.Cleanup(n.Stop)
	if on, err := n.Start(context.Background()); !on || err != nil {
		t.Fatalf("start: %v, %v; want in a cluster, no error (agentd must start so that the user can leave)", on, err)
	}
	eventually(t, 10*time.Second, "a status that says what to do", func() (bool, string) {
		st := n.Status()
		return strings.Contains(st.LastError, "predates mutual TLS") && strings.Contains(st.LastError, "leave --force"), st.LastError
	})
	if err := n.Leave(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if ms, err := store.LoadMembership(root); ms != nil || err != nil {
		t.Fatalf("membership after leave --force: %+v, %v", ms, err)
	}
}
