// Package monitor is the setup half of a container's monitor (agent-monitor), the
// only package that imports libcontainer. agentd's runtime starts
// `agent-monitor start --state-dir DIR` with a sync pipe on fd 3; the monitor
// detaches (new session, stdio on /dev/null, no inherited fds), moves itself into
// its own cgroup (cri.Cgroup.MonitorPath) before it creates the container, creates
// and starts the first run, reports the container's pid or a precise error on the
// sync pipe, and then execs agent-monitor-lean (package supervisor), which stays
// the container's parent. The lean monitor execs back into this one for each
// restart ("next"), and starts it as a helper for each exec ("exec").
//
// Settings that change it are all in the container's cri.ContainerConfig:
// cgroup-parent (Cgroup paths), storage-driver (Rootfs.Driver), run-dir (StateRoot
// and the state dir), seccomp-default (Seccomp), container-pids-limit
// (Cgroup.PidsLimit). It gives itself cri.MonitorOOMScoreAdj and each container
// Process.OOMScoreAdj, as far as the kernel allows.
package monitor

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	cgmanager "github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/supervisor"
	"github.com/agentd-project/agentd/cri"
)

// LeanBinary is the name of the lean monitor, looked up beside agent-monitor.
const LeanBinary = "agent-monitor-lean"

// SyncMessage is what the monitor writes on the sync pipe once the first run started or failed.
type SyncMessage struct {
	Pid         int    `json:"pid,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	MonitorPid  int    `json:"monitorPid"`
	Error       string `json:"error,omitempty"`
}

// handedOver keeps the files whose fds go to the next image alive: a collected
// *os.File closes its fd.
var handedOver []*os.File

// syncFd is the sync pipe's fd in `start` and `run`.
const syncFd = 3

func init() {
	// libcontainer's Run and the execve that follows happen on the main thread.
	runtime.LockOSThread()
}

// Main dispatches agent-monitor's subcommands and returns the exit code.
func Main(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "agent-monitor: started by agentd; subcommands: start, run, next, exec, kill")
		return 2
	}
	fs := flag.NewFlagSet("agent-monitor "+args[0], flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "the container's monitor state directory")
	containerID := fs.String("container-id", "", "exec: the run to exec in")
	execSpec := fs.String("spec", "", "exec: the cri.ExecRequest as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *stateDir == "" {
		fmt.Fprintln(os.Stderr, "agent-monitor: --state-dir is required")
		return 2
	}
	var err error
	switch args[0] {
	case "start":
		err = detach(*stateDir)
	case "run":
		err = firstRun(*stateDir)
	case "next":
		err = next(*stateDir)
	case "exec":
		err = execHelper(*stateDir, *containerID, *execSpec)
	case "kill":
		err = killOrphan(*stateDir)
	default:
		fmt.Fprintf(os.Stderr, "agent-monitor: unknown subcommand %q\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-monitor:", err)
		return 1
	}
	return 0
}

// detach starts the long-lived monitor in a new session and returns at once, so the
// monitor is not agentd's child: agentd's stop or crash never reaches it.
func detach(stateDir string) error {
	// Whatever the launcher leaked to us (fds without close-on-exec) must not reach
	// the monitor: mark every fd close-on-exec; exec passes on only stdio and sync.
	if err := unix.CloseRange(syncFd, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close inherited fds: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(self, "run", "--state-dir", stateDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{os.NewFile(syncFd, "sync")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	return cmd.Start()
}

// firstRun is the monitor's first image: it joins its cgroup, opens the control
// socket, starts the container and reports on the sync pipe.
func firstRun(stateDir string) error {
	syncPipe := os.NewFile(syncFd, "sync")
	report := func(m SyncMessage) {
		m.MonitorPid = os.Getpid()
		data, _ := json.Marshal(m)
		_, _ = syncPipe.Write(append(data, '\n'))
		syncPipe.Close()
	}

	cfg, err := supervisor.ReadConfig(stateDir)
	if err != nil {
		report(SyncMessage{Error: err.Error()})
		return err
	}
	if err := joinCgroup(cfg.Cgroup.MonitorPath); err != nil {
		report(SyncMessage{Error: err.Error()})
		return err
	}
	setOwnOOMScoreAdj()
	st, err := supervisor.ProcessStartTime(os.Getpid())
	if err != nil {
		report(SyncMessage{Error: err.Error()})
		return err
	}
	j := &cri.Journal{ID: cfg.ID, MonitorPid: os.Getpid(), MonitorStart: st, State: cri.StateCreating}
	if err := supervisor.WriteJournal(stateDir, j); err != nil {
		report(SyncMessage{Error: err.Error()})
		return err
	}
	listener, err := listen(stateDir)
	if err != nil {
		report(SyncMessage{Error: err.Error()})
		return err
	}
	h, err := handoff(stateDir, listener)
	if err != nil {
		report(SyncMessage{Error: err.Error()})
		return err
	}
	run, startErr := startRun(cfg, stateDir, j, h)
	if startErr != nil {
		report(SyncMessage{Error: startErr.Error()})
	} else {
		report(SyncMessage{Pid: run.Pid, ContainerID: run.ContainerID})
	}
	return handOver(stateDir, j, h)
}

// next is run (by exec from the lean monitor) after a run ended or when a back-off
// expired: it removes finished runs and starts the next one when it is due.
func next(stateDir string) error {
	h, err := supervisor.TakeHandoff()
	if err != nil {
		return err
	}
	cfg, err := supervisor.ReadConfig(stateDir)
	if err != nil {
		return err
	}
	j, err := supervisor.ReadJournal(stateDir)
	if err != nil {
		return err
	}
	if run := j.Current(); run != nil && run.Exit != nil {
		if err := destroyRun(cfg, stateDir, run.ContainerID); err != nil {
			fmt.Fprintln(os.Stderr, "agent-monitor:", err)
		}
	}
	if j.State == cri.StateBackOff && !j.Stopped && !time.Now().Before(j.NextStart) {
		j.RestartCount++
		_, _ = startRun(cfg, stateDir, j, h)
	}
	return handOver(stateDir, j, h)
}

// startRun starts one run and records it in the journal (a start failure is an exit
// with reason StartError, followed by the restart policy like any other exit).
func startRun(cfg *cri.ContainerConfig, stateDir string, j *cri.Journal, h *supervisor.Handoff) (*cri.Run, error) {
	run := cri.Run{RestartCount: j.RestartCount, StartedAt: time.Now(), LogPath: supervisor.LogPath(cfg, j.RestartCount)}
	s, err := startContainer(cfg, stateDir)
	if err != nil {
		run.Exit = &cri.Exit{ExitCode: 128, Reason: cri.ReasonStartError, Message: err.Error(), FinishedAt: time.Now()}
		j.Runs = append(j.Runs, run)
		d := supervisor.Decide(cfg.Restart, run.Exit, j.Stopped, j.BackoffStep, 0)
		j.BackoffStep = d.Consecutive
		if d.Restart {
			j.State, j.NextStart = cri.StateBackOff, time.Now().Add(d.Delay)
			if d.Delay == 0 {
				// Never spin: a start that fails at once waits at least the base back-off.
				base := cfg.Restart.BackoffBase
				if base <= 0 {
					base = cri.DefaultBackoffBase
				}
				j.NextStart = time.Now().Add(base)
			}
		} else {
			j.State, j.NextStart = cri.StateExited, time.Time{}
		}
		_ = supervisor.WriteJournal(stateDir, j)
		return nil, err
	}
	run.ContainerID, run.Pid, run.User = s.containerID, s.pid, s.user
	run.PidStartTime, _ = supervisor.ProcessStartTime(s.pid)
	j.Runs = append(j.Runs, run)
	j.State, j.NextStart = cri.StateRunning, time.Time{}
	h.Stdout, h.Stderr = int(s.stdout.Fd()), int(s.stderr.Fd())
	handedOver = append(handedOver, s.stdout, s.stderr)
	if err := supervisor.WriteJournal(stateDir, j); err != nil {
		return nil, err
	}
	return j.Current(), nil
}

// handOver execs the lean monitor, or ends the monitor when nothing will run again.
func handOver(stateDir string, j *cri.Journal, h *supervisor.Handoff) error {
	if j.State == cri.StateExited {
		_ = os.Remove(filepath.Join(stateDir, cri.SocketFile))
		return nil
	}
	debug.FreeOSMemory()
	return supervisor.Exec(h.Lean, nil, h)
}

func handoff(stateDir string, l *net.UnixListener) (*supervisor.Handoff, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := l.File() // a dup that survives the exec; the original closes with it
	if err != nil {
		return nil, err
	}
	handedOver = append(handedOver, f)
	return &supervisor.Handoff{
		StateDir: stateDir,
		Listener: int(f.Fd()),
		Fat:      self,
		Lean:     filepath.Join(filepath.Dir(self), LeanBinary),
	}, nil
}

func listen(stateDir string) (*net.UnixListener, error) {
	path := filepath.Join(stateDir, cri.SocketFile)
	_ = os.Remove(path)
	addr, done, err := supervisor.SocketPath(stateDir, cri.SocketFile)
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

// killOrphan cleans up after a monitor that died (kill -9): it kills the container's
// cgroup, destroys the run's state and records the exit as MonitorLost. It is run
// by agentd's runtime, which never imports libcontainer itself.
func killOrphan(stateDir string) error {
	cfg, err := supervisor.ReadConfig(stateDir)
	if err != nil {
		return err
	}
	j, err := supervisor.ReadJournal(stateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if j == nil {
		j = &cri.Journal{ID: cfg.ID}
	}
	if run := j.Current(); run != nil {
		if err := destroyRun(cfg, stateDir, run.ContainerID); err != nil {
			return err
		}
		if run.Exit == nil {
			run.Exit = &cri.Exit{ExitCode: 137, Signal: int(unix.SIGKILL), Reason: cri.ReasonMonitorLost,
				Message: "the container's monitor died; agentd killed the container", FinishedAt: time.Now()}
		}
	}
	j.State, j.NextStart = cri.StateExited, time.Time{}
	_ = os.Remove(filepath.Join(stateDir, cri.SocketFile))
	removeCgroup(cfg.Cgroup.MonitorPath)
	return supervisor.WriteJournal(stateDir, j)
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
