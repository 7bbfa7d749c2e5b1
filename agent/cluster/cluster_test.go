package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/cluster/etcdmember/membertest"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/spec"
)

// host plays the agent: a desired pod runs at once; it is Ready when the test says so (or at once with autoReady);
// a pod no longer desired is gone at once.
type host struct {
	mu        sync.Mutex
	desired   []*corev1.Pod
	ready     map[types.UID]bool
	autoReady bool
	cluster   []bool     // ClusterModeChanged calls
	ports     [][]uint16 // ProtectClusterPorts calls
	syncs     int        // ClusterPods calls: the controller makes one at the start of each sync round
}

func (h *host) ProtectClusterPorts(ports []uint16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ports = append(h.ports, ports)
}

func (h *host) SetClusterPods(pods []*corev1.Pod) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.desired = pods
	if h.autoReady {
		for _, p := range pods {
			h.ready[p.UID] = true
		}
	}
}

func (h *host) ClusterPods() []PodState {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.syncs++
	var out []PodState
	for _, p := range h.desired {
		out = append(out, PodState{DaemonSet: p.Annotations[daemonset.AnnotationDaemonSet], Pod: p,
			Hash: p.Annotations[daemonset.AnnotationTemplateHash], Ready: h.ready[p.UID]})
	}
	return out
}

func (h *host) ClusterModeChanged(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cluster = append(h.cluster, on)
}

// pods returns name → template hash of the desired pods.
func (h *host) pods() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[string]string{}
	for _, p := range h.desired {
		m[p.Name] = p.Annotations[daemonset.AnnotationTemplateHash]
	}
	return m
}

// waitSyncs waits until the node's controller has run n whole sync rounds from now.
func (h *host) waitSyncs(t *testing.T, n int) {
	t.Helper()
	count := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.syncs
	}
	// The round under way may have started before now; the one after it ends when the next one starts.
	from := count()
	eventually(t, time.Duration(n+2)*10*syncInterval, fmt.Sprintf("%d sync rounds", n), func() (bool, string) {
		return count() >= from+n+1, fmt.Sprint(count()-from, " rounds started")
	})
}

func (h *host) setReady(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.desired {
		if p.Name == name {
			h.ready[p.UID] = true
		}
	}
}

func newNode(t *testing.T, name string, h *host, endpoints []string) *Node {
	t.Helper()
	n := New(Config{Root: t.TempDir(), NodeName: name, Version: "test", EtcdEndpoints: endpoints, NodeTTL: 2 * time.Second,
		MemberOptions: []store.Option{store.WithTimeouts(50*time.Millisecond, 500*time.Millisecond), store.WithBinary(membertest.Binary())}, Host: h, Log: logr.Discard()})
	t.Cleanup(n.Stop)
	return n
}

// initNode makes n the first node of a new cluster on loopback, with its join service.
func initNode(t *testing.T, n *Node, req InitRequest) {
	t.Helper()
	req.PeerURL, req.ClientURL, req.JoinURL = testutil.FreeLoopbackURL(t), testutil.FreeLoopbackURL(t), testutil.FreeLoopbackURL(t)
	if err := n.Init(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// joinReq is a join of the cluster n serves joins for, with a new token.
func joinReq(t *testing.T, n *Node, member bool) JoinRequest {
	t.Helper()
	tok, err := n.CreateToken(context.Background(), TokenRequest{TTL: time.Hour, ControlPlane: member})
	if err != nil {
		t.Fatal(err)
	}
	req := JoinRequest{URL: tok.JoinURL, Token: tok.Token, CACertHash: tok.CACertHash, ControlPlane: member}
	if member {
		req.PeerURL, req.ClientURL = testutil.FreeLoopbackURL(t), testutil.FreeLoopbackURL(t)
	}
	return req
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, l := cond()
		if ok {
			return
		}
		last = l
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
}

func dsManifest(version string) []byte {
	return []byte(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: hello}
spec:
  selector: {matchLabels: {app: hello}}
  updateStrategy: {rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - {name: main, image: localhost/busybox, command: [echo, ` + version + `]}
`)
}

// TestTwoNodesRollingUpdate: one node starts a cluster with an embedded member, another joins with a token as a
// client of it; a DaemonSet runs on both, its status counts them, an update replaces one node's pod at a time
// (maxUnavailable 1, waiting for readiness), and a node that leaves drops its pods and its cluster mode.
func TestTwoNodesRollingUpdate(t *testing.T) {
	ctx := context.Background()
	h1, h2 := &host{ready: map[types.UID]bool{}}, &host{ready: map[types.UID]bool{}}
	n1 := newNode(t, "node-1", h1, nil)
	initNode(t, n1, InitRequest{})
	twin := newNode(t, "node-1", &host{ready: map[types.UID]bool{}}, nil)
	if err := twin.Join(ctx, joinReq(t, n1, false)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `already named "node-1"`) {
		t.Errorf("join under a Ready node's name: %v", err)
	}
	n2 := newNode(t, "node-2", h2, nil)
	if err := n2.Join(ctx, joinReq(t, n1, false)); err != nil {
		t.Fatal(err)
	}
	if st := n2.Status(); !st.InCluster || st.EtcdMember || st.ClusterID != n1.Status().ClusterID || st.AdminCredential {
		t.Fatalf("node-2 status %+v", st)
	}
	if err := n1.Join(ctx, joinReq(t, n1, true)); !errors.Is(err, store.ErrAlreadyInCluster) {
		t.Errorf("join while in a cluster: %v", err)
	}
	// node-2 has no admin credential: it cannot change the cluster's DaemonSets.
	if _, err := n2.Apply(ctx, dsManifest("v0")); !errors.Is(err, ErrNoAdminCredential) {
		t.Errorf("apply on a node without the admin credential: %v", err)
	}
	nodes, err := n2.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].Name != "node-1" || nodes[1].Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("nodes: %v %+v", err, nodes)
	}

	if _, err := n1.Apply(ctx, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")); !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), "manifest directory") {
		t.Errorf("apply of a pod: %v", err)
	}
	res, err := n1.Apply(ctx, dsManifest("v1"))
	if err != nil || res.Result != "created" {
		t.Fatalf("apply: %v %+v", err, res)
	}
	v1 := daemonset.TemplateHash(res.DaemonSet)
	for _, h := range []*host{h1, h2} {
		eventually(t, 10*time.Second, "v1 pods", func() (bool, string) {
			return len(h.pods()) == 1 && slices.Contains(slices.Collect(maps.Values(h.pods())), v1), fmt.Sprint(h.pods())
		})
	}
	h1.setReady("hello-node-1")
	h2.setReady("hello-node-2")
	eventually(t, 10*time.Second, "status 2/2", func() (bool, string) {
		list, err := n2.DaemonSets(ctx)
		if err != nil || len(list) != 1 {
			return false, fmt.Sprint(err, list)
		}
		st := list[0].Status
		return st.DesiredNumberScheduled == 2 && st.NumberReady == 2 && st.UpdatedNumberScheduled == 2, fmt.Sprintf("%+v", st)
	})

	res, err = n1.Apply(ctx, dsManifest("v2"))
	if err != nil || res.Result != "configured" {
		t.Fatalf("apply v2: %v %+v", err, res)
	}
	v2 := daemonset.TemplateHash(res.DaemonSet)
	updated := func() (on1, on2 bool) { return h1.pods()["hello-node-1"] == v2, h2.pods()["hello-node-2"] == v2 }
	eventually(t, 10*time.Second, "one node updated", func() (bool, string) {
		a, b := updated()
		return a != b, fmt.Sprint(a, b)
	})
	first, other, second := h1, h2, "hello-node-2"
	if a, _ := updated(); !a {
		first, other, second = h2, h1, "hello-node-1"
	}
	// The other waits while the first's new pod is not ready: three of its sync rounds change nothing.
	other.waitSyncs(t, 3)
	if a, b := updated(); a && b {
		t.Fatal("both nodes replaced their pod while the first's new pod was not ready (maxUnavailable 1)")
	}
	for name := range first.pods() {
		first.setReady(name)
	}
	eventually(t, 10*time.Second, "second node updated", func() (bool, string) {
		a, b := updated()
		return a && b, fmt.Sprint(a, b)
	})
	h1.setReady("hello-node-1")
	h2.setReady(second)

	if err := n2.Leave(ctx, false); err != nil {
		t.Fatal(err)
	}
	if len(h2.pods()) != 0 || !slices.Equal(h2.cluster, []bool{true, false}) || n2.InCluster() {
		t.Errorf("after leave: pods %v, cluster mode changes %v", h2.pods(), h2.cluster)
	}
	eventually(t, 10*time.Second, "node-2 gone", func() (bool, string) {
		nodes, err := n1.Nodes(ctx)
		return err == nil && len(nodes) == 1, fmt.Sprint(err, nodes)
	})
	if err := n1.DeleteDaemonSet(ctx, "default", "hello"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "pod of the deleted daemonset gone", func() (bool, string) {
		return len(h1.pods()) == 0, fmt.Sprint(h1.pods())
	})
	if err := n1.DeleteDaemonSet(ctx, "default", "hello"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// TestRestartResumesMembership: a node stopped and started again (a new Node on the same root, as after an agent
// restart) is in the cluster at once, and gets its pods back from the cluster's state.
func TestRestartResumesMembership(t *testing.T) {
	ctx := context.Background()
	h := &host{ready: map[types.UID]bool{}, autoReady: true}
	n := newNode(t, "node-1", h, nil)
	if on, err := n.Start(ctx); on || err != nil {
		t.Fatalf("Start outside a cluster: %v %v", on, err)
	}
	if _, err := n.Nodes(ctx); !errors.Is(err, ErrNotInCluster) {
		t.Errorf("nodes outside a cluster: %v", err)
	}
	initNode(t, n, InitRequest{})
	if _, err := n.Apply(ctx, dsManifest("v1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "pod", func() (bool, string) { return len(h.pods()) == 1, fmt.Sprint(h.pods()) })
	n.Stop()

	h2 := &host{ready: map[types.UID]bool{}, autoReady: true}
	again := New(Config{Root: n.cfg.Root, NodeName: "node-1", NodeTTL: 2 * time.Second, Host: h2, Log: logr.Discard(),
		MemberOptions: n.cfg.MemberOptions})
	t.Cleanup(again.Stop)
	if on, err := again.Start(ctx); !on || err != nil {
		t.Fatalf("Start in a cluster: %v %v", on, err)
	}
	if !slices.Equal(h2.cluster, []bool{true}) {
		t.Errorf("cluster mode not reported on before the pods: %v", h2.cluster)
	}
	eventually(t, 20*time.Second, "pod back", func() (bool, string) { return len(h2.pods()) == 1, fmt.Sprint(h2.pods()) })

	renamed := New(Config{Root: n.cfg.Root, NodeName: "node-9", Host: &host{}, Log: logr.Discard()})
	if _, err := renamed.Start(ctx); err == nil || !strings.Contains(err.Error(), `as node "node-1" but is now named "node-9"`) {
		t.Errorf("start under another name: %v", err)
	}
}

// TestMemberRestartsAfterItsProcessDies: agent-etcd killed under a running node is started again by the node, which
// then serves the cluster's state as before.
func TestMemberRestartsAfterItsProcessDies(t *testing.T) {
	ctx := context.Background()
	h := &host{ready: map[types.UID]bool{}, autoReady: true}
	n := newNode(t, "node-1", h, nil)
	initNode(t, n, InitRequest{})
	if _, err := n.Apply(ctx, dsManifest("v1")); err != nil {
		t.Fatal(err)
	}
	_, first := n.session().connection()
	if first == nil {
		t.Fatal("no member after init")
	}
	if err := syscall.Kill(first.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a new member", func() (bool, string) {
		_, m := n.session().connection()
		return m != nil && m != first && m.Pid() != first.Pid(), ""
	})
	eventually(t, 20*time.Second, "the cluster's state through the new member", func() (bool, string) {
		ds, err := n.DaemonSets(ctx)
		return err == nil && len(ds) == 1, fmt.Sprint(ds, err)
	})
}

// TestMain runs this test binary as agent-etcd when a test's member starts it (membertest).
func TestMain(m *testing.M) { membertest.Main(m) }
