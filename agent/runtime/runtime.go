// Package runtime starts a monitor (agent-monitor) per container, finds and adopts
// running monitors, and talks the cri protocol to them. It never imports
// libcontainer: what needs it is done by agent-monitor subcommands.
//
// Settings that change it: run-dir (monitor state in <run-dir>/monitors/<id>/, pod
// sandboxes in <run-dir>/pods/<uid>/), root (emptyDir volumes), log-dir,
// cgroup-parent, storage-driver, seccomp-default and container-pids-limit (passed
// to each monitor in its config).
package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/mounts"
	"github.com/agentd-project/agentd/agent/monitor/supervisor"
	"github.com/agentd-project/agentd/cri"
	"github.com/agentd-project/agentd/cri/crilog"
)

// Config is the runtime's part of the agent's settings.
type Config struct {
	Settings
	Root         string // agent root (persistent)
	MonitorPath  string // the agent-monitor binary; agent-monitor-lean must sit beside it
	StartTimeout time.Duration
}

// Runtime manages monitors. It is safe for concurrent use: every method works on
// one monitor's own state directory, and callers serialise work per pod.
type Runtime struct {
	cfg    Config
	log    logr.Logger
	hostIP string
}

// Errors the runtime classifies.
var (
	ErrNotFound     = errors.New("no such container monitor")
	ErrMonitorGone  = errors.New("container monitor is not running")
	ErrIncompatible = errors.New("container monitor speaks an incompatible protocol version")
)

// New returns a runtime; it creates its directories.
func New(cfg Config, log logr.Logger) (*Runtime, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.LogMaxSize == 0 {
		cfg.LogMaxSize = 10 << 20 // kubelet's containerLogMaxSize
	}
	if cfg.LogMaxFiles == 0 {
		cfg.LogMaxFiles = 5
	}
	if _, err := os.Stat(cfg.MonitorPath); err != nil {
		return nil, fmt.Errorf("monitor binary: %w", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg.MonitorPath), "agent-monitor-lean")); err != nil {
		return nil, fmt.Errorf("agent-monitor-lean must sit beside %s: %w", cfg.MonitorPath, err)
	}
	for _, d := range []string{filepath.Join(cfg.RunDir, "monitors"), filepath.Join(cfg.RunDir, "pods"), filepath.Join(cfg.RunDir, "libcontainer"), cfg.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	_ = os.Chmod(cfg.LogDir, 0o755)
	return &Runtime{cfg: cfg, log: log, hostIP: hostIP()}, nil
}

// Settings returns the settings containers are configured with.
func (r *Runtime) Settings() *Settings { return &r.cfg.Settings }

func (r *Runtime) stateDir(id string) string { return filepath.Join(r.cfg.RunDir, "monitors", id) }

// Started is the answer of a monitor's first run.
type Started struct {
	MonitorPid  int
	Pid         int
	ContainerID string
}

// Start writes the container's config and starts its monitor, which detaches. It
// returns once the container's first run started — or failed, with the monitor's
// precise error (errors.Is cri.ErrStartFailed); the monitor then carries on with
// the restart policy.
func (r *Runtime) Start(ctx context.Context, cfg *cri.ContainerConfig) (*Started, error) {
	if err := checkComponent("container id", cfg.ID); err != nil {
		return nil, err
	}
	dir := r.stateDir(cfg.ID)
	if _, err := os.Stat(filepath.Join(dir, cri.JournalFile)); err == nil {
		return nil, fmt.Errorf("container %s: a monitor state directory exists already; remove it first", cfg.ID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// A pod may be able to write beneath log-dir (a hostPath volume): create the
	// container's log directory without following anything planted there.
	logRoot := supervisor.LogRoot(cfg)
	logDir, err := crilog.Beneath(logRoot, cfg.Log.Dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: log directory: %w", cfg.ID, err)
	}
	if err := crilog.MkdirAll(logRoot, logDir); err != nil {
		return nil, fmt.Errorf("container %s: log directory: %w", cfg.ID, err)
	}
	if err := supervisor.PrepareTerminationLog(cfg.Termination.HostPath, false); err != nil {
		return nil, fmt.Errorf("container %s: termination log: %w", cfg.ID, err)
	}
	if err := supervisor.WriteFileAtomic(filepath.Join(dir, cri.ConfigFile), cfg); err != nil {
		return nil, err
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer syncR.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		syncW.Close()
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(r.cfg.MonitorPath, "start", "--state-dir", dir)
	cmd.Stdin, cmd.Stdout = devnull, devnull
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{syncW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run() // `start` only spawns the detached monitor and exits
	syncW.Close()
	if err != nil {
		return nil, fmt.Errorf("start monitor for %s: %w: %s", cfg.ID, err, strings.TrimSpace(stderr.String()))
	}

	type result struct {
		msg SyncMessage
		err error
	}
	done := make(chan result, 1)
	go func() {
		var m SyncMessage
		data, err := io.ReadAll(syncR)
		if err == nil {
			if len(data) == 0 {
				err = fmt.Errorf("monitor for %s exited before it reported", cfg.ID)
			} else {
				err = json.Unmarshal(data, &m)
			}
		}
		done <- result{m, err}
	}()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StartTimeout)
	defer cancel()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, res.err
		}
		if res.msg.Error != "" {
			return &Started{MonitorPid: res.msg.MonitorPid}, fmt.Errorf("%w: %s", cri.ErrStartFailed, res.msg.Error)
		}
		return &Started{MonitorPid: res.msg.MonitorPid, Pid: res.msg.Pid, ContainerID: res.msg.ContainerID}, nil
	case <-ctx.Done():
		syncR.Close()
		return nil, fmt.Errorf("container %s: no answer from its monitor: %w", cfg.ID, ctx.Err())
	}
}

// SyncMessage mirrors monitor.SyncMessage (the monitor package imports libcontainer).
type SyncMessage struct {
	Pid         int    `json:"pid,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	MonitorPid  int    `json:"monitorPid"`
	Error       string `json:"error,omitempty"`
}

// Monitor is a monitor found in run-dir.
type Monitor struct {
	ID      string
	Config  *cri.ContainerConfig
	Journal *cri.Journal
	State   MonitorState
	Hello   *cri.HelloReply // when Alive or Unmanaged
	Reason  string          // why not Alive
}

// MonitorState is what List found.
type MonitorState string

const (
	MonitorAlive     MonitorState = "Alive"     // verified: pid, start time, id and protocol match
	MonitorFinished  MonitorState = "Finished"  // exited normally: its container will not run again
	MonitorDead      MonitorState = "Dead"      // gone while its container should run: Cleanup it
	MonitorUnmanaged MonitorState = "Unmanaged" // alive, but speaks a protocol this agent cannot manage
	MonitorBroken    MonitorState = "Broken"    // unreadable state: Cleanup it
)

// listWorkers bounds the monitors List checks at once.
const listWorkers = 16

// List finds every monitor in run-dir and verifies each before it is trusted.
func (r *Runtime) List(ctx context.Context) ([]*Monitor, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.RunDir, "monitors"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	// Each check waits on a monitor's answer: run them side by side, bounded.
	out := make([]*Monitor, len(ids))
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(listWorkers, len(ids)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = r.Inspect(ctx, ids[i])
			}
		}()
	}
	for i := range ids {
		work <- i
	}
	close(work)
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Inspect verifies one monitor: its journal's pid must be alive with the recorded
// start time, and the handshake must give the same pid, start time and id.
func (r *Runtime) Inspect(ctx context.Context, id string) *Monitor {
	dir := r.stateDir(id)
	m := &Monitor{ID: id}
	cfg, err := supervisor.ReadConfig(dir)
	if err != nil {
		m.State, m.Reason = MonitorBroken, err.Error()
		return m
	}
	m.Config = cfg
	j, err := supervisor.ReadJournal(dir)
	if err != nil {
		m.State, m.Reason = MonitorBroken, err.Error()
		return m
	}
	m.Journal = j
	alive := supervisor.ProcessAlive(j.MonitorPid, j.MonitorStart)
	switch {
	case j.State == cri.StateExited:
		// Its container will not run again; the process may still be removing the
		// last run for a moment (Remove waits for it).
		m.State = MonitorFinished
		return m
	case !alive:
		m.State, m.Reason = MonitorDead, fmt.Sprintf("monitor pid %d is gone", j.MonitorPid)
		return m
	}
	c, hello, err := r.dial(ctx, id)
	if err != nil {
		if errors.Is(err, ErrIncompatible) {
			m.State, m.Hello, m.Reason = MonitorUnmanaged, hello, err.Error()
			return m
		}
		// Alive but not answering: it may be between images (exec); the caller retries.
		m.State, m.Reason = MonitorDead, err.Error()
		return m
	}
	c.Close()
	if hello.Pid != j.MonitorPid || hello.StartTime != j.MonitorStart || hello.ID != id {
		m.State, m.Reason = MonitorUnmanaged, fmt.Sprintf("handshake mismatch: pid %d start %d id %q", hello.Pid, hello.StartTime, hello.ID)
		return m
	}
	m.State, m.Hello = MonitorAlive, hello
	return m
}

// conn is a verified control connection.
type conn struct {
	c *net.UnixConn
	r *bufio.Reader
}

func (c *conn) Close() error { return c.c.Close() }

// dial connects to a monitor and does the handshake. A monitor between images
// (during an exec, a few ms) has its connection queued; dial waits for it.
func (r *Runtime) dial(ctx context.Context, id string) (*conn, *cri.HelloReply, error) {
	path, done, err := supervisor.SocketPath(r.stateDir(id), cri.SocketFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrMonitorGone, id, err)
	}
	defer done()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrMonitorGone, id, err)
	}
	uc := nc.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	}
	c := &conn{c: uc, r: bufio.NewReader(uc)}
	if err := c.send(&cri.Hello{Protocol: cri.Protocol, Major: cri.ProtocolMajor, Minor: cri.ProtocolMinor}); err != nil {
		c.Close()
		return nil, nil, err
	}
	var hello cri.HelloReply
	if err := c.recv(&hello); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("%w: %s: handshake: %v", ErrMonitorGone, id, err)
	}
	if hello.Protocol != cri.Protocol || !cri.Compatible(hello.Major) {
		c.Close()
		return nil, &hello, fmt.Errorf("%w: %s speaks %s %d.%d, this agentd %d.%d", ErrIncompatible, id, hello.Protocol, hello.Major, hello.Minor, cri.ProtocolMajor, cri.ProtocolMinor)
	}
	_ = uc.SetDeadline(time.Time{})
	return c, &hello, nil
}

func (c *conn) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.c.Write(append(data, '\n'))
	return err
}

func (c *conn) recv(v any) error {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// call sends one request and returns the response's journal.
func (r *Runtime) call(ctx context.Context, id string, req *cri.Request) (*cri.Journal, error) {
	c, _, err := r.dial(ctx, id)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	}
	if err := c.send(req); err != nil {
		return nil, err
	}
	var resp cri.Response
	if err := c.recv(&resp); err != nil {
		return nil, fmt.Errorf("container %s: %s: %w", id, req.Op, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("container %s: %s: %w", id, req.Op, resp.Error)
	}
	return resp.Journal, nil
}

// Status asks a live monitor for its journal; for a monitor that is gone it reads
// the journal from disk.
func (r *Runtime) Status(ctx context.Context, id string) (*cri.Journal, error) {
	j, err := r.call(ctx, id, &cri.Request{Op: cri.OpStatus})
	if err == nil {
		return j, nil
	}
	if disk, derr := supervisor.ReadJournal(r.stateDir(id)); derr == nil {
		return disk, nil
	} else if errors.Is(derr, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil, err
}

// Signal sends a signal to a container's init.
func (r *Runtime) Signal(ctx context.Context, id string, sig unix.Signal) error {
	_, err := r.call(ctx, id, &cri.Request{Op: cri.OpSignal, Signal: int(sig)})
	return err
}

// Kill ends the container's current run (stop signal, KILL after grace) and lets
// its restart policy decide what follows, as kubelet does after a failed liveness probe.
func (r *Runtime) Kill(ctx context.Context, id string, grace time.Duration) (*cri.Journal, error) {
	g := cri.Duration(grace)
	return r.call(ctx, id, &cri.Request{Op: cri.OpKill, Grace: &g})
}

// ReopenLog asks the monitor to reopen its log file.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	_, err := r.call(ctx, id, &cri.Request{Op: cri.OpReopenLog})
	return err
}

// Stop stops a container for good (stop signal, KILL after grace) and waits until
// its monitor has cleaned up and exited. A monitor already gone is cleaned up.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) (*cri.Journal, error) {
	g := cri.Duration(grace)
	m := r.Inspect(ctx, id)
	switch m.State {
	case MonitorFinished:
		return m.Journal, nil
	case MonitorDead, MonitorBroken:
		return r.Cleanup(ctx, id)
	case MonitorUnmanaged:
		// It cannot be asked to stop: end it (pid and start time verified), then
		// kill its container through its cgroup, as for a monitor that died.
		if m.Journal != nil && supervisor.ProcessAlive(m.Journal.MonitorPid, m.Journal.MonitorStart) {
			_ = unix.Kill(m.Journal.MonitorPid, unix.SIGKILL)
			_ = waitGone(ctx, m.Journal.MonitorPid, m.Journal.MonitorStart)
		}
		return r.Cleanup(ctx, id)
	}
	j, err := r.call(ctx, id, &cri.Request{Op: cri.OpStop, Grace: &g})
	if err != nil {
		if m2 := r.Inspect(ctx, id); m2.State == MonitorFinished {
			return m2.Journal, nil
		}
		return nil, err
	}
	if m.Journal != nil {
		if err := waitGone(ctx, m.Journal.MonitorPid, m.Journal.MonitorStart); err != nil {
			return j, err
		}
	}
	if disk, err := supervisor.ReadJournal(r.stateDir(id)); err == nil {
		j = disk
	}
	return j, nil
}

// waitGone waits for a process (pid + start time) to exit.
func waitGone(ctx context.Context, pid int, start uint64) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if !supervisor.ProcessAlive(pid, start) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("monitor pid %d did not exit: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
}

// Cleanup handles a monitor that died: its container is killed through its cgroup,
// its run destroyed and its exit recorded as MonitorLost (by `agent-monitor kill`).
func (r *Runtime) Cleanup(ctx context.Context, id string) (*cri.Journal, error) {
	if err := checkComponent("container id", id); err != nil {
		return nil, err
	}
	dir := r.stateDir(id)
	if _, err := os.Stat(filepath.Join(dir, cri.ConfigFile)); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, r.cfg.MonitorPath, "kill", "--state-dir", dir).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("clean up container %s: %w: %s", id, err, strings.TrimSpace(string(out)))
	}
	return supervisor.ReadJournal(dir)
}

// Remove deletes a finished monitor's state and its cgroups. The monitor must be gone.
func (r *Runtime) Remove(id string) error {
	if err := checkComponent("container id", id); err != nil {
		return err
	}
	dir := r.stateDir(id)
	cfg, _ := supervisor.ReadConfig(dir)
	if j, err := supervisor.ReadJournal(dir); err == nil {
		if j.State == cri.StateExited {
			// A finished monitor removes its last run, then exits.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := waitGone(ctx, j.MonitorPid, j.MonitorStart)
			cancel()
			if err != nil {
				return fmt.Errorf("container %s: %w", id, err)
			}
		} else if supervisor.ProcessAlive(j.MonitorPid, j.MonitorStart) {
			return fmt.Errorf("container %s: its monitor (pid %d) still runs", id, j.MonitorPid)
		}
	}
	if cfg != nil {
		removeCgroupTree(cfg.Cgroup.MonitorPath)
		removeCgroupTree(cfg.Cgroup.Path)
	}
	// A run's rootfs or pinned subPath the monitor could not unmount (it was
	// killed, or its clean-up failed) must be unmounted first: removing through a
	// pinned subPath would delete the volume's data.
	if err := mounts.RemoveUnmounted(dir); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// hostIP is the first IPv4 address of the interface that holds the default route
// (read from /proc/net/route; nothing is sent), or "".
func hostIP() string {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return ""
}

// ExecIO is the I/O of an exec; Resize may be nil.
type ExecIO = cri.ExecStreams

// Exec runs a process in a running container and streams its I/O; it returns the
// process's exit code.
func (r *Runtime) Exec(ctx context.Context, id string, req *cri.ExecRequest, eio ExecIO) (int, error) {
	c, _, err := r.dial(ctx, id)
	if err != nil {
		return -1, err
	}
	defer c.Close()
	req.Stdin = eio.Stdin != nil
	if err := c.send(&cri.Request{Op: cri.OpExec, Exec: req}); err != nil {
		return -1, err
	}
	var resp cri.Response
	if err := c.recv(&resp); err != nil {
		return -1, fmt.Errorf("container %s: exec: %w", id, err)
	}
	if resp.Error != nil {
		return -1, fmt.Errorf("container %s: exec: %w", id, resp.Error)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	code, err := cri.ClientStream(c.r, c.c, cri.ExecStreams{Stdin: eio.Stdin, Stdout: eio.Stdout, Stderr: eio.Stderr, Resize: eio.Resize})
	if err != nil {
		return -1, fmt.Errorf("container %s: exec stream: %w", id, err)
	}
	return code, nil
}
