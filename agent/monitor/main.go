// Package monitor is the setup half of a container's monitor (agent-monitor), the
// only package that imports libcontainer. agentd's runtime starts
// `agent-monitor start --state-dir DIR --lock-fd 4` with a sync pipe on fd 3 and
// the state dir's lock (protocol.Lock, taken by agentd) on fd 4; the monitor
// holds that lock for its whole life, so it counts as alive even before its
// journal names it. It detaches (package detach: a new session, stdio on
// /dev/null, no inherited fds, before the Go runtime starts), moves itself into its own cgroup (protocol.Cgroup.MonitorPath) before it
// creates the container, creates and starts the first run, reports the
// container's pid or a precise error on the sync pipe, and then execs
// agent-monitor-lean (package supervisor), which stays the container's parent. The lean monitor execs back into this one for each
// restart ("next"), and starts it as a helper for each exec ("exec") and each
// change of the running container's limits ("update").
//
// Fault injection: AGENTD_CRASH_AT (package crashpoint) reaches the monitor too —
// agentd passes it on — and arms these steps, each counted per image of the
// monitor (`run`, and each `next`): monitor-journal-written (first run: the
// journal says Creating, nothing listens yet), monitor-rootfs-mounted (a run's
// rootfs and subPath pins are mounted), monitor-container-created (libcontainer
// state exists, no process yet), monitor-container-started (the container runs,
// no journal records it), monitor-run-journaled (the journal records the run, the
// first run has not reported to agentd yet).
//
// Settings that change it are all in the container's protocol.ContainerConfig:
// cgroup-parent (Cgroup paths), storage-driver (Rootfs.Driver), run-dir (StateRoot
// and the state dir), seccomp-default (Seccomp), container-pids-limit
// (Cgroup.PidsLimit). It gives itself protocol.MonitorOOMScoreAdj and each container
// Process.OOMScoreAdj, as far as the kernel allows.
package monitor

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	cgmanager "github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/monitor/supervisor"
)

// handedOver keeps the files whose fds go to the next image alive: a collected
// *os.File closes its fd.
var handedOver []*os.File

// syncFd is the sync pipe's fd in `start` (protocol.SyncFd) and `run`; lockFd is
// where `start` passes the lock to `run`.
const (
	syncFd = protocol.SyncFd
	lockFd = 4
)

// errMonitorAlive: `kill` found the monitor alive, and must not touch its runs.
var errMonitorAlive = errors.New("the container's monitor is alive")

func init() {
	// libcontainer's Run and the execve that follows happen on the main thread.
	runtime.LockOSThread()
}

// Main dispatches agent-monitor's subcommands and returns the exit code.
func Main(args []string) int {
	inv, err := parseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-monitor:", err)
		return 2
	}
	switch inv.cmd {
	case protocol.CmdStart:
		// Package detach's constructor turns `start` into `run` before this
		// runs: a binary without it cannot detach.
		err = errors.New("start: this binary does not link package detach")
	case "run":
		err = firstRun(inv.stateDir, inv.lock)
	case protocol.CmdNext:
		err = next(inv.stateDir)
	case protocol.CmdExec:
		err = execHelper(inv.stateDir, inv.containerID, inv.execSpec)
	case protocol.CmdKill:
		err = killOrphan(inv.stateDir)
	case protocol.CmdUpdate:
		err = updateHelper(inv.stateDir, inv.containerID, inv.execSpec)
	default:
		fmt.Fprintf(os.Stderr, "agent-monitor: unknown subcommand %q\n", inv.cmd)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-monitor:", err)
		if errors.Is(err, errMonitorAlive) {
			return protocol.ExitMonitorAlive
		}
		return 1
	}
	return 0
}

// invocation is agent-monitor's command line (protocol.StartArgs, NextArgs,
// ExecArgs and KillArgs build it).
type invocation struct {
	cmd         string
	stateDir    string
	containerID string // exec, update
	execSpec    string // exec: a protocol.ExecRequest as JSON; update: a protocol.Resources
	lock        int    // start, run: the lock's fd, or -1
}

func parseArgs(args []string) (*invocation, error) {
	if len(args) < 1 {
		return nil, errors.New("started by agentd; subcommands: start, run, next, exec, update, kill")
	}
	inv := &invocation{cmd: args[0]}
	fs := flag.NewFlagSet("agent-monitor "+args[0], flag.ContinueOnError)
	fs.StringVar(&inv.stateDir, "state-dir", "", "the container's monitor state directory")
	fs.StringVar(&inv.containerID, "container-id", "", "exec, update: the run to exec in or update")
	fs.StringVar(&inv.execSpec, "spec", "", "exec: the protocol.ExecRequest as JSON; update: the protocol.Resources")
	fs.IntVar(&inv.lock, "lock-fd", -1, "start, run: the fd of the state dir's lock, taken by the caller")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if inv.stateDir == "" {
		return nil, errors.New("--state-dir is required")
	}
	return inv, nil
}

// firstRun is the monitor's first image: it joins its cgroup, opens the control
// socket, starts the container and reports on the sync pipe.
func firstRun(stateDir string, lock int) error {
	syncPipe := os.NewFile(syncFd, "sync")
	report := func(m protocol.SyncMessage) {
		m.MonitorPid = os.Getpid()
		// agentd may be gone (killed, or it gave up waiting): the write then fails
		// with EPIPE — Go raises no SIGPIPE for fds other than 1 and 2 — and the
		// monitor carries on; agentd adopts it later.
		_ = protocol.WriteMessage(syncPipe, &m)
		syncPipe.Close()
	}

	lockFile, err := holdLock(stateDir, lock)
	if err != nil {
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	handedOver = append(handedOver, lockFile)

	cfg, err := protocol.ReadConfig(stateDir)
	if err == nil {
		// Nothing is created for a config naming a log file outside its root.
		err = cfg.Log.CheckFile()
	}
	if err != nil {
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	// Moving a process between cgroups waits for an RCU grace period on cgroup
	// v1 (the kernel's threadgroup lock leaves its fast mode): 10 to 20 ms, in
	// which the journal, the socket and the container's config get made. The
	// container's init is forked only once the move is done (joined), so it
	// starts out of agentd's cgroup, as the monitor does before it serves.
	join := make(chan error, 1)
	go func() { join <- joinCgroup(cfg.Cgroup.MonitorPath) }()
	joined := sync.OnceValue(func() error { return <-join })
	setOwnOOMScoreAdj()
	st, err := protocol.ProcessStartTime(os.Getpid())
	if err != nil {
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	j := &protocol.Journal{ID: cfg.ID, MonitorPid: os.Getpid(), MonitorStart: st, State: protocol.StateCreating}
	if err := protocol.WriteJournal(stateDir, j); err != nil {
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	crashpoint.Hit("monitor-journal-written")
	listener, err := listen(stateDir)
	if err != nil {
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	h, err := handoff(stateDir, listener)
	if err != nil {
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	h.Lock = int(lockFile.Fd())
	run, startErr := startRun(cfg, stateDir, j, h, joined)
	if err := joined(); err != nil {
		// Nothing was started: a monitor that cannot leave agentd's cgroup would
		// go with agentd.
		report(protocol.SyncMessage{Error: err.Error()})
		return err
	}
	if startErr != nil {
		report(protocol.SyncMessage{Error: startErr.Error()})
	} else {
		report(protocol.SyncMessage{Pid: run.Pid, ContainerID: run.ContainerID})
	}
	return handOver(stateDir, j, h)
}

// holdLock returns the state dir's lock: the one agentd took and passed on as fd
// lock, or, started by an agentd that passes none, one taken here. It is
// close-on-exec until the handoff to the lean monitor: the container's init must
// not inherit it.
func holdLock(stateDir string, lock int) (*os.File, error) {
	if lock < 0 {
		f, err := protocol.Lock(stateDir)
		if err != nil {
			return nil, fmt.Errorf("another monitor runs for this container: %w", err)
		}
		return f, nil
	}
	if _, err := unix.FcntlInt(uintptr(lock), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("monitor lock fd %d: %w", lock, err)
	}
	return os.NewFile(uintptr(lock), protocol.LockFile), nil
}

// next is run (by exec from the lean monitor) after a run ended or when a back-off
// expired: it removes finished runs and starts the next one when it is due.
func next(stateDir string) error {
	h, err := supervisor.TakeHandoff()
	if err != nil {
		return err
	}
	cfg, err := protocol.ReadConfig(stateDir)
	if err != nil {
		return err
	}
	j, err := protocol.ReadJournal(stateDir)
	if err != nil {
		return err
	}
	if run := j.Current(); run != nil && run.Exit != nil {
		if err := destroyRun(cfg, stateDir, run.ContainerID); err != nil {
			fmt.Fprintln(os.Stderr, "agent-monitor:", err)
		}
	}
	if j.StartDue(time.Now()) {
		j.RestartCount++
		_, _ = startRun(cfg, stateDir, j, h, nil)
	}
	return handOver(stateDir, j, h)
}

// startRun starts one run and records it in the journal (a start failure is an exit
// with reason StartError, followed by the restart policy like any other exit).
//
// joined, when not nil, waits for the monitor's move into its cgroup and says
// whether it failed; the container is created only after it. A failed move
// starts nothing and records nothing: the caller reports it.
func startRun(cfg *protocol.ContainerConfig, stateDir string, j *protocol.Journal, h *protocol.Handoff, joined func() error) (*protocol.Run, error) {
	run := protocol.Run{RestartCount: j.RestartCount, StartedAt: time.Now(), LogPath: protocol.LogPath(cfg, j.RestartCount)}
	s, err := startContainer(cfg, stateDir, joined)
	if joined != nil && joined() != nil {
		return nil, joined()
	}
	if err != nil {
		run.Exit = &protocol.Exit{ExitCode: 128, Reason: protocol.ReasonStartError, Message: err.Error(), FinishedAt: time.Now()}
		j.Runs = append(j.Runs, run)
		j.Ended(cfg.Restart)
		_ = protocol.WriteJournal(stateDir, j)
		return nil, err
	}
	run.ContainerID, run.Pid, run.User = s.containerID, s.pid, s.user
	run.PidStartTime, _ = protocol.ProcessStartTime(s.pid)
	j.Runs = append(j.Runs, run)
	j.State, j.NextStart = protocol.StateRunning, time.Time{}
	h.Stdout, h.Stderr, h.Stdin, h.Console = fd(s.stdout), fd(s.stderr), fd(s.stdin), fd(s.console)
	handedOver = append(handedOver, s.stdout, s.stderr, s.stdin, s.console)
	if err := protocol.WriteJournal(stateDir, j); err != nil {
		return nil, err
	}
	crashpoint.Hit("monitor-run-journaled")
	return j.Current(), nil
}

// fd is f's descriptor, 0 for none.
func fd(f *os.File) int {
	if f == nil {
		return 0
	}
	return int(f.Fd())
}

// handOver execs the lean monitor, or ends the monitor when nothing will run again.
func handOver(stateDir string, j *protocol.Journal, h *protocol.Handoff) error {
	if j.State == protocol.StateExited {
		_ = os.Remove(filepath.Join(stateDir, protocol.SocketFile))
		return nil
	}
	return supervisor.Exec(h.Lean, nil, h)
}

func handoff(stateDir string, l *net.UnixListener) (*protocol.Handoff, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := l.File() // a dup that survives the exec; the original closes with it
	if err != nil {
		return nil, err
	}
	handedOver = append(handedOver, f)
	return &protocol.Handoff{
		StateDir: stateDir,
		Listener: int(f.Fd()),
		Fat:      self,
		Lean:     filepath.Join(filepath.Dir(self), protocol.LeanBinary),
	}, nil
}

func listen(stateDir string) (*net.UnixListener, error) {
	path := filepath.Join(stateDir, protocol.SocketFile)
	_ = os.Remove(path)
	addr, done, err := protocol.SocketAddr(stateDir)
	if err != nil {
		return nil, err
	}
	defer done()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	return l, nil
}

// joinCgroup moves the monitor into its own cgroup, so stopping agentd (or its
// systemd unit) never reaches it and its memory is accounted apart from pods.
func joinCgroup(path string) error {
	if path == "" {
		return nil
	}
	m, err := cgmanager.New(&cgroups.Cgroup{Path: path, Resources: &cgroups.Resources{}})
	if err != nil {
		return fmt.Errorf("monitor cgroup %s: %w", path, err)
	}
	if err := m.Apply(os.Getpid()); err != nil {
		return fmt.Errorf("join monitor cgroup %s: %w", path, err)
	}
	return nil
}

// killOrphan cleans up after a monitor that died (kill -9): it kills what is left
// in the container's cgroup and in the monitor's, destroys every run found in the
// state dir — journaled or not: the monitor may have died between libcontainer's
// Create and its journal write — and records the current run's exit as
// MonitorLost. It is run by agentd's runtime, which never imports libcontainer
// itself. It refuses (errMonitorAlive) while the monitor lives: it holds the state
// dir's lock for as long as it works, and a monitor holds that lock for its life;
// a monitor of a version without the lock is recognised by its pid and start time.
func killOrphan(stateDir string) error {
	cfg, err := protocol.ReadConfig(stateDir)
	if err != nil {
		return err
	}
	// agentd checked the whole record against its settings; what can be checked
	// without them is checked again here, right before it is acted on.
	if cfg.ID != filepath.Base(stateDir) {
		return fmt.Errorf("config of %s is for %q: not cleaning up", stateDir, cfg.ID)
	}
	for _, p := range []string{cfg.Cgroup.Path, cfg.Cgroup.MonitorPath} {
		if err := cgroupkill.CheckPath(p); err != nil {
			return fmt.Errorf("config of %s: %w: not cleaning up", stateDir, err)
		}
	}
	lock, err := protocol.Lock(stateDir)
	if errors.Is(err, protocol.ErrLocked) {
		return fmt.Errorf("%w: it holds %s; not cleaning up", errMonitorAlive, filepath.Join(stateDir, protocol.LockFile))
	}
	if err != nil {
		return err
	}
	defer lock.Close()
	j, err := protocol.ReadJournal(stateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if j != nil && j.MonitorPid > 0 && protocol.ProcessAlive(j.MonitorPid, j.MonitorStart) {
		return fmt.Errorf("%w: pid %d runs; not cleaning up", errMonitorAlive, j.MonitorPid)
	}
	if j == nil {
		j = &protocol.Journal{ID: cfg.ID}
	}
	// The monitor is gone: whatever runs in its cgroup (a container init it was
	// still creating, an exec helper) or in its container's (a run it had not
	// recorded yet) is an orphan.
	var errs []error
	for _, path := range []string{cfg.Cgroup.Path, cfg.Cgroup.MonitorPath} {
		if err := killCgroupProcs(path); err != nil {
			errs = append(errs, err)
		}
	}
	runs, err := orphanRuns(cfg, stateDir, j)
	if err != nil {
		return err
	}
	for _, id := range runs {
		if err := destroyRun(cfg, stateDir, id); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// The journal stays as it is: a later clean-up tries again.
		return errors.Join(errs...)
	}
	j.Lost(time.Now())
	_ = os.Remove(filepath.Join(stateDir, protocol.SocketFile))
	removeCgroup(cfg.Cgroup.Path)
	removeCgroup(cfg.Cgroup.MonitorPath)
	return protocol.WriteJournal(stateDir, j)
}

// orphanRuns lists the runs a dead monitor may have left: every run directory
// (each run's is made before its container is created, and removed once the run is
// destroyed) in its runs directory (protocol.RunsRoot) and the journal's current run.
func orphanRuns(cfg *protocol.ContainerConfig, stateDir string, j *protocol.Journal) ([]string, error) {
	runsRoot, err := protocol.RunsRoot(cfg, stateDir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if run := j.Current(); run != nil {
		add(run.ContainerID)
	}
	entries, _ := os.ReadDir(runsRoot)
	for _, e := range entries {
		add(e.Name())
	}
	return out, nil
}

// killCgroupProcs SIGKILLs every process in the cgroup at path (and below it), in
// every hierarchy, until none is left (cgroupkill.Cgroup: cgroup.kill where
// there is one, and every pid through a pidfd, checked to be in the cgroup still).
// Only for a cgroup whose owner is gone: the processes are no children of ours, so
// it waits for them to leave.
func killCgroupProcs(path string) error {
	if path == "" {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := cgroupkill.Cgroup(path)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v survive SIGKILL", path, pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeCgroup removes an (empty) cgroup in every hierarchy.
func removeCgroup(path string) {
	if path == "" {
		return
	}
	m, err := cgmanager.New(&cgroups.Cgroup{Path: path, Resources: &cgroups.Resources{}})
	if err == nil {
		_ = m.Destroy()
	}
}
