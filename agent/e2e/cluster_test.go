package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// nodeTTL is the node lease TTL the cluster tests run with.
const nodeTTL = 3 * time.Second

// clusterNode is an agent with the loopback URLs of its etcd member and (on the node that runs init) its join
// service.
type clusterNode struct {
	*agent
	name                        string
	peerURL, clientURL, joinURL string
}

// newClusterNode prepares an agent named name with live restore configured on (cluster mode must override it).
func newClusterNode(t *testing.T, name string, labels map[string]string) *clusterNode {
	if labels == nil {
		labels = map[string]string{}
	}
	cfg := map[string]any{"node-name": name, "live-restore": true,
		"cluster": map[string]any{"node-ttl": nodeTTL.String(), "node-labels": labels}}
	n := &clusterNode{agent: newAgent(t, cfg), name: name, peerURL: testutil.FreeLoopbackURL(t), clientURL: testutil.FreeLoopbackURL(t),
		joinURL: testutil.FreeLoopbackURL(t)}
	// The final agentd of the harness' cleanup (which runs after this) must not rejoin a cluster whose other
	// members are gone: stop this one first, then forget its membership.
	t.Cleanup(func() {
		if n.running() {
			_ = n.cmd.Process.Signal(unix.SIGKILL)
			n.exited <- <-n.exited
		}
		os.RemoveAll(filepath.Join(n.dir, "root", "cluster"))
	})
	return n
}

// initCluster runs `cluster init` on n with its loopback URLs and extra flags.
func (n *clusterNode) initCluster(extra ...string) string {
	n.t.Helper()
	return n.ctl(append([]string{"cluster", "init", "--peer-url", n.peerURL, "--client-url", n.clientURL, "--join-url", n.joinURL}, extra...)...)
}

// token creates a bootstrap token on n and returns the join command's arguments after "cluster join".
func (n *clusterNode) token(flags ...string) []string {
	n.t.Helper()
	out := strings.TrimSpace(n.ctl(append([]string{"cluster", "token", "create"}, flags...)...))
	args, ok := strings.CutPrefix(out, "agentctl cluster join ")
	if !ok || !strings.Contains(args, "--token ") || !strings.Contains(args, "--ca-cert-hash sha256:") {
		n.t.Fatalf("cluster token create printed %q, want the join command", out)
	}
	return strings.Fields(args)
}

// joinMember joins n to the cluster whose join service via serves, as a control-plane node (an etcd member), with
// a new control-plane token.
func (n *clusterNode) joinMember(via *clusterNode) string {
	n.t.Helper()
	args := via.token("--control-plane")
	if args[len(args)-1] != "--control-plane" {
		n.t.Fatalf("a control-plane token's join command lacks --control-plane: %v", args)
	}
	return n.ctl(append(append([]string{"cluster", "join"}, args...), "--peer-url", n.peerURL, "--client-url", n.clientURL)...)
}

// copyAdmin gives n the cluster admin credential of from, as an operator copies admin.conf on purpose.
func (n *clusterNode) copyAdmin(from *clusterNode) {
	n.t.Helper()
	data, err := os.ReadFile(filepath.Join(from.dir, "root", "cluster", "admin.conf"))
	if err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "root", "cluster", "admin.conf"), data, 0o600); err != nil {
		n.t.Fatal(err)
	}
}

func (n *clusterNode) nodes() map[string]string {
	n.t.Helper()
	out := n.ctl("get", "nodes", "--no-headers")
	status := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			status[f[0]] = f[1]
		}
	}
	return status
}

func (n *clusterNode) waitNodes(want map[string]string, timeout time.Duration) {
	n.t.Helper()
	n.eventually(timeout, fmt.Sprintf("nodes %v", want), func() (bool, string) {
		out, err := n.try("get", "nodes", "--no-headers")
		if err != nil {
			return false, out
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) >= 2 {
				got[f[0]] = f[1]
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want), out
	})
}

func (n *clusterNode) daemonSet(name string) *appsv1.DaemonSet {
	n.t.Helper()
	out, err := n.try("get", "daemonsets", name, "-o", "json")
	if err != nil {
		return nil
	}
	// One name: the object itself, as kubectl prints it.
	var ds appsv1.DaemonSet
	if err := json.Unmarshal([]byte(out), &ds); err != nil || ds.Kind != "DaemonSet" || ds.Name != name {
		n.t.Fatalf("get daemonsets %s -o json: %v\n%s", name, err, out)
	}
	return &ds
}

// waitRolledOut waits until every one of want nodes runs a ready pod of the DaemonSet's current template.
func (n *clusterNode) waitRolledOut(name string, want int32, timeout time.Duration) {
	n.t.Helper()
	n.eventually(timeout, "daemonset "+name+" rolled out", func() (bool, string) {
		ds := n.daemonSet(name)
		if ds == nil {
			return false, "not found"
		}
		st := ds.Status
		return st.DesiredNumberScheduled == want && st.CurrentNumberScheduled == want && st.NumberReady == want &&
			st.UpdatedNumberScheduled == want && st.NumberAvailable == want, fmt.Sprintf("%+v", st)
	})
}

// runningPod waits for the node's pod name to be Running and Ready and returns it.
func (n *clusterNode) runningPod(name string, timeout time.Duration) *corev1.Pod {
	n.t.Helper()
	var pod *corev1.Pod
	n.eventually(timeout, name+" running and ready", func() (bool, string) {
		pod = n.pod(name)
		if pod == nil {
			return false, "no pod"
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", pod.Status)
	})
	return pod
}

func (n *clusterNode) liveRestoreLine() string {
	n.t.Helper()
	for _, line := range strings.Split(n.ctl("info"), "\n") {
		if strings.HasPrefix(line, "Live Restore Enabled:") {
			return line
		}
	}
	n.t.Fatal("info has no Live Restore Enabled line")
	return ""
}

// daemonSetYAML is a DaemonSet whose pod says version, becomes ready a moment after it starts (so a rolling
// update's windows are measurable) and stops at once on SIGTERM.
func daemonSetYAML(name, version, extraSpec string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: %s
spec:
  selector:
    matchLabels: {app: %s}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 1}
  template:
    metadata:
      labels: {app: %s}
    spec:
      terminationGracePeriodSeconds: 5
%s
      containers:
      - name: main
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; echo %s; sleep 0.5; touch /tmp/ready; while true; do sleep 0.1; done"]
        readinessProbe:
          exec: {command: ["test", "-f", "/tmp/ready"]}
          periodSeconds: 1
`, name, name, name, extraSpec, version)
}

func (n *clusterNode) apply(t *testing.T, manifest string) string {
	t.Helper()
	f := filepath.Join(n.dir, "apply.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return n.ctl("apply", "-f", f)
}

var logTime = regexp.MustCompile(`^time=(\S+) `)

// rolloutWindow is when a node's rolling update held its update slot: from taking it to its new pod being ready.
func (n *clusterNode) rolloutWindow(t *testing.T, ds string) (from, to time.Time) {
	t.Helper()
	for _, line := range strings.Split(n.stderr.String(), "\n") {
		m := logTime.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, "daemonset=default/"+ds) {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "Rolling update: replacing this node's pod"):
			from = ts
		case strings.Contains(line, "Rolling update done on this node"):
			to = ts
		}
	}
	if from.IsZero() || to.IsZero() || to.Before(from) {
		t.Fatalf("%s: no complete rolling update of %s in its log:\n%s", n.name, ds, n.stderr)
	}
	return from, to
}

// TestE2EClusterThreeNodes runs three agents on this machine (own root, run-dir, node name, bridge, loopback etcd
// ports) as one cluster: init and two joins, a DaemonSet on every node, a rolling update within maxUnavailable, a
// node killed and restarted, an etcd member lost, quorum lost and regained, delete daemonset, leave --force without
// a quorum and delete node after, a normal leave, and live restore off while in the cluster.
func TestE2EClusterThreeNodes(t *testing.T) {
	nodes := []*clusterNode{
		newClusterNode(t, "node-1", nil),
		newClusterNode(t, "node-2", nil),
		newClusterNode(t, "node-3", map[string]string{"role": "edge"}),
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	// A static pod keeps running on node-2 through everything the cluster does.
	n2.write("static.yaml", simplePod("static", printer))
	for _, n := range nodes {
		n.start()
		if got := n.liveRestoreLine(); got != "Live Restore Enabled: true" {
			t.Fatalf("%s before the cluster: %q", n.name, got)
		}
	}
	n2.waitStatus("static", "Running", 30*time.Second)

	// Not in a cluster yet: a clear error.
	if out, err := n1.try("get", "nodes"); err == nil || !strings.Contains(out, "not in a cluster") {
		t.Fatalf("get nodes outside a cluster: %v\n%s", err, out)
	}

	began := time.Now()
	out := n1.initCluster()
	if !strings.Contains(out, "cluster token create") {
		t.Fatalf("cluster init:\n%s", out)
	}
	t.Logf("cluster init (CA, certificates, etcd with TLS and access control, join service): %v", time.Since(began).Round(time.Millisecond))
	for _, n := range nodes[1:] {
		began := time.Now()
		out := n.joinMember(n1)
		t.Logf("%s: token create + control-plane join (pinned TLS, certificates, learner, promotion): %v", n.name, time.Since(began).Round(time.Millisecond))
		if !strings.Contains(out, "joined cluster") || !strings.Contains(out, "as an etcd member") {
			t.Fatalf("%s: cluster join:\n%s", n.name, out)
		}
	}
	allReady := map[string]string{"node-1": "Ready", "node-2": "Ready", "node-3": "Ready"}
	for _, n := range nodes {
		n.waitNodes(allReady, 20*time.Second)
		if got := n.liveRestoreLine(); got != "Live Restore Enabled: false (disabled: cluster mode is on)" {
			t.Fatalf("%s in the cluster: %q", n.name, got)
		}
	}
	if out, err := n2.try("cluster", "init"); err == nil || !strings.Contains(out, "already in a cluster") {
		t.Fatalf("a second init: %v\n%s", err, out)
	}

	// A DaemonSet lands on all three; another, with a nodeSelector, on node-3 only.
	if out, err := n1.try("apply", "-f", "-"); err == nil || !strings.Contains(out, "must specify") && !strings.Contains(out, "no objects") {
		t.Fatalf("apply of nothing: %v\n%s", err, out)
	}
	bad := strings.Replace(daemonSetYAML("hello", "v1", ""), "imagePullPolicy", "imagePullPolcy", 1)
	if out, err := n1.try("apply", "-f", writeTemp(t, bad)); err == nil || !strings.Contains(out, "spec.template.spec.containers[0].imagePullPolcy: unknown field") {
		t.Fatalf("apply of a DaemonSet with a typo: %v\n%s", err, out)
	}
	applied := time.Now()
	if out := n1.apply(t, daemonSetYAML("hello", "v1", "")); !strings.Contains(out, "daemonset.apps/hello created") {
		t.Fatalf("apply: %s", out)
	}
	if out := n1.apply(t, daemonSetYAML("hello", "v1", "")); !strings.Contains(out, "daemonset.apps/hello unchanged") {
		t.Fatalf("apply again: %s", out)
	}
	// Only the admin credential changes DaemonSets; copied to node-2 and node-3 on purpose, it works there too.
	if out, err := n2.try("apply", "-f", writeTemp(t, daemonSetYAML("edge", "e1", ""))); err == nil || !strings.Contains(out, "no cluster admin credential") {
		t.Fatalf("apply on a node without the admin credential: %v\n%s", err, out)
	}
	n2.copyAdmin(n1)
	n3.copyAdmin(n1)
	n2.apply(t, daemonSetYAML("edge", "e1", "      nodeSelector: {role: edge}"))
	for _, n := range nodes {
		p := n.runningPod("hello-"+n.name, 60*time.Second)
		if p.Spec.NodeName != n.name {
			t.Errorf("%s runs a pod for node %q", n.name, p.Spec.NodeName)
		}
	}
	n3.runningPod("edge-node-3", 60*time.Second)
	n1.waitRolledOut("hello", 3, 30*time.Second)
	t.Logf("apply → a ready pod on each of 3 nodes, as get daemonsets reports it: %v", time.Since(applied).Round(10*time.Millisecond))
	n1.waitRolledOut("edge", 1, 30*time.Second)
	for _, n := range nodes[:2] {
		if n.pod("edge-"+n.name) != nil {
			t.Errorf("%s runs edge, whose nodeSelector it does not match", n.name)
		}
	}
	if got := n3.ctl("logs", "hello-node-3"); strings.TrimSpace(got) != "v1" {
		t.Errorf("logs of hello-node-3: %q", got)
	}
	if out := n2.ctl("describe", "daemonset", "hello"); !strings.Contains(out, "Desired Number of Nodes Scheduled: 3") {
		t.Errorf("describe daemonset:\n%s", out)
	}
	if out := n2.ctl("describe", "node", "node-3"); !strings.Contains(out, "role=edge") || !strings.Contains(out, "AgentReady") {
		t.Errorf("describe node:\n%s", out)
	}
	out = n2.ctl("get", "daemonsets")
	if !regexp.MustCompile(`(?m)^NAME\s+DESIRED\s+CURRENT\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+NODE SELECTOR\s+AGE\n`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^edge\s+1\s+1\s+1\s+1\s+1\s+role=edge\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^hello\s+3\s+3\s+3\s+3\s+3\s+<none>\s`).MatchString(out) {
		t.Errorf("get daemonsets:\n%s", out)
	}

	// A rolling update goes node by node: with maxUnavailable 1 no two nodes are between taking down the old pod and
	// having the new one ready at the same time.
	applied = time.Now()
	if out := n1.apply(t, daemonSetYAML("hello", "v2", "")); !strings.Contains(out, "daemonset.apps/hello configured") {
		t.Fatalf("apply v2: %s", out)
	}
	n1.waitRolledOut("hello", 3, 90*time.Second)
	t.Logf("rolling update of 3 nodes, maxUnavailable 1: %v", time.Since(applied).Round(10*time.Millisecond))
	type window struct {
		node     string
		from, to time.Time
	}
	var windows []window
	for _, n := range nodes {
		from, to := n.rolloutWindow(t, "hello")
		windows = append(windows, window{n.name, from, to})
		if got := strings.TrimSpace(n.ctl("logs", "hello-"+n.name)); got != "v2" {
			t.Errorf("%s: logs of the updated pod: %q", n.name, got)
		}
	}
	sort.Slice(windows, func(i, j int) bool { return windows[i].from.Before(windows[j].from) })
	for i := 1; i < len(windows); i++ {
		if windows[i].from.Before(windows[i-1].to) {
			t.Errorf("maxUnavailable 1 not respected: %s updated %s–%s, %s from %s", windows[i-1].node,
				windows[i-1].from.Format("15:04:05.000"), windows[i-1].to.Format("15:04:05.000"), windows[i].node, windows[i].from.Format("15:04:05.000"))
		}
	}
	for _, w := range windows {
		t.Logf("rolling update on %s: %s–%s", w.node, w.from.Format("15:04:05.000"), w.to.Format("15:04:05.000"))
	}

	// SIGHUP cannot turn live restore on in cluster mode: switched off and on again in the file, it stays off.
	for _, v := range []bool{false, true} {
		setConfig(t, n1.agent, "live-restore", v)
		if err := n1.cmd.Process.Signal(unix.SIGHUP); err != nil {
			t.Fatal(err)
		}
		n1.eventually(30*time.Second, fmt.Sprintf("live-restore %v reloaded", v), func() (bool, string) {
			return strings.Contains(n1.stderr.String(), fmt.Sprintf(`key=live-restore old=%v new=%v`, !v, v)), ""
		})
	}
	if got := n1.liveRestoreLine(); got != "Live Restore Enabled: false (disabled: cluster mode is on)" {
		t.Fatalf("after SIGHUP: %q", got)
	}
	if !strings.Contains(n1.stderr.String(), "live restore stays disabled: cluster mode is on") {
		t.Errorf("no warning that live restore stays off:\n%s", n1.stderr)
	}

	// node-3 killed: NotReady once its lease expires (waited for up to four TTLs), the others unaffected; restarted: Ready again, its pods recreated
	// from the cluster's state (live restore is off, so what the killed agent left is replaced).
	before := map[string]*corev1.Pod{"node-1": n1.pod("hello-node-1"), "node-2": n2.pod("hello-node-2")}
	killed := time.Now()
	n3.stop(unix.SIGKILL, 10*time.Second)
	n1.waitNodes(map[string]string{"node-1": "Ready", "node-2": "Ready", "node-3": "NotReady"}, 4*nodeTTL)
	t.Logf("node-3 NotReady %v after SIGKILL (lease TTL %v)", time.Since(killed).Round(10*time.Millisecond), nodeTTL)
	restarted := time.Now()
	n3.start() // live-restore is true in its file: it boots all the same, and says live restore is off
	if !strings.Contains(n3.stderr.String(), "WARNING: live restore is disabled: cluster mode is on") {
		t.Errorf("node-3 started in cluster mode without warning that live restore is off:\n%s", n3.stderr)
	}
	n1.waitNodes(allReady, 30*time.Second)
	p := n3.runningPod("hello-node-3", 60*time.Second)
	if p.Status.StartTime == nil || p.Status.StartTime.Time.Before(restarted.Truncate(time.Second)) {
		t.Errorf("hello-node-3 was not recreated after the restart: started %v, agent restarted %v", p.Status.StartTime, restarted)
	}
	n3.runningPod("edge-node-3", 60*time.Second)
	for name, n := range map[string]*clusterNode{"node-1": n1, "node-2": n2} {
		now := n.pod("hello-" + name)
		if now == nil || now.UID != before[name].UID || now.Status.ContainerStatuses[0].RestartCount != 0 ||
			!now.Status.ContainerStatuses[0].State.Running.StartedAt.Equal(&before[name].Status.ContainerStatuses[0].State.Running.StartedAt) {
			t.Errorf("%s's pod was disturbed by node-3's restart: %+v", name, now)
		}
	}

	// node-2 stopped (SIGTERM): its containers stop with it, static pod included (live restore is off), and the
	// cluster carries on with two of its three etcd members.
	n2.stop(unix.SIGTERM, 60*time.Second)
	if left, _ := os.ReadDir(filepath.Join(n2.dir, "run", "monitors")); len(left) > 0 {
		t.Errorf("node-2 stopped with live restore off by cluster mode, yet monitors remain: %v", left)
	}
	n1.waitNodes(map[string]string{"node-1": "Ready", "node-2": "NotReady", "node-3": "Ready"}, 4*nodeTTL)
	n3.apply(t, daemonSetYAML("more", "m1", ""))
	n1.runningPod("more-node-1", 60*time.Second)
	n3.runningPod("more-node-3", 60*time.Second)
	n2.start()
	n1.waitNodes(allReady, 30*time.Second)
	n2.runningPod("more-node-2", 60*time.Second)
	n2.runningPod("hello-node-2", 60*time.Second)
	n2.waitStatus("static", "Running", 30*time.Second)

	// Quorum lost (node-1 and node-2 killed): node-3 keeps running what it has and says why; back when they are.
	steady := n3.pod("hello-node-3")
	n1.stop(unix.SIGKILL, 10*time.Second)
	n2.stop(unix.SIGKILL, 10*time.Second)
	lost := time.Now()
	n3.eventually(30*time.Second, "node-3 logs that etcd is unreachable", func() (bool, string) {
		return strings.Contains(n3.stderr.String(), "Lost the node's lease in the cluster's etcd"), ""
	})
	t.Logf("node-3 said etcd is unreachable %v after quorum loss (lease TTL %v)", time.Since(lost).Round(10*time.Millisecond), nodeTTL)
	if out, err := n3.try("get", "nodes"); err == nil || !strings.Contains(out, "cannot reach the cluster's etcd") {
		t.Errorf("get nodes without a quorum: %v\n%s", err, out)
	}
	if now := n3.pod("hello-node-3"); now == nil || now.UID != steady.UID || now.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("node-3's pod was disturbed while etcd had no quorum: %+v", now)
	}
	n1.start()
	n2.start()
	n3.waitNodes(allReady, 60*time.Second)
	if now := n3.pod("hello-node-3"); now == nil || now.UID != steady.UID {
		t.Errorf("node-3's pod was replaced when etcd came back: %+v", now)
	}
	n1.runningPod("hello-node-1", 60*time.Second)

	// delete daemonset: its pods stop everywhere.
	if out := n2.ctl("delete", "daemonset", "more"); !strings.Contains(out, `daemonset.apps "more" deleted`) {
		t.Fatalf("delete daemonset: %s", out)
	}
	for _, n := range nodes {
		n.waitGone("more-"+n.name, 30*time.Second)
	}
	if out, err := n2.try("delete", "daemonset", "more"); err == nil || !strings.Contains(out, `daemonsets.apps "more" not found`) {
		t.Errorf("delete of a deleted daemonset: %v\n%s", err, out)
	}

	// node-3 cannot leave while the cluster has no quorum, unless forced; the cluster, back, then lists it NotReady
	// until it is deleted there.
	n1.stop(unix.SIGKILL, 10*time.Second)
	n2.stop(unix.SIGKILL, 10*time.Second)
	if out, err := n3.try("cluster", "leave"); err == nil || !strings.Contains(out, "--force") {
		t.Fatalf("leave without a quorum: %v\n%s", err, out)
	}
	if got := n3.liveRestoreLine(); got != "Live Restore Enabled: false (disabled: cluster mode is on)" {
		t.Errorf("after a failed leave: %q", got)
	}
	n3.ctl("cluster", "leave", "--force")
	if got := n3.liveRestoreLine(); got != "Live Restore Enabled: true" {
		t.Errorf("after leave --force: %q", got)
	}
	n3.waitGone("hello-node-3", 30*time.Second)
	n3.waitGone("edge-node-3", 30*time.Second)
	if out, err := n3.try("get", "nodes"); err == nil || !strings.Contains(out, "not in a cluster") {
		t.Errorf("get nodes after leave --force: %v\n%s", err, out)
	}
	n1.start()
	n2.start()
	n1.waitNodes(map[string]string{"node-1": "Ready", "node-2": "Ready", "node-3": "NotReady"}, 60*time.Second)
	if out, err := n1.try("delete", "node", "node-2"); err == nil || !strings.Contains(out, `node "node-2" is Ready`) {
		t.Errorf("delete of a Ready node: %v\n%s", err, out)
	}
	if out := n1.ctl("delete", "node", "node-3"); !strings.Contains(out, `node "node-3" deleted`) {
		t.Errorf("delete node: %s", out)
	}
	n2.waitNodes(map[string]string{"node-1": "Ready", "node-2": "Ready"}, 20*time.Second)
	n1.waitRolledOut("hello", 2, 60*time.Second)

	// node-2 leaves: its cluster pods stop, its static pod stays, live restore is on again; node-1 carries on alone.
	n2.ctl("cluster", "leave")
	if got := n2.liveRestoreLine(); got != "Live Restore Enabled: true" {
		t.Errorf("after leave: %q", got)
	}
	n2.waitGone("hello-node-2", 30*time.Second)
	n2.waitStatus("static", "Running", 10*time.Second)
	n1.waitNodes(map[string]string{"node-1": "Ready"}, 20*time.Second)
	n1.waitRolledOut("hello", 1, 30*time.Second)
	n1.apply(t, daemonSetYAML("hello", "v3", ""))
	n1.waitRolledOut("hello", 1, 60*time.Second)
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestE2EClusterExternalEtcd: with cluster.enabled and cluster.etcd-endpoints an agent joins that etcd as a client
// at start, with no member of its own, and runs the cluster's DaemonSets; when the etcd cannot be reached at start
// it boots all the same, runs its static pods, says why in info, and joins when the etcd is back.
func TestE2EClusterExternalEtcd(t *testing.T) {
	etcdNode := newClusterNode(t, "etcd-node", nil)
	etcdNode.start()
	etcdNode.initCluster()
	etcdNode.apply(t, daemonSetYAML("hello", "v1", ""))
	external := externalEtcd(t, etcdNode)

	client := newClusterNode(t, "client-node", nil)
	setConfig(t, client.agent, "cluster", external(map[string]any{"node-ttl": nodeTTL.String()}))
	client.start()
	// cluster.enabled joins in the background: the agent serves before it is in the cluster.
	client.eventually(30*time.Second, "the client node in the cluster", func() (bool, string) {
		out := client.ctl("cluster", "status")
		return strings.Contains(out, "Etcd: external, as a client") && strings.Contains(out, "Node Name: client-node"), out
	})
	if _, err := os.Stat(filepath.Join(client.dir, "root", "cluster", "etcd")); err == nil {
		t.Error("a client node has etcd data of its own")
	}
	etcdNode.waitNodes(map[string]string{"etcd-node": "Ready", "client-node": "Ready"}, 20*time.Second)
	client.runningPod("hello-client-node", 60*time.Second)
	etcdNode.waitRolledOut("hello", 2, 30*time.Second)
	if got := client.liveRestoreLine(); got != "Live Restore Enabled: false (disabled: cluster mode is on)" {
		t.Errorf("client node: %q", got)
	}

	// The etcd gone, a fresh agent configured to join it boots, runs its static pod and says why it is not in the
	// cluster.
	etcdNode.stop(unix.SIGTERM, 60*time.Second)
	late := newClusterNode(t, "late-node", nil)
	setConfig(t, late.agent, "cluster", external(map[string]any{}))
	late.write("static.yaml", simplePod("static", printer))
	late.start()
	late.waitStatus("static", "Running", 30*time.Second)
	late.eventually(30*time.Second, "info says why the node is not in the cluster", func() (bool, string) {
		info := late.ctl("info")
		return strings.Contains(info, "could not join the cluster's etcd") && strings.Contains(info, "Live Restore Enabled: true"), info
	})
	// The etcd back, it joins.
	etcdNode.start()
	etcdNode.waitNodes(map[string]string{"etcd-node": "Ready", "client-node": "Ready", "late-node": "Ready"}, 60*time.Second)
	late.runningPod("hello-late-node", 60*time.Second)
	late.waitStatus("static", "Running", 10*time.Second)
}

// externalEtcd plays the operator of an external etcd (here etcdNode's member): it hands out its CA and a client
// certificate as PEM files, and returns the cluster settings of a node that uses them, added to extra.
func externalEtcd(t *testing.T, etcdNode *clusterNode) func(extra map[string]any) map[string]any {
	t.Helper()
	ca, cert, key := adminCredential(t, etcdNode)
	dir := t.TempDir()
	files := map[string]string{"etcd-ca-file": ca, "etcd-cert-file": cert, "etcd-key-file": key}
	settings := map[string]any{"enabled": true, "etcd-endpoints": []string{etcdNode.clientURL}}
	for key, pem := range files {
		f := filepath.Join(dir, key+".pem")
		if err := os.WriteFile(f, []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
		settings[key] = f
	}
	return func(extra map[string]any) map[string]any {
		out := maps.Clone(settings)
		maps.Copy(out, extra)
		return out
	}
}
