package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// journal reads a container's monitor journal straight from run-dir.
func (a *agent) journal(p *corev1.Pod, container string) *protocol.Journal {
	a.t.Helper()
	data, err := os.ReadFile(filepath.Join(a.dir, "run", "monitors", string(p.UID)+"_"+container, protocol.JournalFile))
	if err != nil {
		a.t.Fatal(err)
	}
	var j protocol.Journal
	if err := json.Unmarshal(data, &j); err != nil {
		a.t.Fatal(err)
	}
	return &j
}

func alive(pid int) bool { return pid > 0 && unix.Kill(pid, 0) == nil && !zombie(pid) }

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

const printer = "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"n=$i\"; sleep 0.01; done"

// TestE2ELiveRestore is the product's promise: with live restore, agentd can stop
// (SIGTERM) or crash (SIGKILL) while containers keep running, keep logging with no
// gap, keep restarting per policy; at start agentd adopts them, replays what happened,
// and applies the manifest directory as it is now.
func TestE2ELiveRestore(t *testing.T) {
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			testLiveRestore(t, sig)
		})
	}
}

func testLiveRestore(t *testing.T, sig unix.Signal) {
	a := newAgent(t, map[string]any{"live-restore": true})
	a.start()
	a.write("printer.yaml", simplePod("printer", printer))
	a.write("crasher.yaml", simplePod("crasher", "echo boom; exit 1"))
	// oneshot and failer end only when the test opens their gate, once agentd is down: their ends must happen
	// while it is away, however long starting them and stopping agentd take on a loaded machine.
	gate := filepath.Join(a.dir, "gate")
	if err := os.Mkdir(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	a.write("oneshot.yaml", gatedPod("oneshot", gate, "echo done", "  restartPolicy: Never"))
	a.write("failer.yaml", gatedPod("failer", gate, "exit 5", "  restartPolicy: OnFailure"))
	a.write("victim.yaml", simplePod("victim", "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	a.write("removed.yaml", simplePod("removed", "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	a.write("changed.yaml", simplePod("changed", "trap 'exit 0' TERM; echo v1; while true; do sleep 0.1 & wait; done"))
	for _, n := range []string{"printer", "oneshot", "failer", "victim", "removed", "changed"} {
		a.waitStatus(n, "Running", 30*time.Second)
	}
	printerPod := a.pod("printer")
	printerJ := a.journal(printerPod, "main")
	victimJ := a.journal(a.pod("victim"), "main")
	removedJ := a.journal(a.pod("removed"), "main")
	changedPod := a.pod("changed")
	crasherPod, oneshotPod, failerPod := a.pod("crasher"), a.pod("oneshot"), a.pod("failer")

	// Stopping with live restore on stops no container, so it is quick; the bound leaves room for a loaded machine.
	took := a.stop(sig, 30*time.Second)
	if sig == unix.SIGTERM && took > 10*time.Second {
		t.Errorf("agentd took %v to stop with live restore on; want well under 10 s", took)
	}
	// Restarts the journal records from now on happened while agentd was down.
	crasherBefore := a.journal(crasherPod, "main").RestartCount
	if _, err := os.Stat(a.socket); sig == unix.SIGTERM && err == nil {
		t.Errorf("agentd left its socket")
	}

	// agentd is down: the containers run, restart and log without it.
	downAt := time.Now()
	if !alive(printerJ.Current().Pid) || !alive(printerJ.MonitorPid) {
		t.Fatalf("the printer died with agentd")
	}
	_ = os.Remove(filepath.Join(a.manifest, "removed.yaml"))
	a.write("changed.yaml", simplePod("changed", "trap 'exit 0' TERM; echo v2; while true; do sleep 0.1 & wait; done"))
	a.write("added.yaml", simplePod("added", "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	if err := unix.Kill(victimJ.MonitorPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if j := a.journal(oneshotPod, "main"); j.LastExit() != nil {
		t.Fatalf("oneshot ended before its gate opened: %+v", j.LastExit())
	}
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The downtime under test lasts until the monitors have shown, in their journals and logs, that they do their
	// work without agentd: the printer went on printing, the crasher was restarted, oneshot ran to its end and
	// failer was restarted. The crasher's backoff doubles with every restart, so its next one may be as far away as
	// the time the pods took to start.
	printed := func() int {
		b, _ := os.ReadFile(printerJ.Current().LogPath)
		return bytes.Count(b, []byte(" F n="))
	}
	printedAtStop := printed()
	a.eventually(2*time.Minute, "the monitors' work while agentd is down", func() (bool, string) {
		crasher, oneshot, failer := a.journal(crasherPod, "main"), a.journal(oneshotPod, "main"), a.journal(failerPod, "main")
		n := printed() - printedAtStop
		return n >= 100 && crasher.RestartCount > crasherBefore && oneshot.LastExit() != nil && failer.RestartCount >= 1,
			fmt.Sprintf("printer: %d lines; crasher: %d restarts (%d before); oneshot exit: %+v; failer: %d restarts",
				n, crasher.RestartCount, crasherBefore, oneshot.LastExit(), failer.RestartCount)
	})
	t.Logf("agentd was down for %v", time.Since(downAt).Round(10*time.Millisecond))
	if !alive(victimJ.Current().Pid) {
		t.Fatalf("the victim's container died with its monitor; the test expects it orphaned")
	}

	a.start()
	a.eventually(30*time.Second, "the manifest directory applied", func() (bool, string) {
		out, _ := a.try("get", "pods", "--no-headers")
		return strings.Contains(out, "added ") && !strings.Contains(out, "removed ") && strings.Contains(out, "changed "), out
	})

	// Untouched: the same container, the same process, no restart.
	p := a.pod("printer")
	if p.UID != printerPod.UID || p.Status.ContainerStatuses[0].ContainerID != printerPod.Status.ContainerStatuses[0].ContainerID ||
		p.Status.ContainerStatuses[0].RestartCount != 0 || !alive(printerJ.Current().Pid) {
		t.Errorf("the printer was not adopted as it was: %+v", p.Status.ContainerStatuses[0])
	}
	// No gap in its log across the downtime: every n from 1 on, in order, and at
	// least the lines counted while agentd was down.
	checkContiguous(t, printerJ.Current().LogPath, printedAtStop+100)

	// The restart policy went on while agentd was away, and the events say so.
	a.eventually(30*time.Second, "crasher restarted while away", func() (bool, string) {
		c := a.pod("crasher")
		return c != nil && int(c.Status.ContainerStatuses[0].RestartCount) > crasherBefore, a.show("get", "pods")
	})
	if ev := a.ctl("get", "events"); !strings.Contains(ev, "while agentd was away") {
		t.Errorf("no replayed events:\n%s", ev)
	}
	// oneshot (Never) completed and failer (OnFailure) was restarted, while away.
	a.waitStatus("oneshot", "Completed", 30*time.Second)
	if f := a.pod("failer"); f.Status.ContainerStatuses[0].RestartCount < 1 {
		t.Errorf("failer not restarted while away: %+v", f.Status.ContainerStatuses[0])
	}

	// The monitor killed meanwhile: its orphan is killed, the pod restarted (Always).
	a.eventually(30*time.Second, "victim replaced", func() (bool, string) {
		v := a.pod("victim")
		return v != nil && v.Status.ContainerStatuses[0].State.Running != nil && !alive(victimJ.Current().Pid), a.show("get", "pods")
	})
	if ev := a.ctl("get", "events"); !strings.Contains(ev, "MonitorLost") {
		t.Errorf("no MonitorLost event:\n%s", ev)
	}

	// Removed while away: stopped; changed: replaced.
	if alive(removedJ.Current().Pid) {
		t.Errorf("the removed pod's container still runs")
	}
	a.waitStatus("changed", "Running", 30*time.Second)
	if c := a.pod("changed"); c.UID == changedPod.UID {
		t.Errorf("the changed pod was not replaced")
	}
	a.eventually(30*time.Second, "v2 running", func() (bool, string) {
		out, _ := a.try("logs", "changed")
		return strings.Contains(out, "v2"), out
	})
	if info := a.ctl("info"); !strings.Contains(info, "Live Restore Enabled: true") {
		t.Errorf("info:\n%s", info)
	}
}

// gatedPod is simplePod whose container runs command once a file named go exists in the host directory gate
// (mounted at /gate); until then it waits.
func gatedPod(name, gate, command string, extra ...string) string {
	volume := fmt.Sprintf("  volumes: [{name: gate, hostPath: {path: %s, type: Directory}}]", gate)
	return simplePod(name, "until [ -e /gate/go ]; do sleep 0.1; done; "+command, append(extra, volume)...) +
		"    volumeMounts: [{name: gate, mountPath: /gate}]\n"
}

// checkContiguous asserts a printer's log holds n=1, n=2, … with none missing,
// and at least min of them.
func checkContiguous(t *testing.T, path string, min int) {
	t.Helper()
	n, err := contiguousFrom(path, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n < min {
		t.Errorf("only %d lines, want at least %d: the printer did not print through the downtime", n, min)
	}
}

// TestE2ELiveRestoreOff: monitors found at start (agentd crashed) are stopped and
// the pods started fresh; SIGHUP turns live restore on and off.
func TestE2ELiveRestoreOff(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("p.yaml", simplePod("p", "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	a.waitStatus("p", "Running", 30*time.Second)
	before := a.journal(a.pod("p"), "main")
	a.stop(unix.SIGKILL, 30*time.Second)
	if !alive(before.Current().Pid) {
		t.Fatalf("a crash of agentd killed the container")
	}
	a.start()
	a.eventually(30*time.Second, "p started fresh", func() (bool, string) {
		p := a.pod("p")
		return p != nil && p.Status.ContainerStatuses[0].State.Running != nil &&
			p.Status.ContainerStatuses[0].ContainerID != "agentd://"+before.Current().ContainerID, a.show("get", "pods")
	})
	if alive(before.Current().Pid) {
		t.Errorf("the old container still runs")
	}

	// SIGHUP: live restore on, then SIGTERM leaves the container running.
	setConfig(t, a, "live-restore", true)
	_ = a.cmd.Process.Signal(unix.SIGHUP)
	a.eventually(30*time.Second, "live restore on", func() (bool, string) {
		out := a.ctl("info")
		return strings.Contains(out, "Live Restore Enabled: true"), out
	})
	now := a.journal(a.pod("p"), "main")
	a.stop(unix.SIGTERM, 30*time.Second)
	if !alive(now.Current().Pid) {
		t.Errorf("live restore turned on by SIGHUP did not keep the container")
	}
	if !strings.Contains(a.stderr.String(), "Configuration changed") || !strings.Contains(a.stderr.String(), "live-restore") {
		t.Errorf("the reload was not logged:\n%s", a.stderr)
	}
	// An invalid file is refused at SIGHUP and the old configuration kept.
	a.start()
	data, _ := os.ReadFile(a.config)
	_ = os.WriteFile(a.config, []byte(strings.Replace(string(data), "{", `{"bogus-key": 1,`, 1)), 0o600)
	_ = a.cmd.Process.Signal(unix.SIGHUP)
	a.eventually(30*time.Second, "reload refused", func() (bool, string) {
		return strings.Contains(a.stderr.String(), "bogus-key"), a.stderr.String()
	})
	if out := a.ctl("info"); !strings.Contains(out, "Live Restore Enabled: true") {
		t.Errorf("a refused reload changed the config:\n%s", out)
	}
	_ = os.WriteFile(a.config, data, 0o600)
}

func setConfig(t *testing.T, a *agent, key string, value any) {
	t.Helper()
	cfg := map[string]any{}
	data, _ := os.ReadFile(a.config)
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg[key] = value
	data, _ = json.Marshal(cfg)
	if err := os.WriteFile(a.config, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestE2ERestoreSensitiveChange: a changed cgroup-parent is named in the log and in
// info, and the running pods are replaced — never silently kept as they were.
func TestE2ERestoreSensitiveChange(t *testing.T) {
	a := newAgent(t, map[string]any{"live-restore": true})
	a.start()
	a.write("p.yaml", simplePod("p", "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	a.waitStatus("p", "Running", 30*time.Second)
	before := a.journal(a.pod("p"), "main")
	a.stop(unix.SIGTERM, 30*time.Second)
	cfg := map[string]any{}
	data, _ := os.ReadFile(a.config)
	_ = json.Unmarshal(data, &cfg)
	oldParent := cfg["cgroup-parent"].(string)
	setConfig(t, a, "cgroup-parent", oldParent+"-new")
	a.start()
	a.eventually(30*time.Second, "p replaced", func() (bool, string) {
		p := a.pod("p")
		return p != nil && p.Status.ContainerStatuses[0].State.Running != nil &&
			p.Status.ContainerStatuses[0].ContainerID != "agentd://"+before.Current().ContainerID, a.show("get", "pods")
	})
	if alive(before.Current().Pid) {
		t.Errorf("the container under the old cgroup-parent still runs")
	}
	info := a.ctl("info")
	if !strings.Contains(info, "cgroup-parent changed from") || !strings.Contains(info, oldParent+"-new") {
		t.Errorf("info does not name the change:\n%s", info)
	}
	if !strings.Contains(a.stderr.String(), "Restore-sensitive setting changed") {
		t.Errorf("the change was not logged:\n%s", a.stderr)
	}
}

// TestE2ESecondAgentdRefused: a second agentd on the same state, even one with live restore off, refuses to start
// before it touches anything: the first one's pods keep running, unrestarted.
func TestE2ESecondAgentdRefused(t *testing.T) {
	a := newAgent(t, map[string]any{"live-restore": true})
	a.write("p.yaml", simplePod("p", printer))
	a.start()
	a.waitStatus("p", "Running", 30*time.Second)
	before := a.pod("p")

	data, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["live-restore"] = false
	data, _ = json.Marshal(cfg)
	second := filepath.Join(a.dir, "second.json")
	if err := os.WriteFile(second, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(a.bin, "agentd"), "--config-file", second).CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("another agentd (pid %d) is running", a.cmd.Process.Pid)) {
		t.Fatalf("second agentd: %v\n%s", err, out)
	}
	now := a.pod("p")
	if now == nil || now.UID != before.UID || now.Status.ContainerStatuses[0].RestartCount != 0 ||
		now.Status.ContainerStatuses[0].ContainerID != before.Status.ContainerStatuses[0].ContainerID {
		t.Errorf("the first agentd's pod was disturbed by the second agentd: %+v", now)
	}
	if !a.running() {
		t.Error("the first agentd stopped")
	}
}

// TestE2EStopDuringRestoreRemovesPods: agentd restarted with live restore off
// removes the pods it finds; told to stop while it is removing them (a
// container that ignores TERM keeps it busy for its grace period), it finishes
// the removal: the container is gone, and so are the pod's masquerading rules.
func TestE2EStopDuringRestoreRemovesPods(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("p.yaml", simplePod("p", "trap 'echo got-term' TERM; while true; do sleep 0.1 & wait; done"))
	a.waitStatus("p", "Running", 60*time.Second)
	before := a.journal(a.pod("p"), "main")
	subnet := a.subnet()
	// agentd masquerades the subnet with one rule of its own; the bridge plugin's per-pod rules, which pods of
	// an older agentd still have, must not appear.
	if len(subnetMasqJumps(subnet)) != 1 || len(natRules(subnet)) > 0 {
		t.Fatalf("masquerading of %s: agentd's %q, per-pod %q; want agentd's alone", subnet, subnetMasqJumps(subnet), natRules(subnet))
	}
	a.stop(unix.SIGKILL, 30*time.Second)
	setConfig(t, a, "live-restore", false)
	a.launch() // not start: that waits for the restore to finish
	// The container got TERM from the restore's removal: agentd is in it now.
	a.eventually(60*time.Second, "the old container got TERM", func() (bool, string) {
		logs, _ := filepath.Glob(filepath.Join(a.dir, "logs", "*", "main", "*.log"))
		for _, l := range logs {
			if data, _ := os.ReadFile(l); strings.Contains(string(data), "got-term") {
				return true, ""
			}
		}
		return false, fmt.Sprint(logs, "\n", a.stderr)
	})
	a.stop(unix.SIGTERM, 60*time.Second)
	if alive(before.Current().Pid) {
		t.Errorf("the container outlived agentd's removal of its pod")
	}
	if left := natRules(subnet); len(left) > 0 {
		t.Errorf("the pod's masquerading rules outlived its removal:\n%s\n%s", strings.Join(left, "\n"), a.stderr)
	}
}
