// Package e2e runs the real agentd, agentctl and monitors with real containers, as
// a user would. Root only (make test-integration).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// agent is one agentd under test with its own root, run-dir, log-dir, manifest
// dir, cgroup parent and pod network.
type agent struct {
	t        *testing.T
	bin      string
	dir      string
	manifest string
	socket   string
	config   string
	cmd      *exec.Cmd
	stderr   *testutil.SyncBuffer
	exited   chan error
	// cgroupPrefix is the cgroup-parent the agent starts with.
	cgroupPrefix string
	// env is added to agentd's environment at each start (AGENTD_CRASH_AT).
	env []string
	// runTmpfs is set when run-dir is a tmpfs of the test's own (runDirTmpfs),
	// unmounted by cleanup once everything in it is gone.
	runTmpfs bool
}

var netSeq = 0

// newAgent prepares (but does not start) an agentd. extra is merged into its config file.
func newAgent(t *testing.T, extra map[string]any) *agent {
	testutil.RequiresRoot(t)
	bin := testutil.BinDir(t)
	img := testutil.TestImage(t)
	dir, err := os.MkdirTemp("", "e2e-") // short: socket paths have a length limit
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, bin: bin, dir: dir, manifest: filepath.Join(dir, "manifests"), socket: filepath.Join(dir, "run", "agent.sock")}
	if err := os.MkdirAll(a.manifest, 0o755); err != nil {
		t.Fatal(err)
	}
	netSeq++
	cfg := map[string]any{
		"manifest-dir":             a.manifest,
		"root":                     filepath.Join(dir, "root"),
		"run-dir":                  filepath.Join(dir, "run"),
		"log-dir":                  filepath.Join(dir, "logs"),
		"cgroup-parent":            fmt.Sprintf("/agentd-e2e-%d-%d", os.Getpid(), netSeq),
		"manifest-relist-interval": "2s",
		"backoff-base":             "200ms",
		"network":                  map[string]string{"bridge": fmt.Sprintf("age2e%d", netSeq), "subnet": fmt.Sprintf("10.198.%d.0/24", 100+netSeq)},
		// Off: the agentds of one test (cluster mode) would share the default port.
		"metrics-address": "",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	a.cgroupPrefix = cfg["cgroup-parent"].(string)
	a.config = filepath.Join(dir, "config.json")
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(a.config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a.ctl("--root", filepath.Join(dir, "root"), "image", "import", img)
	t.Cleanup(a.cleanup)
	return a
}

// runDirTmpfs mounts a tmpfs of size bytes at the agent's run-dir, as /run is on
// a host, so that a test can see what lands there; before start.
func (a *agent) runDirTmpfs(size int64) string {
	a.t.Helper()
	run := filepath.Join(a.dir, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		a.t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", run, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=0700,size=%d", size)); err != nil {
		a.t.Fatalf("mount a tmpfs at run-dir: %v", err)
	}
	a.runTmpfs = true
	return run
}

// start runs agentd and waits for its socket to answer.
func (a *agent) start(args ...string) {
	a.t.Helper()
	a.launch(args...)
	a.waitAnswer(60*time.Second, func(err error) {
		a.t.Fatalf("agentd exited: %v\n%s", err, a.stderr)
	})
}

// waitAnswer waits until the agentd just launched answers; exited is called if
// it exits first. An agentd that does not answer in time is made to print its
// goroutines (SIGQUIT) before the test fails, to show where it hangs.
func (a *agent) waitAnswer(timeout time.Duration, exited func(error)) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-a.exited:
			a.exited <- err
			exited(err)
			return
		default:
		}
		if out, err := a.try("info"); err == nil && a.ownsState() {
			return
		} else if time.Now().After(deadline) {
			_ = a.cmd.Process.Signal(unix.SIGQUIT)
			select {
			case err := <-a.exited:
				a.exited <- err
			case <-time.After(10 * time.Second):
			}
			a.t.Fatalf("agentd did not answer within %v: %s\nagentd log and goroutines:\n%s", timeout, out, a.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ownsState says whether the agentd this harness started holds the run-dir's
// lock: an answer on the socket could come from another agentd.
func (a *agent) ownsState() bool {
	b, err := os.ReadFile(filepath.Join(a.dir, "run", "agentd.lock"))
	return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(a.cmd.Process.Pid)
}

// launch runs agentd, with a.env added to its environment, and returns at once.
func (a *agent) launch(args ...string) {
	a.t.Helper()
	a.stderr = &testutil.SyncBuffer{}
	a.cmd = exec.Command(filepath.Join(a.bin, "agentd"), append([]string{"--config-file", a.config}, args...)...)
	a.cmd.Stderr = a.stderr
	a.cmd.Stdout = a.stderr
	a.cmd.Env = append(os.Environ(), a.env...)
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.exited = make(chan error, 1)
	go func() { a.exited <- a.cmd.Wait() }()
}

// stop sends sig to agentd and waits for it to exit.
func (a *agent) stop(sig syscall.Signal, timeout time.Duration) time.Duration {
	a.t.Helper()
	start := time.Now()
	_ = a.cmd.Process.Signal(sig)
	select {
	case err := <-a.exited:
		a.exited <- err // running() reads it too
	case <-time.After(timeout):
		a.t.Fatalf("agentd did not exit within %v after %v\n%s", timeout, sig, a.stderr)
	}
	return time.Since(start)
}

func (a *agent) running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case err := <-a.exited:
		a.exited <- err
		return false
	default:
		return true
	}
}

// cleanup stops agentd and everything it left: pods (through a final agentd run
// without live restore when monitors remain), mounts, cgroups, the bridge.
func (a *agent) cleanup() {
	if a.running() {
		_ = a.cmd.Process.Signal(unix.SIGKILL)
		<-a.exited
	}
	a.env = nil
	run := filepath.Join(a.dir, "run")
	if a.runTmpfs {
		// A run-dir that a failing test filled must not keep the last agentd from
		// starting and stopping the pods.
		if err := unix.Mount("", run, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, "size=1g"); err != nil {
			a.t.Errorf("grow the run-dir tmpfs: %v", err)
		}
	}
	// An agentd with live restore off stops every monitor it finds at start.
	_ = os.RemoveAll(a.manifest)
	_ = os.MkdirAll(a.manifest, 0o755)
	cfg := map[string]any{}
	data, _ := os.ReadFile(a.config)
	_ = json.Unmarshal(data, &cfg)
	cfg["live-restore"] = false
	data, _ = json.Marshal(cfg)
	_ = os.WriteFile(a.config, data, 0o600)
	if monitors, _ := os.ReadDir(filepath.Join(a.dir, "run", "monitors")); len(monitors) > 0 {
		a.start()
		a.stop(unix.SIGTERM, 60*time.Second)
	}
	data, _ = os.ReadFile("/proc/self/mountinfo")
	left := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], a.dir) && !(a.runTmpfs && f[4] == run) {
			a.t.Errorf("left mounted: %s", f[4])
			_ = unix.Unmount(f[4], unix.MNT_DETACH)
			left++
		}
	}
	if left > 0 && a.stderr != nil {
		a.t.Logf("the last agentd's log:\n%s", a.stderr)
	}
	if a.runTmpfs {
		if err := unix.Unmount(run, 0); err != nil {
			a.t.Errorf("unmount the run-dir tmpfs: %v", err)
			_ = unix.Unmount(run, unix.MNT_DETACH)
		}
	}
	parent := a.cgroupPrefix
	if parent != "" {
		// The prefix also covers a parent a test changed (parent-new).
		out, _ := exec.Command("sh", "-c", "find /sys/fs/cgroup/*"+parent+"* -depth -type d -exec rmdir {} + 2>/dev/null; ls -d /sys/fs/cgroup/*"+parent+"* 2>/dev/null").CombinedOutput()
		if len(bytes.TrimSpace(out)) > 0 {
			a.t.Errorf("cgroups left: %s", out)
		}
	}
	if n, ok := cfg["network"].(map[string]any); ok {
		_ = exec.Command("ip", "link", "del", n["bridge"].(string)).Run()
		if left := removeNATRules(n["subnet"].(string)); len(left) > 0 {
			a.t.Errorf("%d NAT rules of the pod subnet were left behind:\n%s\nthe last agentd's log:\n%s", len(left), strings.Join(left, "\n"), a.stderr)
		}
		// A cluster node killed in the cluster keeps its ports protected (the rules are for a restart); gone now.
		removeHostPortRules(n["bridge"].(string))
	}
	_ = os.RemoveAll(a.dir)
}

// ctl runs agentctl and fails the test on error.
func (a *agent) ctl(args ...string) string {
	a.t.Helper()
	out, err := a.try(args...)
	if err != nil {
		a.t.Fatalf("agentctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// show runs agentctl for a diagnostic: its output, or the error beside it, never
// a failed test. Conditions polled by eventually use it, since what they describe
// may not exist yet (a manifest agentd has not read) or agentd may be restarting.
func (a *agent) show(args ...string) string {
	out, err := a.try(args...)
	if err != nil {
		return fmt.Sprintf("agentctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs agentctl and returns its combined output.
func (a *agent) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(a.bin, "agentctl"), args...)
	cmd.Env = append(os.Environ(), "AGENT_SOCKET="+a.socket)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually polls cond until it holds; last is shown on timeout.
func (a *agent) eventually(timeout time.Duration, what string, cond func() (bool, string)) {
	a.t.Helper()
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
	logs := ""
	if a.stderr != nil {
		logs = a.stderr.String()
	}
	a.t.Fatalf("timed out after %v waiting for %s; last:\n%s\nagentd log:\n%s", timeout, what, last, logs)
}

// write puts a manifest in place the way editors and tools should: temp + rename.
func (a *agent) write(name, content string) {
	a.t.Helper()
	tmp := filepath.Join(a.manifest, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(a.manifest, name)); err != nil {
		a.t.Fatal(err)
	}
}

func (a *agent) pods() []corev1.Pod {
	a.t.Helper()
	var l corev1.PodList
	out := a.ctl("get", "pods", "-A", "-o", "json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		a.t.Fatalf("get pods -o json: %v\n%s", err, out)
	}
	return l.Items
}

func (a *agent) pod(name string) *corev1.Pod {
	for _, p := range a.pods() {
		if p.Name == name && p.DeletionTimestamp == nil {
			return &p
		}
	}
	return nil
}

// podCgroup is a pod's cgroup, relative to the hierarchies' roots: in its QoS
// class's tier as kubelet lays them out (Guaranteed pods directly under the
// cgroup parent).
func (a *agent) podCgroup(p *corev1.Pod) string {
	tier := map[corev1.PodQOSClass]string{corev1.PodQOSBurstable: "burstable", corev1.PodQOSBestEffort: "besteffort"}[p.Status.QOSClass]
	return filepath.Join(a.cgroupPrefix, tier, "pod-"+string(p.UID))
}

// waitStatus waits for `agentctl get pods NAME` to show status in its STATUS column.
func (a *agent) waitStatus(name, status string, timeout time.Duration) {
	a.t.Helper()
	a.eventually(timeout, name+" "+status, func() (bool, string) {
		out, _ := a.try("get", "pods", name, "--no-headers")
		f := strings.Fields(out)
		return len(f) >= 3 && f[0] == name && f[2] == status, out
	})
}

func (a *agent) waitGone(name string, timeout time.Duration) {
	a.t.Helper()
	a.eventually(timeout, name+" gone", func() (bool, string) {
		out, _ := a.try("get", "pods", "-A", "--no-headers")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == name {
				return false, out
			}
		}
		return true, out
	})
}

func simplePod(name, command string, extra ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 3
%s
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
`, name, strings.Join(extra, "\n"), command)
}

// removeHostPortRules removes the filter rules that keep the bridge's pods off the host's cluster ports, and their
// chain, in both families.
func removeHostPortRules(bridge string) {
	for _, cmd := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command(cmd, "-t", "filter", "-S", "INPUT").Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || !strings.Contains(line, "-i "+bridge+" ") || !strings.HasPrefix(f[len(f)-1], "AGENTD-HOST-") {
				continue
			}
			_ = exec.Command("sh", "-c", cmd+" -t filter "+strings.Replace(line, "-A ", "-D ", 1)).Run()
			_ = exec.Command(cmd, "-t", "filter", "-F", f[len(f)-1]).Run()
			_ = exec.Command(cmd, "-t", "filter", "-X", f[len(f)-1]).Run()
		}
	}
}

// subnet is the pod subnet in agentd's configuration.
func (a *agent) subnet() string {
	a.t.Helper()
	cfg := map[string]any{}
	data, _ := os.ReadFile(a.config)
	if err := json.Unmarshal(data, &cfg); err != nil {
		a.t.Fatal(err)
	}
	return cfg["network"].(map[string]any)["subnet"].(string)
}

// natRules lists the POSTROUTING rules for sources in subnet ("10.198.101.0/24") but agentd's masquerading of
// the whole subnet (subnetMasqJumps): the bridge plugin's per-pod rules, which an older agentd made and agentd
// removes with the pod.
func natRules(subnet string) []string {
	var found []string
	for _, line := range postroutingRules(subnet) {
		if !isSubnetMasqJump(line, subnet) {
			found = append(found, line)
		}
	}
	return found
}

// subnetMasqJumps lists agentd's POSTROUTING jumps that masquerade the whole subnet, to its AGENTD-MASQ- chain.
// They stay while agentd is stopped (its pods may still run): not a leak.
func subnetMasqJumps(subnet string) []string {
	var found []string
	for _, line := range postroutingRules(subnet) {
		if isSubnetMasqJump(line, subnet) {
			found = append(found, line)
		}
	}
	return found
}

// isSubnetMasqJump says whether a POSTROUTING rule is agentd's jump for the whole subnet.
func isSubnetMasqJump(line, subnet string) bool {
	f := strings.Fields(line)
	return strings.Contains(line, "-s "+subnet+" ") && strings.HasPrefix(f[len(f)-1], "AGENTD-MASQ-")
}

// postroutingRules lists the POSTROUTING rules for sources in subnet ("10.198.101.0/24").
func postroutingRules(subnet string) []string {
	out, err := exec.Command("iptables", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return nil
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "-s "+strings.TrimSuffix(subnet, "0/24")) {
			found = append(found, line)
		}
	}
	return found
}

// removeNATRules deletes the nat rules of subnet ("10.198.101.0/24"), their chains included: agentd's
// masquerading of the subnet, which it keeps when it stops, and the bridge plugin's per-pod rules, which it
// should have removed. It returns the per-pod rules it found.
func removeNATRules(subnet string) []string {
	found := natRules(subnet)
	for _, line := range append(found, subnetMasqJumps(subnet)...) {
		f := strings.Fields(line)
		chain := f[len(f)-1]
		// The rule's text is quoted for a shell; let one run it.
		_ = exec.Command("sh", "-c", "iptables -t nat "+strings.Replace(line, "-A ", "-D ", 1)).Run()
		_ = exec.Command("iptables", "-t", "nat", "-F", chain).Run()
		_ = exec.Command("iptables", "-t", "nat", "-X", chain).Run()
	}
	return found
}
