package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

func TestInitRecordsMembershipAndRefusesASecondInit(t *testing.T) {
	log := testLog(t)
	n := initNode(t, log)
	ms, err := LoadMembership(n.root)
	if err != nil || ms == nil {
		t.Fatalf("membership after init: (%v, %v)", ms, err)
	}
	if !ms.Member || ms.NodeName != "node-1" || ms.ClusterName != n.m.ClusterName() || ms.ClusterName == "" ||
		!reflect.DeepEqual(ms.Endpoints, []string{n.m.ClientURL()}) {
		t.Fatalf("membership %+v does not describe this single-member cluster %s at %s", ms, n.m.ClusterName(), n.m.ClientURL())
	}
	if _, err := os.Stat(DataDir(n.root)); err != nil {
		t.Fatalf("etcd data dir: %v", err)
	}
	_, _, err = initAt(t, n.root, log)
	if !errors.Is(err, ErrAlreadyInCluster) || !strings.Contains(err.Error(), "cluster leave") {
		t.Fatalf("second init: %v, want ErrAlreadyInCluster telling to leave first", err)
	}
}

func TestNodeReadyWhileItsLeaseLives(t *testing.T) {
	t.Parallel()
	log, logged := testLogSearch(t)
	n := initNode(t, log)
	c := connect(t, log, n.m.ClientURL())
	ctx := context.Background()

	regCtx, crash := context.WithCancel(ctx)
	stop, err := c.RegisterNode(regCtx, Node{Name: "node-1", Version: "v0.3.0", Labels: map[string]string{"zone": "a"},
		Addresses: []string{"10.0.0.1"}}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	got, err := nodeByName(t, c, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Ready || got.Version != "v0.3.0" || got.Labels["zone"] != "a" || got.Registered.IsZero() || got.Heartbeat.IsZero() {
		t.Fatalf("registered node: %+v, want Ready with its version, labels and times", got)
	}
	registered := got.Registered

	// The lease outlives a few TTLs while kept alive: the node's own heartbeats, two TTLs after it registered,
	// find it Ready on the lease it registered with.
	_, lease, _ := c.leaseOf("node-1")
	eventually(t, 10*testTTL, func() error {
		n, err := nodeByName(t, c, "node-1")
		if err == nil && n.Heartbeat.Before(registered.Add(2*testTTL)) {
			err = fmt.Errorf("last heartbeat %v, want one 2 TTLs after registration at %v", n.Heartbeat, registered)
		}
		return err
	})
	if err := wantReady(t, c, "node-1", true)(); err != nil {
		t.Fatalf("after 2 TTLs of keepalive: %v", err)
	}
	if _, now, _ := c.leaseOf("node-1"); now != lease || logged("Lost the node's lease") {
		t.Fatalf("the node lost its lease (%x, then %x) although etcd was up all along", lease, now)
	}

	// The agent dies without deregistering: NotReady once its lease expires, a TTL later (+ etcd's 500 ms expiry
	// sweep and polling). The deadline is four TTLs: a busy machine delays the sweep, and a node that stayed Ready
	// for good would still fail.
	crash()
	took := eventually(t, 4*testTTL, wantReady(t, c, "node-1", false))
	t.Logf("NotReady %s after the crash (TTL %s)", took.Round(10*time.Millisecond), testTTL)
	dead, err := nodeByName(t, c, "node-1")
	if err != nil {
		t.Fatalf("a dead node's record must stay for `get nodes`: %v", err)
	}
	if dead.Heartbeat.Before(registered) {
		t.Errorf("heartbeat %v before registration %v", dead.Heartbeat, registered)
	}

	// It comes back: Ready again, still registered since the first time.
	stop2, err := c.RegisterNode(ctx, Node{Name: "node-1", Version: "v0.3.1"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := nodeByName(t, c, "node-1")
	if !back.Ready || !back.Registered.Equal(registered) || back.Version != "v0.3.1" {
		t.Fatalf("re-registered node: %+v, want Ready, version v0.3.1, registered %v", back, registered)
	}

	// A graceful stop revokes the lease: NotReady at once, not after the TTL.
	stop2()
	if err := wantReady(t, c, "node-1", false)(); err != nil {
		t.Fatalf("right after stop: %v", err)
	}

	if err := c.RemoveNode(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := c.Nodes(ctx); len(nodes) != 0 {
		t.Fatalf("after RemoveNode: %+v", nodes)
	}
	if err := c.RemoveNode(ctx, "node-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing again: %v, want ErrNotFound", err)
	}
}

func TestNodeRegistersAgainAfterEtcdComesBack(t *testing.T) {
	t.Parallel()
	log, logged := testLogSearch(t)
	n := initNode(t, log)
	c := connect(t, log, n.m.ClientURL())
	c.requestTimeout = time.Second
	ctx := context.Background()
	stop, err := c.RegisterNode(ctx, Node{Name: "node-1"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := c.ReportDSPod(ctx, "default", "logs", DSPodStatus{Node: "node-1", TemplateHash: "h1", Running: true, Ready: true}); err != nil {
		t.Fatal(err)
	}

	// etcd goes away until the node gives its lease up (no answer to its renewals or its own checks within the
	// TTL): it keeps trying, and says so.
	_, before, _ := c.leaseOf("node-1")
	n.m.Close()
	if _, err := c.Nodes(ctx); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "cannot reach the cluster's etcd at "+n.m.ClientURL()) {
		t.Fatalf("Nodes while etcd is down: %v, want ErrUnreachable naming the endpoint", err)
	}
	eventually(t, 15*time.Second, func() error {
		if !logged("Could not register the node in the cluster again; retrying") {
			return errors.New("the node did not say that it lost its lease and tries to register again")
		}
		return nil
	})

	m, _, err := Resume(ctx, n.root, log, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// The node registers with a new lease; etcd restored the old one and lets it expire a TTL after the restart.
	eventually(t, 15*time.Second, wantReady(t, c, "node-1", true))
	eventually(t, 15*time.Second, func() error {
		if _, now, err := c.leaseOf("node-1"); err != nil || now == before {
			return fmt.Errorf("node-1 still on its lease from before the outage (%v)", err)
		}
		tctx, cancel := c.opCtx(ctx)
		defer cancel()
		ttl, err := c.cli.TimeToLive(tctx, before)
		if err == nil && ttl.TTL > 0 {
			err = fmt.Errorf("the lease from before the outage still lives for %d s", ttl.TTL)
		}
		return err
	})
	// Its expiry took nothing of the new registration: the node is still Ready and its pod report was written
	// again under the new lease.
	if err := wantReady(t, c, "node-1", true)(); err != nil {
		t.Fatal(err)
	}
	pods, err := c.DSPods(ctx, "default", "logs")
	if err != nil || len(pods) != 1 || pods[0].TemplateHash != "h1" {
		t.Fatalf("pod reports after re-registration: %+v, %v; want node-1's report back", pods, err)
	}
}

func TestConnectFailsClearlyWhenEtcdIsUnreachable(t *testing.T) {
	t.Parallel()
	url := testutil.FreeLoopbackURL(t) // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := Connect(ctx, []string{url}, adminTLS(t), testLog(t))
	if !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), "cannot reach the cluster's etcd at "+url+": ") {
		t.Fatalf("got %v, want ErrUnreachable: cannot reach the cluster's etcd at %s: ...", err, url)
	}
}
