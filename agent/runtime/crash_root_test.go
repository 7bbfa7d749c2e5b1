package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/internal/mounts"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// These tests kill agentd (Start) and monitors at each step of a container's
// start, and check that what a restarted agentd does — Inspect, then Cleanup and
// Remove for what is dead, adoption for what lives — leaves exactly one container
// per container, or none, and nothing else behind.

// cgroupProcs lists the processes in cgroup path, in any hierarchy.
func cgroupProcs(path string) []int {
	seen := map[int]bool{}
	var out []int
	for _, root := range cgroupRoots() {
		data, err := os.ReadFile(filepath.Join(root, path, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	return out
}

// cgroupDirs lists the directories cgroup path has in any hierarchy.
func cgroupDirs(path string) []string {
	var out []string
	for _, root := range cgroupRoots() {
		if _, err := os.Stat(filepath.Join(root, path)); err == nil {
			out = append(out, filepath.Join(root, path))
		}
	}
	return out
}

// libcontainerStates lists the container states under the runtime's state root.
func (h *harness) libcontainerStates() []string {
	entries, _ := os.ReadDir(filepath.Join(h.rt.cfg.RunDir, "libcontainer"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// cleanUpDead does what agentd does for a monitor found dead or broken — Cleanup,
// then Remove — and checks that nothing of the container is left.
func (h *harness) cleanUpDead(t *testing.T, cfg *protocol.ContainerConfig) {
	t.Helper()
	if _, err := h.rt.Cleanup(context.Background(), cfg.ID); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := h.rt.Remove(cfg.ID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	h.assertNothingLeft(cfg)
}

// assertNothingLeft checks that container cfg left no process, cgroup,
// libcontainer state, mount or state directory.
func (h *harness) assertNothingLeft(cfg *protocol.ContainerConfig) {
	h.t.Helper()
	if p := cgroupProcs(cfg.Cgroup.Path); len(p) > 0 {
		h.t.Errorf("container processes left: %v", p)
	}
	if p := cgroupProcs(cfg.Cgroup.MonitorPath); len(p) > 0 {
		h.t.Errorf("processes left in the monitor's cgroup: %v", p)
	}
	for _, path := range []string{cfg.Cgroup.Path, cfg.Cgroup.MonitorPath} {
		if d := cgroupDirs(path); len(d) > 0 {
			h.t.Errorf("cgroups left: %v", d)
		}
	}
	if s := h.libcontainerStates(); len(s) > 0 {
		h.t.Errorf("libcontainer states left: %v", s)
	}
	// The monitor's state in run-dir, and its runs under root.
	for _, dir := range []string{h.rt.stateDir(cfg.ID), h.rt.containerDir(cfg.ID)} {
		if m := mounts.Under(dir); len(m) > 0 {
			h.t.Errorf("mounts left: %v", m)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			h.t.Errorf("%s left: %v", dir, err)
		}
	}
}

// config builds container i's config as Start would get it.
func (h *harness) config(manifest string) *protocol.ContainerConfig {
	h.t.Helper()
	pod := h.pod(manifest)
	sb, err := h.rt.EnsureSandbox(pod)
	if err != nil {
		h.t.Fatal(err)
	}
	h.uids = append(h.uids, string(pod.UID))
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, h.img, sb, h.rt.Settings())
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

// assertOneContainer checks that the container runs exactly one process (the
// tests' containers exec into sleep) under an adopted, answering monitor.
func (h *harness) assertOneContainer(cfg *protocol.ContainerConfig) {
	h.t.Helper()
	m := h.rt.Inspect(context.Background(), cfg.ID)
	if m.State != MonitorAlive || m.Journal.State != protocol.StateRunning {
		h.t.Fatalf("inspect: %s (%s), journal %+v", m.State, m.Reason, m.Journal)
	}
	procs := cgroupProcs(cfg.Cgroup.Path)
	if len(procs) != 1 || procs[0] != m.Journal.Current().Pid {
		h.t.Errorf("container processes %v, want only the init %d", procs, m.Journal.Current().Pid)
	}
	if s := h.libcontainerStates(); len(s) != 1 || s[0] != m.Journal.Current().ContainerID {
		h.t.Errorf("libcontainer states %v, want only %s", s, m.Journal.Current().ContainerID)
	}
	if want := h.rt.runsDir(cfg.ID); cfg.Rootfs.RunsDir != want {
		h.t.Errorf("runs directory %q, want %q under root", cfg.Rootfs.RunsDir, want)
	}
	runs, _ := os.ReadDir(cfg.Rootfs.RunsDir)
	if len(runs) != 1 || runs[0].Name() != m.Journal.Current().ContainerID {
		h.t.Errorf("run directories %v, want only %s", runs, m.Journal.Current().ContainerID)
	}
}

// stopAndRemove stops a container for good and checks it left nothing.
func (h *harness) stopAndRemove(cfg *protocol.ContainerConfig) {
	h.t.Helper()
	if _, err := h.rt.Stop(context.Background(), cfg.ID, 0); err != nil {
		h.t.Fatal(err)
	}
	if err := h.rt.Remove(cfg.ID); err != nil {
		h.t.Fatal(err)
	}
	h.assertNothingLeft(cfg)
}

// killRaw runs `agent-monitor kill` itself, as any caller of Cleanup would.
func (h *harness) killRaw(id string) (int, string) {
	out, err := exec.Command(h.rt.cfg.MonitorPath, "kill", "--state-dir", h.rt.stateDir(id)).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return 0, string(out)
}

func waitStopped(t *testing.T, pid int) {
	t.Helper()
	waitFor(t, 10*time.Second, "monitor stopped", func() bool {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		return len(f) > 0 && f[0] == "T"
	})
}

// TestRootLiveMonitorIsNeverCleanedUp: a monitor that is alive but does not answer
// (here: stopped; in life: creating its container, before it serves its socket)
// is Starting, not Dead, and no clean-up touches its container: Cleanup, `kill`
// and Remove refuse. Once it answers, it is adopted with its one container.
func TestRootLiveMonitorIsNeverCleanedUp(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.AnswerTimeout = 500 * time.Millisecond
	cfg := h.config(podYAML("busy", "Always", "echo up; exec sleep 3600"))
	st, err := h.rt.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.waitLog(cfg, "up")
	if err := unix.Kill(st.MonitorPid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Kill(st.MonitorPid, unix.SIGCONT) }) // before the harness stops it
	waitStopped(t, st.MonitorPid)

	m := h.rt.Inspect(context.Background(), cfg.ID)
	if m.State != MonitorStarting || m.Journal == nil || m.Journal.MonitorPid != st.MonitorPid {
		t.Fatalf("inspect of a live monitor that does not answer: %s (%s)", m.State, m.Reason)
	}
	// A restore's List does not ask a monitor that holds its lock and stamped its
	// journal: alive is enough to adopt it, and nothing is cleaned up.
	ms, err := h.rt.List(context.Background())
	if err != nil || len(ms) != 1 || ms[0].State != MonitorAlive {
		t.Fatalf("list: %v %+v", err, ms)
	}
	if _, err := h.rt.Cleanup(context.Background(), cfg.ID); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("Cleanup of a live monitor: %v, want ErrMonitorAlive", err)
	}
	if code, out := h.killRaw(cfg.ID); code != protocol.ExitMonitorAlive {
		t.Errorf("agent-monitor kill of a live monitor: exit %d, %s", code, out)
	}
	if err := h.rt.Remove(cfg.ID); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("Remove of a live monitor: %v, want ErrMonitorAlive", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := h.rt.Stop(ctx, cfg.ID, 0); !errors.Is(err, ErrMonitorBusy) {
		t.Errorf("Stop of a monitor that does not answer: %v, want ErrMonitorBusy", err)
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	if err := h.rt.Signal(ctx, cfg.ID, unix.SIGUSR1); !errors.Is(err, ErrMonitorBusy) {
		t.Errorf("Signal to a monitor that does not answer: %v, want ErrMonitorBusy", err)
	}
	cancel()
	if _, err := h.rt.Start(context.Background(), cfg); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("a second Start: %v, want ErrMonitorAlive", err)
	}
	if unix.Kill(st.Pid, 0) != nil {
		t.Fatal("the container died while its monitor was stopped")
	}

	if err := unix.Kill(st.MonitorPid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	h.assertOneContainer(cfg)
	if j := h.wait(cfg.ID, 10*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning }); j.Current().Pid != st.Pid || len(j.Runs) != 1 {
		t.Errorf("journal after the monitor answered again: %+v", j)
	}
}

// TestRootStopEndsAWedgedMonitor: a stop for good waits for a monitor that does
// not answer, but one silent for StartTimeout is ended (pid and start time
// verified) and cleaned up after, so a stop never leaves a container behind.
func TestRootStopEndsAWedgedMonitor(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(podYAML("wedged", "Always", "echo up; exec sleep 3600"))
	st, err := h.rt.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.waitLog(cfg, "up")
	if err := unix.Kill(st.MonitorPid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Kill(st.MonitorPid, unix.SIGCONT) })
	waitStopped(t, st.MonitorPid)
	h.rt.cfg.AnswerTimeout, h.rt.cfg.StartTimeout = 300*time.Millisecond, time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j, err := h.rt.Stop(ctx, cfg.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if e := j.LastExit(); j.State != protocol.StateExited || e == nil || e.Reason != protocol.ReasonMonitorLost {
		t.Errorf("journal after stopping a wedged monitor: %+v", j)
	}
	if err := h.rt.Remove(cfg.ID); err != nil {
		t.Fatal(err)
	}
	h.assertNothingLeft(cfg)
}

// fakeMonitor is a process standing in for a monitor: it holds what it is given
// (the state dir's lock) and answers nothing.
func fakeMonitor(t *testing.T, files ...*os.File) (int, uint64) {
	t.Helper()
	p := exec.Command("sleep", "3600")
	p.ExtraFiles = files
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	st, err := protocol.ProcessStartTime(p.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return p.Process.Pid, st
}

// lockedFakeMonitor makes the state dir of pod name's container, with its config
// and no journal, locked by a fakeMonitor: a monitor that is alive and answers
// nothing.
func lockedFakeMonitor(t *testing.T, h *harness, name string) (cfg *protocol.ContainerConfig, dir string, pid int, start uint64) {
	t.Helper()
	cfg = h.config(podYAML(name, "Always", "exec sleep 3600"))
	dir = h.rt.stateDir(cfg.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := protocol.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteConfig(dir, cfg); err != nil {
		t.Fatal(err)
	}
	pid, start = fakeMonitor(t, lock)
	lock.Close()
	return cfg, dir, pid, start
}

// TestRootMonitorBeforeItsJournal: a monitor that holds its state dir's lock but
// has not written its journal yet (agentd was killed just after it started it) is
// Starting, not Broken: nothing cleans it up. Once the lock is free, the same dir
// is Broken, and Cleanup and Remove leave nothing.
func TestRootMonitorBeforeItsJournal(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.AnswerTimeout = 300 * time.Millisecond
	cfg, dir, pid, _ := lockedFakeMonitor(t, h, "nojournal")

	if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorStarting {
		t.Fatalf("inspect: %s (%s), want Starting", m.State, m.Reason)
	}
	if _, err := h.rt.Cleanup(context.Background(), cfg.ID); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("Cleanup: %v, want ErrMonitorAlive", err)
	}
	if code, out := h.killRaw(cfg.ID); code != protocol.ExitMonitorAlive {
		t.Errorf("agent-monitor kill: exit %d, %s", code, out)
	}
	if err := h.rt.Remove(cfg.ID); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("Remove: %v, want ErrMonitorAlive", err)
	}
	if _, err := h.rt.Start(context.Background(), cfg); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("Start: %v, want ErrMonitorAlive", err)
	}
	if _, err := os.Stat(filepath.Join(dir, protocol.ConfigFile)); err != nil {
		t.Fatalf("config removed under a live monitor: %v", err)
	}

	_ = unix.Kill(pid, unix.SIGKILL)
	waitFor(t, 10*time.Second, "lock released", func() bool { return !protocol.Locked(dir) })
	if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorBroken {
		t.Fatalf("inspect once nothing holds the lock: %s (%s), want Broken", m.State, m.Reason)
	}
	h.cleanUpDead(t, cfg)
}

// TestRootInspectTrustsStampedJournal: to a restore's List, a monitor that holds
// its lock, is the live process its journal names and stamped the journal with a
// protocol this agentd speaks is Alive without a handshake (this one has no socket
// at all, so a handshake could only fail). Without the stamp, with an incompatible
// one, or with a journal naming another process or container, List asks, and
// finds it not answering; Inspect always asks.
func TestRootInspectTrustsStampedJournal(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.AnswerTimeout = 200 * time.Millisecond
	cfg, dir, pid, start := lockedFakeMonitor(t, h, "stamped")

	if err := protocol.WriteJournal(dir, &protocol.Journal{ID: cfg.ID, MonitorPid: pid, MonitorStart: start, State: protocol.StateRunning}); err != nil {
		t.Fatal(err)
	}
	listed := func() *Monitor {
		t.Helper()
		ms, err := h.rt.List(context.Background())
		if err != nil || len(ms) != 1 {
			t.Fatalf("list: %v, %d monitors", err, len(ms))
		}
		return ms[0]
	}
	if m := listed(); m.State != MonitorAlive {
		t.Fatalf("list of a locked monitor with a stamped journal: %s (%s), want Alive", m.State, m.Reason)
	}
	if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorStarting {
		t.Errorf("inspect of a locked monitor with a stamped journal: %s (%s), want Starting (asked, no answer)", m.State, m.Reason)
	}
	for _, c := range []struct {
		name   string
		speaks *protocol.Speaks
		pid    int
	}{
		{"no stamp", nil, pid},
		{"incompatible", &protocol.Speaks{Protocol: protocol.Name, Major: protocol.Major + 1}, pid},
		{"another protocol", &protocol.Speaks{Protocol: "other", Major: protocol.Major}, pid},
		{"another process", &protocol.Speaks{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor}, os.Getpid()},
		{"another container's journal", &protocol.Speaks{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor}, pid},
	} {
		id := cfg.ID
		if c.name == "another container's journal" {
			id += "x"
		}
		j, _ := json.Marshal(&protocol.Journal{ID: id, MonitorPid: c.pid, MonitorStart: start, State: protocol.StateRunning, Speaks: c.speaks})
		if err := os.WriteFile(filepath.Join(dir, protocol.JournalFile), j, 0o600); err != nil {
			t.Fatal(err)
		}
		if m := listed(); m.State != MonitorStarting {
			t.Errorf("%s: list: %s (%s), want Starting (asked, no answer)", c.name, m.State, m.Reason)
		}
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	waitFor(t, 10*time.Second, "lock released", func() bool { return !protocol.Locked(dir) })
	h.cleanUpDead(t, cfg)
}

// TestRootInspectWaitsForAnAnswer: a monitor alive by pid and start time (one that
// predates the lock) whose socket is not there yet is waited for, and adopted once
// it answers.
func TestRootInspectWaitsForAnAnswer(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.AnswerTimeout = 300 * time.Millisecond
	cfg := h.config(podYAML("late", "Always", "exec sleep 3600"))
	dir := h.rt.stateDir(cfg.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pid, start := fakeMonitor(t)
	_ = protocol.WriteConfig(dir, cfg)
	_ = protocol.WriteJournal(dir, &protocol.Journal{ID: cfg.ID, MonitorPid: pid, MonitorStart: start, State: protocol.StateCreating})

	if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorStarting {
		t.Fatalf("inspect: %s (%s), want Starting", m.State, m.Reason)
	}
	if _, err := h.rt.Cleanup(context.Background(), cfg.ID); !errors.Is(err, ErrMonitorAlive) {
		t.Errorf("Cleanup: %v, want ErrMonitorAlive", err)
	}
	if code, out := h.killRaw(cfg.ID); code != protocol.ExitMonitorAlive {
		t.Errorf("agent-monitor kill: exit %d, %s", code, out)
	}

	// Now Inspect waits as long as it takes; the socket appears while it waits.
	h.rt.cfg.AnswerTimeout = time.Minute
	got := make(chan *Monitor, 1)
	go func() { got <- h.rt.Inspect(context.Background(), cfg.ID) }()
	reply, _ := json.Marshal(protocol.HelloReply{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor, ID: cfg.ID, Pid: pid, StartTime: start})
	stopHello := fakeHelloServer(t, h.rt, cfg.ID, string(reply)+"\n")
	select {
	case m := <-got:
		if m.State != MonitorAlive {
			t.Errorf("inspect once it answers: %s (%s), want Alive", m.State, m.Reason)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Inspect did not return")
	}
	stopHello()
	_ = unix.Kill(pid, unix.SIGKILL)
	waitFor(t, 10*time.Second, "fake monitor gone", func() bool { return !protocol.ProcessAlive(pid, start) })
	_ = os.Remove(filepath.Join(dir, protocol.SocketFile))
	h.cleanUpDead(t, cfg)
}

// TestRootMonitorCrashPoints kills the monitor (kill -9, through AGENTD_CRASH_AT)
// at each step of its first run. Inspect then finds it Dead; Cleanup and Remove
// leave no process, cgroup, libcontainer state, mount or state; and a new Start of
// the same container runs exactly one container.
func TestRootMonitorCrashPoints(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		point string
		left  func(t *testing.T, cfg *protocol.ContainerConfig) // proves the crash left something to clean up
	}{
		{"monitor-journal-written", nil},
		{"monitor-rootfs-mounted", func(t *testing.T, cfg *protocol.ContainerConfig) {
			if len(mounts.Under(h.rt.containerDir(cfg.ID))) == 0 {
				t.Error("no rootfs mounted at the crash")
			}
		}},
		{"monitor-container-created", func(t *testing.T, cfg *protocol.ContainerConfig) {
			if len(h.libcontainerStates()) != 1 {
				t.Errorf("libcontainer states at the crash: %v", h.libcontainerStates())
			}
		}},
		{"monitor-container-started", func(t *testing.T, cfg *protocol.ContainerConfig) {
			if len(cgroupProcs(cfg.Cgroup.Path)) == 0 {
				t.Error("no container process at the crash")
			}
			if j, err := protocol.ReadJournal(h.rt.stateDir(cfg.ID)); err != nil || len(j.Runs) != 0 {
				t.Errorf("journal at the crash: %+v %v (want no run recorded)", j, err)
			}
		}},
		{"monitor-run-journaled", func(t *testing.T, cfg *protocol.ContainerConfig) {
			if len(cgroupProcs(cfg.Cgroup.Path)) == 0 {
				t.Error("no container process at the crash")
			}
		}},
	} {
		t.Run(tc.point, func(t *testing.T) {
			cfg := h.config(podYAML("crash-"+tc.point, "Always", "exec sleep 3600"))
			t.Setenv(crashpoint.Env, tc.point)
			if _, err := h.rt.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "exited before it reported") {
				t.Fatalf("start with the monitor killed at %s: %v", tc.point, err)
			}
			os.Unsetenv(crashpoint.Env)
			m := h.rt.Inspect(context.Background(), cfg.ID)
			if m.State != MonitorDead {
				t.Fatalf("inspect: %s (%s), want Dead", m.State, m.Reason)
			}
			if tc.left != nil {
				tc.left(t, cfg)
			}
			j, err := h.rt.Cleanup(context.Background(), cfg.ID)
			if err != nil {
				t.Fatal(err)
			}
			if j.State != protocol.StateExited {
				t.Errorf("journal after clean-up: %+v", j)
			}
			if err := h.rt.Remove(cfg.ID); err != nil {
				t.Fatal(err)
			}
			h.assertNothingLeft(cfg)

			if _, err := h.rt.Start(context.Background(), cfg); err != nil {
				t.Fatalf("start again: %v", err)
			}
			h.assertOneContainer(cfg)
			h.stopAndRemove(cfg)
		})
	}
}

// startHelperEnv names the file a TestRootStartHelper process reads its runtime
// settings and container config from.
const startHelperEnv = "AGENTD_TEST_START_HELPER"

type startHelperArgs struct {
	Runtime   Config
	Container *protocol.ContainerConfig
}

// TestRootStartHelper is not a test: TestRootStartCrashPoints runs the test binary
// as a stand-in agentd that calls Start with a crash point armed.
func TestRootStartHelper(t *testing.T) {
	path := os.Getenv(startHelperEnv)
	if path == "" {
		t.Skip("run by TestRootStartCrashPoints")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a startHelperArgs
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	rt, err := New(a.Runtime, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Start(context.Background(), a.Container)
	t.Fatalf("Start returned (%v): the crash point was not reached", err)
}

// startKilledAt runs Start in a stand-in agentd killed at point.
func (h *harness) startKilledAt(cfg *protocol.ContainerConfig, point string) {
	h.t.Helper()
	data, err := json.Marshal(startHelperArgs{Runtime: h.rt.cfg, Container: cfg})
	if err != nil {
		h.t.Fatal(err)
	}
	args := filepath.Join(h.t.TempDir(), "args.json")
	if err := os.WriteFile(args, data, 0o600); err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRootStartHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), startHelperEnv+"="+args, crashpoint.Env+"="+point)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		h.t.Fatalf("stand-in agentd was not killed at %s: %v\n%s", point, err, out)
	}
}

// TestRootStartCrashPoints kills agentd inside Start. Killed once the config is
// written, it leaves a state dir without a journal and no monitor: Inspect finds
// it Broken, Cleanup and Remove leave nothing, and Start works again — also
// straight over such a dir. Killed once the monitor is spawned, the monitor goes
// on alone (its report falls on a closed pipe) and is adopted with one container.
func TestRootStartCrashPoints(t *testing.T) {
	h := newHarness(t)
	t.Run("config-written-then-cleanup", func(t *testing.T) {
		cfg := h.config(podYAML("cfg-cleanup", "Always", "exec sleep 3600"))
		h.startKilledAt(cfg, "container-config-written")
		if m := h.rt.Inspect(context.Background(), cfg.ID); m.State != MonitorBroken {
			t.Fatalf("inspect: %s (%s), want Broken", m.State, m.Reason)
		}
		h.cleanUpDead(t, cfg)
		if _, err := h.rt.Start(context.Background(), cfg); err != nil {
			t.Fatalf("start again: %v", err)
		}
		h.assertOneContainer(cfg)
		h.stopAndRemove(cfg)
	})
	t.Run("config-written-then-start", func(t *testing.T) {
		cfg := h.config(podYAML("cfg-start", "Always", "exec sleep 3600"))
		h.startKilledAt(cfg, "container-config-written")
		if _, err := h.rt.Start(context.Background(), cfg); err != nil {
			t.Fatalf("start over a config-only state dir: %v", err)
		}
		h.assertOneContainer(cfg)
		h.stopAndRemove(cfg)
	})
	t.Run("monitor-spawned", func(t *testing.T) {
		cfg := h.config(podYAML("spawned", "Always", "exec sleep 3600"))
		h.startKilledAt(cfg, "container-monitor-spawned")
		m := h.rt.Inspect(context.Background(), cfg.ID)
		if m.State != MonitorAlive {
			t.Fatalf("inspect: %s (%s), want Alive", m.State, m.Reason)
		}
		h.wait(cfg.ID, 20*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning })
		h.assertOneContainer(cfg)
		if _, err := h.rt.Start(context.Background(), cfg); !errors.Is(err, ErrMonitorAlive) {
			t.Errorf("a second Start: %v, want ErrMonitorAlive", err)
		}
		if _, err := h.rt.Cleanup(context.Background(), cfg.ID); !errors.Is(err, ErrMonitorAlive) {
			t.Errorf("Cleanup of the adopted monitor: %v, want ErrMonitorAlive", err)
		}
		h.assertOneContainer(cfg)
		h.stopAndRemove(cfg)
	})
}

// TestRootMonitorOutlivesItsReporter: the agentd that started a monitor is gone
// (or gave up waiting) before the monitor reports: its report fails with EPIPE and
// the monitor carries on, and is adopted with its container.
func TestRootMonitorOutlivesItsReporter(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(podYAML("noreader", "Always", "echo up; exec sleep 3600"))
	syncR, err := h.rt.launch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	syncR.Close()
	h.waitLog(cfg, "up")
	h.wait(cfg.ID, 20*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning })
	h.assertOneContainer(cfg)
}

// TestRootRunsOfAConfigWithoutRunsDir: a config an older agentd wrote (no
// Rootfs.RunsDir) has its runs in the monitor's state directory, where that
// agentd's monitors keep them; after its monitor dies, Cleanup and Remove find
// them there and leave nothing, under root or in run-dir.
func TestRootRunsOfAConfigWithoutRunsDir(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(podYAML("oldcfg", "Always", "echo up; exec sleep 3600"))
	cfg.Rootfs.RunsDir = ""
	st, err := h.rt.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.waitLog(cfg, "up")
	runs, _ := os.ReadDir(filepath.Join(h.rt.stateDir(cfg.ID), protocol.RunsDir))
	if len(runs) != 1 || runs[0].Name() != st.ContainerID {
		t.Errorf("run directories in the state dir %v, want only %s", runs, st.ContainerID)
	}
	if _, err := os.Stat(h.rt.containerDir(cfg.ID)); !os.IsNotExist(err) {
		t.Errorf("%s: %v, want none", h.rt.containerDir(cfg.ID), err)
	}
	start, _ := protocol.ProcessStartTime(st.MonitorPid)
	_ = unix.Kill(st.MonitorPid, unix.SIGKILL)
	waitFor(t, 10*time.Second, "monitor gone", func() bool { return !protocol.ProcessAlive(st.MonitorPid, start) })
	h.cleanUpDead(t, cfg)
}
