package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
	"github.com/agentd-project/agentd/spec"
)

var (
	storeOnce sync.Once
	storeDir  string
	storeImg  *Image
	storeErr  error
)

// testImage imports the busybox archive once per test binary into a shared store.
func testImage(t testing.TB) *Image {
	t.Helper()
	archive := testutil.TestImage(t)
	storeOnce.Do(func() {
		storeDir, storeErr = os.MkdirTemp("", "agentd-images-")
		if storeErr != nil {
			return
		}
		var s *image.Store
		if s, storeErr = image.Open(storeDir); storeErr != nil {
			return
		}
		if _, storeErr = s.Import(context.Background(), archive); storeErr != nil {
			return
		}
		var img *image.Image
		if img, storeErr = s.Get("localhost/busybox:latest"); storeErr == nil {
			storeImg = ImageFromStore(img)
		}
	})
	if storeErr != nil {
		t.Fatal(storeErr)
	}
	return storeImg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if storeDir != "" {
		os.RemoveAll(storeDir)
	}
	os.Exit(code)
}

type harness struct {
	t    testing.TB
	rt   *Runtime
	img  *Image
	dir  string
	mu   sync.Mutex
	ids  []string
	uids []string
}

func newHarness(t testing.TB) *harness {
	testutil.RequiresRoot(t)
	bin := testutil.BinDir(t)
	img := testImage(t)
	dir := t.TempDir()
	parent := fmt.Sprintf("/agentd-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	rt, err := New(Config{
		Settings: Settings{
			Root:         filepath.Join(dir, "root"),
			RunDir:       filepath.Join(dir, "run"),
			LogDir:       filepath.Join(dir, "logs"),
			CgroupParent: parent,
			NodeName:     "testnode",
			BackoffBase:  100 * time.Millisecond,
			BackoffMax:   time.Second,
		},
		MonitorPath: filepath.Join(bin, "agent-monitor"),
	}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, rt: rt, img: img, dir: dir}
	t.Cleanup(h.cleanup)
	return h
}

// cleanup stops every monitor the test started and removes sandboxes and cgroups.
func (h *harness) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ms, _ := h.rt.List(ctx)
	for _, m := range ms {
		if _, err := h.rt.Stop(ctx, m.ID, 0); err != nil {
			h.t.Logf("cleanup: stop %s: %v", m.ID, err)
		}
		if err := h.rt.Remove(m.ID); err != nil {
			h.t.Logf("cleanup: remove %s: %v", m.ID, err)
		}
	}
	for _, uid := range h.uids {
		h.rt.RemoveSandbox(uid)
	}
	removeCgroupTree(h.rt.cfg.CgroupParent)
	// Anything still mounted under the test dir would keep t.TempDir from being removed.
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], h.dir) {
			h.t.Errorf("left mounted: %s", f[4])
			_ = unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

func (h *harness) pod(manifest string) *corev1.Pod {
	h.t.Helper()
	pod, err := spec.Parse([]byte(manifest), spec.Source{Path: "/test/" + h.t.Name(), NodeName: "testnode"})
	if err != nil {
		h.t.Fatal(err)
	}
	return pod
}

// start starts container i of pod; it returns the config and the monitor's answer.
func (h *harness) start(pod *corev1.Pod, i int) (*protocol.ContainerConfig, *Started, error) {
	h.t.Helper()
	sb, err := h.rt.EnsureSandbox(pod)
	if err != nil {
		h.t.Fatal(err)
	}
	h.uids = append(h.uids, string(pod.UID))
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[i], false, h.img, sb, h.rt.Settings())
	if err != nil {
		h.t.Fatal(err)
	}
	st, err := h.rt.Start(context.Background(), cfg)
	return cfg, st, err
}

func (h *harness) mustStart(pod *corev1.Pod, i int) (*protocol.ContainerConfig, *Started) {
	h.t.Helper()
	cfg, st, err := h.start(pod, i)
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg, st
}

// wait polls a monitor's journal (live, else on disk) until cond holds.
func (h *harness) wait(id string, timeout time.Duration, what string, cond func(*protocol.Journal) bool) *protocol.Journal {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var j *protocol.Journal
	for time.Now().Before(deadline) {
		var err error
		j, err = h.rt.Status(context.Background(), id)
		if err == nil && cond(j) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("%s: timed out waiting for %s; last journal: %+v", id, what, j)
	return nil
}

func exited(j *protocol.Journal) bool { return j.State == protocol.StateExited }

func readLog(t *testing.T, path string) string {
	t.Helper()
	var b bytes.Buffer
	if err := crilog.ReadAll(filepath.Dir(path), filepath.Base(path), crilog.ReadOptions{Tail: -1}, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func podYAML(name, restart, command string, extra ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: %s
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    command: ["sh", "-c", %q]
%s`, name, restart, command, strings.Join(extra, "\n"))
}

func TestRootExitCodesAndLogs(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, cmd string
		code      int
		signal    int
		reason    string
	}{
		{"ok", "echo out; echo err >&2; exit 0", 0, 0, protocol.ReasonCompleted},
		{"three", "echo failing; exit 3", 3, 0, protocol.ReasonError},
		{"killed", "echo up; sleep 3600", 137, 9, protocol.ReasonError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := h.pod(podYAML("exit-"+tc.name, "Never", tc.cmd))
			cfg, st := h.mustStart(pod, 0)
			if st.Pid <= 0 || len(st.ContainerID) != 64 {
				t.Errorf("started: %+v", st)
			}
			if tc.signal != 0 {
				// pid 1 of a pid namespace ignores signals it does not handle when they
				// come from inside; this one comes from the monitor.
				h.waitLog(cfg, "up")
				if err := h.rt.Signal(context.Background(), cfg.ID, unix.Signal(tc.signal)); err != nil {
					t.Fatal(err)
				}
			}
			j := h.wait(cfg.ID, 20*time.Second, "exit", exited)
			e := j.LastExit()
			if e.ExitCode != tc.code || e.Signal != tc.signal || e.Reason != tc.reason {
				t.Errorf("exit = %+v, want code %d signal %d reason %s", e, tc.code, tc.signal, tc.reason)
			}
			logPath := filepath.Join(cfg.Log.Dir, "0.log")
			if j.Current().LogPath != logPath {
				t.Errorf("log path %s, want %s", j.Current().LogPath, logPath)
			}
			raw, _ := os.ReadFile(logPath)
			first := strings.SplitN(string(raw), "\n", 2)[0]
			if e, err := crilog.ParseLine([]byte(first)); err != nil || e.Stream != "stdout" {
				t.Errorf("first CRI record %q: %v", first, err)
			}
			if tc.name == "ok" {
				got := readLog(t, logPath)
				if !strings.Contains(got, "out\n") || !strings.Contains(got, "err\n") {
					t.Errorf("log = %q", got)
				}
				if !strings.Contains(string(raw), " stderr F err\n") {
					t.Errorf("stderr record missing in %q", raw)
				}
			}
		})
	}
}

func TestRootStartErrorIsPrecise(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(`apiVersion: v1
kind: Pod
metadata: {name: nosuch}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: localhost/busybox:latest, command: [nosuchcmd]}
`)
	cfg, _, err := h.start(pod, 0)
	if !errors.Is(err, protocol.ErrStartFailed) || !strings.Contains(err.Error(), `exec: "nosuchcmd": executable file not found`) {
		t.Fatalf("start error = %v", err)
	}
	j := h.wait(cfg.ID, 10*time.Second, "exit", exited)
	if e := j.LastExit(); e.Reason != protocol.ReasonStartError || !strings.Contains(e.Message, "nosuchcmd") {
		t.Errorf("exit = %+v", e)
	}
}

func TestRootOOMKilled(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("oom", "Never", "echo start; dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived",
		"    resources: {limits: {memory: 16Mi}}"))
	cfg, _ := h.mustStart(pod, 0)
	j := h.wait(cfg.ID, 30*time.Second, "exit", exited)
	e := j.LastExit()
	// dd is the process killed; sh then exits with dd's status 137 (or is killed itself).
	if e.Reason != protocol.ReasonOOMKilled {
		t.Errorf("exit = %+v, want OOMKilled", e)
	}
}

func TestRootRestartBackoff(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("backoff", "Always", "echo run; exit 1"))
	cfg, _ := h.mustStart(pod, 0)
	j := h.wait(cfg.ID, 30*time.Second, "5 restarts", func(j *protocol.Journal) bool { return j.RestartCount >= 5 })
	// Base 100 ms (test setting): gaps between an exit and the next start are
	// 0, 100, 200, 400, 800 ms. Check the order and a lower bound (start-up adds time).
	runs := j.Runs
	if len(runs) < 5 {
		t.Fatalf("runs: %d", len(runs))
	}
	var gaps []time.Duration
	for i := 1; i < 5; i++ {
		if runs[i].RestartCount != i {
			t.Errorf("run %d has restartCount %d", i, runs[i].RestartCount)
		}
		if runs[i-1].Exit == nil {
			t.Fatalf("run %d has no exit", i-1)
		}
		gaps = append(gaps, runs[i].StartedAt.Sub(runs[i-1].Exit.FinishedAt))
	}
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	for i, g := range gaps {
		if g < want[i] {
			t.Errorf("gap before restart %d = %v, want ≥ %v (all: %v)", i+1, g, want[i], gaps)
		}
	}
	if gaps[3] <= gaps[1] {
		t.Errorf("back-off does not grow: %v", gaps)
	}
	// Each run has a fresh container and its own log file.
	seen := map[string]bool{}
	for i, r := range runs[:5] {
		if seen[r.ContainerID] {
			t.Errorf("run %d reuses container id %s", i, r.ContainerID)
		}
		seen[r.ContainerID] = true
		if got := readLog(t, r.LogPath); got != "run\n" {
			t.Errorf("%s = %q", r.LogPath, got)
		}
	}
}

func TestRootGracePeriodThenKill(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("stubborn", "Always", "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.1; done"))
	cfg, _ := h.mustStart(pod, 0)
	h.waitLog(cfg, "ready")
	start := time.Now()
	j, err := h.rt.Stop(context.Background(), cfg.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	e := j.LastExit()
	if e == nil || e.ExitCode != 137 || took < time.Second {
		t.Errorf("stop took %v, exit %+v: want KILL (137) after the 1 s grace period", took, e)
	}
	if !strings.Contains(readLog(t, j.Current().LogPath), "got TERM") {
		t.Errorf("container never saw TERM")
	}
	if j.State != protocol.StateExited || !j.Stopped {
		t.Errorf("journal after stop: %+v", j)
	}
	if _, err := os.Stat(filepath.Join(h.rt.stateDir(cfg.ID), protocol.SocketFile)); !os.IsNotExist(err) {
		t.Errorf("monitor left its socket: %v", err)
	}
}

func (h *harness) waitLog(cfg *protocol.ContainerConfig, text string) {
	h.t.Helper()
	path := filepath.Join(cfg.Log.Dir, "0.log")
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(text)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	h.t.Fatalf("%s never logged %q; log: %q", cfg.ID, text, b)
}

func TestRootMonitorIsDetachedAndSurvivesItsLauncher(t *testing.T) {
	h := newHarness(t)
	// What the launcher leaks must not reach the monitor: a descriptor without
	// close-on-exec, and its environment.
	leak, err := unix.Open(filepath.Join(h.dir, "leaked-fd"), unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leak)
	t.Setenv("AGENTD_TEST_LAUNCHER_ENV", "leaked")
	pod := h.pod(podYAML("detached", "Always", "echo up; sleep 3600"))
	cfg, st := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")
	stat := procStat(t, st.MonitorPid)
	if stat.ppid == os.Getpid() {
		t.Errorf("monitor is the launcher's child")
	}
	if stat.sid != st.MonitorPid {
		t.Errorf("monitor is not a session leader: sid %d", stat.sid)
	}
	for fd := range 3 {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", st.MonitorPid, fd)); err != nil || target != os.DevNull {
			t.Errorf("monitor fd %d is %q (%v), want %s", fd, target, err, os.DevNull)
		}
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", st.MonitorPid)); err != nil || cwd != "/" {
		t.Errorf("monitor's working directory is %q (%v), want /", cwd, err)
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", st.MonitorPid)); err != nil || bytes.Contains(env, []byte("AGENTD_TEST_LAUNCHER_ENV")) || !bytes.Contains(env, []byte("PATH=")) {
		t.Errorf("monitor's environment: %q (%v), want PATH and nothing of the launcher's", env, err)
	}
	// The container is the monitor's child, and the monitor sits in its own cgroup.
	if procStat(t, st.Pid).ppid != st.MonitorPid {
		t.Errorf("container init's parent is %d, want the monitor %d", procStat(t, st.Pid).ppid, st.MonitorPid)
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.MonitorPid))
	if !strings.Contains(string(cg), cfg.Cgroup.MonitorPath) {
		t.Errorf("monitor cgroups:\n%s\nwant %s", cg, cfg.Cgroup.MonitorPath)
	}
	ccg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if !strings.Contains(string(ccg), cfg.Cgroup.Path) {
		t.Errorf("container cgroups:\n%s\nwant %s", ccg, cfg.Cgroup.Path)
	}
	// Only the standard fds (and the monitor's own: log, socket, lock) are open:
	// nothing leaked from us.
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", st.MonitorPid))
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st.MonitorPid, fd.Name()))
		if strings.Contains(target, h.dir) && !strings.Contains(target, "logs") && !strings.Contains(target, "ctl.sock") && !strings.HasSuffix(target, "/"+protocol.LockFile) {
			t.Errorf("monitor holds fd %s → %s", fd.Name(), target)
		}
	}
	// The monitor holds its lock; its container does not (or it would keep a dead
	// monitor looking alive).
	if !protocol.Locked(h.rt.stateDir(cfg.ID)) {
		t.Errorf("the monitor does not hold its state dir's lock")
	}
	if holdsLock(t, st.Pid) {
		t.Errorf("the container's init holds the monitor's lock")
	}
	if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorAlive || !m.Journal.Speaks.Compatible() {
		t.Errorf("inspect: %+v, journal stamped %+v", m, m.Journal.Speaks)
	}
	hello, err := h.rt.hello(context.Background(), cfg.ID)
	if err != nil || hello.Major != protocol.Major || hello.Pid != st.MonitorPid {
		t.Errorf("hello: %+v, %v", hello, err)
	}
}

// holdsLock reports whether process pid has a monitor lock file open.
func holdsLock(t *testing.T, pid int) bool {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); strings.HasSuffix(target, "/"+protocol.LockFile) {
			return true
		}
	}
	return false
}

type pstat struct{ ppid, sid int }

func procStat(t *testing.T, pid int) pstat {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	sid, _ := strconv.Atoi(f[3])
	return pstat{ppid, sid}
}

// TestRoot100MBNeverBlocks: a container printing 100 MB with nobody but its
// monitor around finishes, and every line is in its log, in order.
func TestRoot100MBNeverBlocks(t *testing.T) {
	h := newHarness(t)
	const lines = 1000000 // 100 bytes each
	pod := h.pod(podYAML("chatty", "Never",
		fmt.Sprintf(`awk 'BEGIN { for (i = 1; i <= %d; i++) printf "%%08d %%s\n", i, "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890" }'`, lines)))
	h.rt.cfg.LogMaxSize = 1 << 40 // one file, to count lines
	cfg, _ := h.mustStart(pod, 0)
	start := time.Now()
	j := h.wait(cfg.ID, 120*time.Second, "exit", exited)
	took := time.Since(start)
	if e := j.LastExit(); e.ExitCode != 0 {
		t.Fatalf("exit %+v", e)
	}
	f, err := os.Open(j.Current().LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		e, err := crilog.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		if want := fmt.Sprintf("%08d ", n); !bytes.HasPrefix(e.Content, []byte(want)) {
			t.Fatalf("record %d is %q, want prefix %q", n, e.Content[:9], want)
		}
	}
	if n != lines {
		t.Errorf("log has %d lines, want %d", n, lines)
	}
	if j.DroppedLog != 0 {
		t.Errorf("dropped %d bytes", j.DroppedLog)
	}
	t.Logf("100 MB through the monitor in %v (%.0f MB/s)", took, 100/took.Seconds())
}

func TestRootMonitorKilledKillsContainer(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("orphan", "Always", "echo up; sleep 3600"))
	cfg, st := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")
	m0 := h.rt.Inspect(context.Background(), cfg.ID)
	if err := unix.Kill(st.MonitorPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "monitor gone", func() bool { return !protocol.ProcessAlive(st.MonitorPid, m0.Journal.MonitorStart) })
	m := h.rt.Inspect(context.Background(), cfg.ID)
	if m.State != MonitorDead {
		t.Fatalf("inspect after kill -9: %s (%s)", m.State, m.Reason)
	}
	if unix.Kill(st.Pid, 0) != nil {
		t.Fatalf("the container died with its monitor; the test expects it orphaned (libcontainer trap)")
	}
	j, err := h.rt.Cleanup(context.Background(), cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "container gone", func() bool { return unix.Kill(st.Pid, 0) != nil })
	if e := j.LastExit(); e == nil || e.Reason != protocol.ReasonMonitorLost {
		t.Errorf("exit after cleanup: %+v", e)
	}
	if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorFinished {
		t.Errorf("after cleanup: %s", m.State)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", cfg.Cgroup.Path)); !os.IsNotExist(err) {
		t.Errorf("container cgroup left: %v", err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRootPodSharesNetworkNamespace(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(`apiVersion: v1
kind: Pod
metadata: {name: pair}
spec:
  containers:
  - name: server
    image: localhost/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo pong > /www/ping && exec httpd -f -p 8081 -h /www"]
  - name: client
    image: localhost/busybox:latest
    command: ["sh", "-c", "until wget -q -O - http://localhost:8081/ping; do sleep 0.1; done; hostname"]
`)
	h.mustStart(pod, 0)
	cfg, _ := h.mustStart(pod, 1)
	h.waitLog(cfg, "pong")
	h.waitLog(cfg, "pair")
}

func TestRootHostNetwork(t *testing.T) {
	h := newHarness(t)
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, i := range ifaces {
		if i.Name != "lo" {
			want = i.Name
			break
		}
	}
	if want == "" {
		t.Skip("the host has only lo")
	}
	pod := h.pod(podYAML("hostnet", "Never", "cat /proc/net/dev; echo; ls /sys/class/net", "  hostNetwork: true"))
	cfg, _ := h.mustStart(pod, 0)
	j := h.wait(cfg.ID, 20*time.Second, "exit", exited)
	if got := readLog(t, j.Current().LogPath); !strings.Contains(got, want) {
		t.Errorf("hostNetwork pod does not see %s:\n%s", want, got)
	}
	// And a pod without hostNetwork sees only lo.
	pod = h.pod(podYAML("podnet", "Never", "cat /proc/net/dev"))
	cfg, _ = h.mustStart(pod, 0)
	j = h.wait(cfg.ID, 20*time.Second, "exit", exited)
	if got := readLog(t, j.Current().LogPath); strings.Contains(got, want+":") || !strings.Contains(got, "lo:") {
		t.Errorf("pod network namespace:\n%s", got)
	}
}

func TestRootExec(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("exec", "Always", "echo up; sleep 3600", "    env: [{name: GREETING, value: hello}]"))
	cfg, _ := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")
	var out, errb bytes.Buffer
	code, err := h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"sh", "-c", "echo $GREETING; echo oops >&2; exit 5"}}, ExecIO{Stdout: &out, Stderr: &errb})
	if err != nil || code != 5 || out.String() != "hello\n" || errb.String() != "oops\n" {
		t.Errorf("exec: code %d err %v stdout %q stderr %q", code, err, out.String(), errb.String())
	}
	out.Reset()
	code, err = h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"cat"}}, ExecIO{Stdin: strings.NewReader("piped\n"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "piped\n" {
		t.Errorf("exec with stdin: code %d err %v stdout %q", code, err, out.String())
	}
	out.Reset()
	code, err = h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"sh", "-c", "tty; stty size"}, Tty: true, Width: 100, Height: 40}, ExecIO{Stdout: &out})
	if err != nil || code != 0 || !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "40 100") {
		t.Errorf("exec with tty: code %d err %v output %q", code, err, out.String())
	}
	_, err = h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"nosuchcmd"}}, ExecIO{Stdout: &out})
	if err == nil || !strings.Contains(err.Error(), "nosuchcmd") {
		t.Errorf("exec of a missing command: %v", err)
	}
}

func TestRootKillAppliesRestartPolicy(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("liveness", "Always", "echo up; sleep 3600"))
	cfg, st := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")
	j, err := h.rt.Kill(context.Background(), cfg.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e := j.LastExit(); e == nil || e.ExitCode != 137 { // sh as pid 1 ignores TERM: KILL after the grace period
		t.Errorf("exit after kill: %+v (want 137)", e)
	}
	j = h.wait(cfg.ID, 20*time.Second, "restart", func(j *protocol.Journal) bool { return j.RestartCount == 1 && j.State == protocol.StateRunning })
	if j.Current().Pid == st.Pid || j.Stopped {
		t.Errorf("not restarted: %+v", j)
	}
}

// TestRootUnmanagedMonitor: a monitor speaking an incompatible protocol is listed
// as Unmanaged, and Stop ends it and its container anyway.
func TestRootUnmanagedMonitor(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("old", "Always", "sleep 3600"))
	sb, err := h.rt.EnsureSandbox(pod)
	if err != nil {
		t.Fatal(err)
	}
	h.uids = append(h.uids, string(pod.UID))
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, h.img, sb, h.rt.Settings())
	if err != nil {
		t.Fatal(err)
	}
	// The "old monitor": a process of ours, with a journal and a socket that
	// answers the handshake with protocol major 0.
	old := exec.Command("sleep", "3600")
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = old.Process.Kill(); _ = old.Wait() }()
	st, _ := protocol.ProcessStartTime(old.Process.Pid)
	dir := h.rt.stateDir(cfg.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = protocol.WriteConfig(dir, cfg)
	_ = protocol.WriteJournal(dir, &protocol.Journal{ID: cfg.ID, MonitorPid: old.Process.Pid, MonitorStart: st, State: protocol.StateRunning})
	fakeHelloServer(t, h.rt, cfg.ID, fmt.Sprintf(`{"protocol":%q,"major":0,"minor":9,"id":%q,"pid":%d,"startTime":%d}`+"\n", protocol.Name, cfg.ID, old.Process.Pid, st))
	m := h.rt.Inspect(context.Background(), cfg.ID)
	if m.State != MonitorUnmanaged || !strings.Contains(m.Reason, "0.9") {
		t.Fatalf("inspect: %s (%s)", m.State, m.Reason)
	}
	// The journal's pid is ended only while it is in the monitor's cgroup, where
	// every monitor puts itself first thing: never as a bare pid a record names.
	if _, err := h.rt.Stop(context.Background(), cfg.ID, time.Second); !errors.Is(err, cgroupkill.ErrNotMember) {
		t.Fatalf("Stop of a monitor outside its cgroup: %v, want ErrNotMember", err)
	}
	if !protocol.ProcessAlive(old.Process.Pid, st) {
		t.Fatal("Stop killed a process outside the record's monitor cgroup")
	}
	joined := 0
	for _, root := range cgroupRoots() {
		d := filepath.Join(root, cfg.Cgroup.MonitorPath)
		if os.MkdirAll(d, 0o755) == nil && os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(old.Process.Pid)), 0) == nil {
			joined++
		}
	}
	if joined == 0 {
		t.Fatal("could not move the old monitor into its cgroup")
	}
	j, err := h.rt.Stop(context.Background(), cfg.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Wait(); err == nil {
		t.Errorf("the unmanaged monitor was not ended")
	}
	if j == nil || j.State != protocol.StateExited {
		t.Errorf("journal after stop: %+v", j)
	}
}

// TestRootSeccompAndVFS: RuntimeDefault installs a seccomp filter (Kubernetes'
// default, no profile, does not), and the vfs storage driver runs containers from a
// copy of the image's layers.
func TestRootSeccompAndVFS(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, extra, driver, want string
	}{
		{"runtime-default", "  securityContext: {seccompProfile: {type: RuntimeDefault}}", "", "Seccomp:\t2"},
		{"unconfined", "", "", "Seccomp:\t0"},
		{"vfs", "", "vfs", "Seccomp:\t0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.rt.cfg.StorageDriver = tc.driver
			defer func() { h.rt.cfg.StorageDriver = "" }()
			pod := h.pod(podYAML("sec-"+tc.name, "Never", "grep Seccomp: /proc/self/status; echo written > /written; cat /written", tc.extra))
			cfg, _ := h.mustStart(pod, 0)
			j := h.wait(cfg.ID, 20*time.Second, "exit", exited)
			got := readLog(t, j.Current().LogPath)
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "written") || j.LastExit().ExitCode != 0 {
				t.Errorf("log %q, exit %+v: want %q", got, j.LastExit(), tc.want)
			}
		})
	}
	// The vfs copy is private: the image's layer is untouched.
	if _, err := os.Stat(filepath.Join(h.img.Layers[0], "written")); !os.IsNotExist(err) {
		t.Errorf("a container wrote into the image layer: %v", err)
	}
}
