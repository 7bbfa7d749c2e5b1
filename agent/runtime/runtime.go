// Package runtime starts a monitor (agent-monitor) per container, finds and adopts
// running monitors, and talks the monitor protocol to them. It never imports
// libcontainer: what needs it is done by agent-monitor subcommands.
//
// Fault injection (package crashpoint): container-config-written (Start wrote the
// container's config; no monitor yet) and container-monitor-spawned (the monitor
// was started and detached; it has not reported yet). AGENTD_CRASH_AT reaches the
// monitors too; their steps are listed in package monitor.
//
// Settings that change it: run-dir (monitor state in <run-dir>/monitors/<id>/, pod
// sandboxes in <run-dir>/pods/<uid>/), root (what containers write: each
// container's runs — rootfs and writable layer — in <root>/containers/<id>/runs/,
// each pod's /etc/hosts, termination logs and emptyDir volumes in
// <root>/pods/<uid>/; run-dir is a tmpfs, so nothing a container can fill lives
// there), log-dir,
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

	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/internal/mounts"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// Config is the runtime's part of the agent's settings.
type Config struct {
	Settings
	MonitorPath  string // the agent-monitor binary; agent-monitor-lean must sit beside it
	StartTimeout time.Duration
	// AnswerTimeout is how long Inspect waits for a monitor that is alive but does
	// not answer yet (it is creating its container, before it serves its socket)
	// before it reports MonitorStarting. 0 means 30 s.
	AnswerTimeout time.Duration
	// RelistInterval is how often Watch looks at every monitor (0:
	// DefaultRelistInterval).
	RelistInterval time.Duration
	// CRILogRoot, when set, says the log directory a CRI client gave pod
	// podUID (its sandbox's LogDirectory): a monitor record of that pod may
	// have it as its Log.Root instead of log-dir. It must be safe for
	// concurrent use and prompt; ok false for a pod that is not the CRI's.
	CRILogRoot func(podUID string) (root string, ok bool) `json:"-"`
}

// Runtime manages monitors. It is safe for concurrent use: every method works on
// one monitor's own state directory, and callers serialise work per pod.
type Runtime struct {
	cfg    Config
	log    logr.Logger
	hostIP string
	qosMu  sync.Mutex // serialises UpdateQOSCgroups
}

// Errors the runtime classifies.
var (
	ErrNotFound     = errors.New("no such container monitor")
	ErrMonitorGone  = errors.New("container monitor is not running")
	ErrIncompatible = errors.New("container monitor speaks an incompatible protocol version")
	// ErrMonitorAlive: the monitor runs, so what was asked (clean up after it,
	// remove its state, start another) would fight it. Ask again later.
	ErrMonitorAlive = errors.New("container monitor is alive")
	// ErrMonitorBusy: the monitor runs but does not answer yet (creating its
	// container takes a while); ask again later.
	ErrMonitorBusy = errors.New("container monitor is alive but does not answer yet")
)

// New returns a runtime; it creates its directories.
func New(cfg Config, log logr.Logger) (*Runtime, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.AnswerTimeout == 0 {
		cfg.AnswerTimeout = 30 * time.Second
	}
	if cfg.LogMaxSize == 0 {
		cfg.LogMaxSize = 10 << 20 // kubelet's containerLogMaxSize
	}
	if cfg.LogMaxFiles == 0 {
		cfg.LogMaxFiles = 5
	}
	if err := checkDirs(&cfg); err != nil {
		return nil, err
	}
	cfg.Root, cfg.RunDir, cfg.LogDir = filepath.Clean(cfg.Root), filepath.Clean(cfg.RunDir), filepath.Clean(cfg.LogDir)
	if _, err := os.Stat(cfg.MonitorPath); err != nil {
		return nil, fmt.Errorf("monitor binary: %w", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg.MonitorPath), protocol.LeanBinary)); err != nil {
		return nil, fmt.Errorf("agent-monitor-lean must sit beside %s: %w", cfg.MonitorPath, err)
	}
	dirs := []string{filepath.Join(cfg.RunDir, protocol.MonitorsDir), filepath.Join(cfg.RunDir, "pods"), filepath.Join(cfg.RunDir, "libcontainer"), cfg.LogDir}
	if cfg.Root != "" {
		dirs = append(dirs, filepath.Join(cfg.Root, containersDir), filepath.Join(cfg.Root, "pods"))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	_ = os.Chmod(cfg.LogDir, 0o755)
	return &Runtime{cfg: cfg, log: log, hostIP: hostIP()}, nil
}

// Settings returns the settings containers are configured with.
func (r *Runtime) Settings() *Settings { return &r.cfg.Settings }

func (r *Runtime) stateDir(id string) string { return protocol.StateDir(r.cfg.RunDir, id) }

// containersDir, under root, holds what each container's runs leave on disk.
const containersDir = "containers"

// ContainerRunsDir is where the monitor of container id keeps its runs
// (protocol.Rootfs.RunsDir): <root>/containers/<id>/runs, on disk, so that a
// container filling its writable layer fills root, never run-dir (a tmpfs). id
// must be one path component (checkComponent).
func ContainerRunsDir(root, id string) string { return filepath.Join(root, containersDir, id, "runs") }

// containerDir is container id's directory under root.
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.cfg.Root, containersDir, id) }

func (r *Runtime) runsDir(id string) string { return ContainerRunsDir(r.cfg.Root, id) }

// checkRunsDir proves that a config's Rootfs.RunsDir, when set, is this
// container's directory under root (so local to it) before launch creates it.
func (r *Runtime) checkRunsDir(cfg *protocol.ContainerConfig) error {
	if cfg.Rootfs.RunsDir == "" {
		return nil
	}
	if err := protocol.CheckRunsDir(cfg.Rootfs.RunsDir); err != nil {
		return fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	if r.cfg.Root == "" || cfg.Rootfs.RunsDir != r.runsDir(cfg.ID) {
		return fmt.Errorf("container %s: %w: runs directory %s is not %s", cfg.ID, ErrUnsafeName, cfg.Rootfs.RunsDir, r.runsDir(cfg.ID))
	}
	return nil
}

// Started is the answer of a monitor's first run.
type Started struct {
	MonitorPid  int
	Pid         int
	ContainerID string
}

// Start writes the container's config and starts its monitor, which detaches. It
// returns once the container's first run started — or failed, with the monitor's
// precise error (errors.Is protocol.ErrStartFailed); the monitor then carries on with
// the restart policy.
//
// From before the config is written until the monitor is gone, the state dir's
// lock (protocol.Lock) is held — by Start, then by the monitor, which
// inherits it — so that a restarted agentd never takes a monitor it cannot see yet
// for a dead one. A state dir left with a config and no journal (an agentd killed
// before its monitor started) is started over.
func (r *Runtime) Start(ctx context.Context, cfg *protocol.ContainerConfig) (*Started, error) {
	syncR, err := r.launch(cfg)
	if err != nil {
		return nil, err
	}
	defer syncR.Close()

	type result struct {
		msg protocol.SyncMessage
		err error
	}
	done := make(chan result, 1)
	go func() {
		var m protocol.SyncMessage
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
			return &Started{MonitorPid: res.msg.MonitorPid}, fmt.Errorf("%w: %s", protocol.ErrStartFailed, res.msg.Error)
		}
		return &Started{MonitorPid: res.msg.MonitorPid, Pid: res.msg.Pid, ContainerID: res.msg.ContainerID}, nil
	case <-ctx.Done():
		syncR.Close()
		return nil, fmt.Errorf("container %s: no answer from its monitor: %w", cfg.ID, ctx.Err())
	}
}

// makeLogDir creates the directory the container's log files go to: Log.Dir, or
// the directory of Log.File when a CRI client named the file. A pod may be able to
// write beneath the log root (a hostPath volume), so it is created without
// following anything planted there: a symlink or a file in the way is refused.
func makeLogDir(cfg *protocol.ContainerConfig) error {
	root := protocol.LogRoot(cfg)
	var dir string
	if cfg.Log.File != "" {
		if err := cfg.Log.CheckFile(); err != nil {
			return err
		}
		dir = filepath.Dir(cfg.Log.File) // "." for a file right in the root
	} else {
		var err error
		if dir, err = crilog.Beneath(root, cfg.Log.Dir); err != nil {
			return err
		}
	}
	return crilog.MkdirAll(root, dir)
}

// launch prepares the monitor's state dir and starts the monitor; it returns the
// read end of the pipe the monitor reports on.
func (r *Runtime) launch(cfg *protocol.ContainerConfig) (*os.File, error) {
	if err := checkComponent("container id", cfg.ID); err != nil {
		return nil, err
	}
	if err := r.checkRunsDir(cfg); err != nil {
		return nil, err
	}
	dir := r.stateDir(cfg.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := protocol.Lock(dir)
	if err != nil {
		if errors.Is(err, protocol.ErrLocked) {
			return nil, fmt.Errorf("container %s: %w: it is running or being started; stop it first", cfg.ID, ErrMonitorAlive)
		}
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	// Ours closes on return; the monitor's copy holds the lock from then on.
	defer lock.Close()
	if _, err := os.Stat(filepath.Join(dir, protocol.JournalFile)); err == nil {
		return nil, fmt.Errorf("container %s: a monitor state directory exists already; remove it first", cfg.ID)
	}
	if err := makeLogDir(cfg); err != nil {
		return nil, fmt.Errorf("container %s: log directory: %w", cfg.ID, err)
	}
	if cfg.Rootfs.RunsDir != "" {
		if err := os.MkdirAll(cfg.Rootfs.RunsDir, 0o700); err != nil {
			return nil, fmt.Errorf("container %s: runs directory: %w", cfg.ID, err)
		}
	}
	if err := protocol.PrepareTerminationLog(cfg.Termination.HostPath, false); err != nil {
		return nil, fmt.Errorf("container %s: termination log: %w", cfg.ID, err)
	}
	if err := protocol.WriteConfig(dir, cfg); err != nil {
		return nil, err
	}
	crashpoint.Hit("container-config-written")
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		syncR.Close()
		syncW.Close()
		return nil, err
	}
	defer devnull.Close()
	// The sync pipe is protocol.SyncFd and the lock protocol.LockFd in `start`,
	// which passes both on.
	cmd := exec.Command(r.cfg.MonitorPath, protocol.StartArgs(dir)...)
	cmd.Stdin, cmd.Stdout = devnull, devnull
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{syncW, lock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// `start` forks the monitor before its Go runtime starts, which keeps
	// this environment: it lives as long as its container, and gets none of
	// agentd's.
	cmd.Env = monitorEnv()
	err = cmd.Run() // `start` only forks the detached monitor and exits
	syncW.Close()
	if err != nil {
		syncR.Close()
		return nil, fmt.Errorf("start monitor for %s: %w: %s", cfg.ID, err, strings.TrimSpace(stderr.String()))
	}
	crashpoint.Hit("container-monitor-spawned")
	return syncR, nil
}

// monitorEnv is the environment of a monitor agentd starts: PATH, and the crash
// points tests arm through agentd's environment.
func monitorEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if v, ok := os.LookupEnv(crashpoint.Env); ok {
		env = append(env, crashpoint.Env+"="+v)
	}
	return env
}

// Monitor is a monitor found in run-dir.
type Monitor struct {
	ID      string
	Config  *protocol.ContainerConfig // nil when Broken, or Starting before Start wrote it
	Journal *protocol.Journal         // nil when Broken, or Starting before the monitor wrote it
	State   MonitorState
	Reason  string // why not Alive
}

// MonitorState is what List found.
type MonitorState string

const (
	MonitorAlive    MonitorState = "Alive"    // verified: pid, start time, id and protocol match
	MonitorFinished MonitorState = "Finished" // exited normally: its container will not run again
	// MonitorStarting: alive (it holds its state dir's lock, or its pid and start
	// time match the journal) but it did not answer within Config.AnswerTimeout: it
	// is creating its container, before it serves its socket. Never clean it up:
	// adopt it and Inspect it again later.
	MonitorStarting  MonitorState = "Starting"
	MonitorDead      MonitorState = "Dead"      // gone while its container should run: Cleanup it
	MonitorUnmanaged MonitorState = "Unmanaged" // alive, but speaks a protocol this agent cannot manage
	MonitorBroken    MonitorState = "Broken"    // unreadable state and no monitor alive: Cleanup it
)

// listWorkers bounds the monitors List checks at once.
const listWorkers = 16

// List finds every monitor in run-dir and verifies each before it is trusted. A
// monitor that is alive but not answering yet makes it wait, up to
// Config.AnswerTimeout (see Inspect).
func (r *Runtime) List(ctx context.Context) ([]*Monitor, error) {
	ids, err := r.IDs()
	if err != nil {
		return nil, err
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
				out[i] = r.inspectWait(ctx, ids[i], true)
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

// answerPoll is how often Inspect looks again at a live monitor that has no
// socket yet.
const answerPoll = 20 * time.Millisecond

// Inspect verifies one monitor: it must be alive — holding its state dir's lock,
// or (a monitor older than the lock) alive with the journal's pid and start time —
// and the handshake must give the journal's pid, start time and id. A monitor that
// is alive but does not answer yet is waited for, up to Config.AnswerTimeout or
// ctx, and then reported as MonitorStarting, never as Dead: cleaning up after a
// live monitor would destroy a run it goes on with.
func (r *Runtime) Inspect(ctx context.Context, id string) *Monitor {
	return r.inspectWait(ctx, id, false)
}

// inspectWait is Inspect. With trust (List, for a restore), a monitor that holds
// its lock and stamped its journal with a protocol this agentd speaks
// (protocol.Journal.Speaks) is Alive without a handshake when its journal's
// process is: one that does not answer is then found by the first call to it.
func (r *Runtime) inspectWait(ctx context.Context, id string, trust bool) *Monitor {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AnswerTimeout)
	defer cancel()
	for {
		m := r.inspect(ctx, id, trust)
		if m.State != MonitorStarting {
			return m
		}
		select {
		case <-ctx.Done():
			return m
		case <-time.After(answerPoll):
		}
	}
}

// inspect looks at a monitor once; a handshake may wait until ctx is done.
func (r *Runtime) inspect(ctx context.Context, id string, trust bool) *Monitor {
	dir := r.stateDir(id)
	m := &Monitor{ID: id}
	cfg, cerr := protocol.ReadConfig(dir)
	j, jerr := protocol.ReadJournal(dir)
	// The lock is looked at after the reads: looked at before, a Start beginning in
	// between would leave a state dir that reads as Broken while it is being started.
	locked := protocol.Locked(dir)
	m.Config, m.Journal = cfg, j
	switch {
	case cerr != nil && locked:
		m.State, m.Reason = MonitorStarting, "being started: its config is not written yet"
		return m
	case cerr != nil:
		m.State, m.Reason = MonitorBroken, cerr.Error()
		return m
	case jerr != nil && locked:
		m.State, m.Reason = MonitorStarting, "its monitor started and has not written its journal yet"
		return m
	case jerr != nil:
		m.State, m.Reason = MonitorBroken, jerr.Error()
		return m
	case j.State == protocol.StateExited:
		// Its container will not run again; the process may still be removing the
		// last run for a moment (Remove waits for it).
		m.State = MonitorFinished
		return m
	case !locked && !protocol.ProcessAlive(j.MonitorPid, j.MonitorStart):
		m.State, m.Reason = MonitorDead, fmt.Sprintf("monitor pid %d is gone", j.MonitorPid)
		return m
	case trust && locked && j.ID == id && j.Speaks.Compatible() && protocol.ProcessAlive(j.MonitorPid, j.MonitorStart):
		// It holds its lock, it is the journal's live process, the journal is
		// of this container, and it stamped the journal with a protocol this
		// agentd speaks: the handshake's four facts, taken at the journal's word,
		// since the state dir is root's and only monitors write journals.
		// Saying Hello to each would wake every monitor of a restore, one after
		// the other on a busy machine; every call says Hello anyway (dial), and
		// finds a monitor that stopped answering.
		m.State = MonitorAlive
		return m
	}
	hello, err := r.hello(ctx, id)
	if err != nil {
		if errors.Is(err, ErrIncompatible) {
			m.State, m.Reason = MonitorUnmanaged, err.Error()
			return m
		}
		// Not answering: it may be creating its container (before it serves its
		// socket), between images (exec), or have died just now.
		if r.monitorAlive(dir) {
			m.State, m.Reason = MonitorStarting, fmt.Sprintf("monitor pid %d is alive but does not answer yet: %v", j.MonitorPid, err)
			return m
		}
		// It exited meanwhile: finished, or dead.
		if last, err := protocol.ReadJournal(dir); err == nil {
			m.Journal = last
			if last.State == protocol.StateExited {
				m.State, m.Reason = MonitorFinished, ""
				return m
			}
		}
		m.State, m.Reason = MonitorDead, fmt.Sprintf("monitor pid %d exited without a word", j.MonitorPid)
		return m
	}
	if hello.Pid != j.MonitorPid || hello.StartTime != j.MonitorStart || hello.ID != id {
		m.State, m.Reason = MonitorUnmanaged, fmt.Sprintf("handshake mismatch: pid %d start %d id %q", hello.Pid, hello.StartTime, hello.ID)
		return m
	}
	m.State = MonitorAlive
	return m
}

// monitorAlive reports whether a monitor process works on the state dir: it holds
// the lock, or (a monitor older than the lock) the journal's process is alive.
func (r *Runtime) monitorAlive(dir string) bool {
	if protocol.Locked(dir) {
		return true
	}
	j, err := protocol.ReadJournal(dir)
	return err == nil && protocol.ProcessAlive(j.MonitorPid, j.MonitorStart)
}

// conn is a verified control connection.
type conn struct {
	c *net.UnixConn
	r *bufio.Reader
}

func (c *conn) Close() error { return c.c.Close() }

// dial connects to a monitor and does the handshake. A monitor between images
// (during an exec, a few ms) has its connection queued; dial waits for it.
func (r *Runtime) dial(ctx context.Context, id string) (*conn, *protocol.HelloReply, error) {
	path, done, err := protocol.SocketAddr(r.stateDir(id))
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
	if err := c.send(protocol.NewHello()); err != nil {
		c.Close()
		return nil, nil, err
	}
	var hello protocol.HelloReply
	if err := c.recv(&hello); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("%w: %s: handshake: %v", ErrMonitorGone, id, err)
	}
	if hello.Protocol != protocol.Name || !protocol.Compatible(hello.Major) {
		c.Close()
		return nil, &hello, fmt.Errorf("%w: %s speaks %s %d.%d, this agentd %d.%d", ErrIncompatible, id, hello.Protocol, hello.Major, hello.Minor, protocol.Major, protocol.Minor)
	}
	_ = uc.SetDeadline(time.Time{})
	return c, &hello, nil
}

func (c *conn) send(v any) error { return protocol.WriteMessage(c.c, v) }

func (c *conn) recv(v any) error { return protocol.ReadMessage(c.r, v, protocol.MaxResponseLine) }

// call sends one request and returns the response's journal.
func (r *Runtime) call(ctx context.Context, id string, req *protocol.Request) (*protocol.Journal, error) {
	c, _, err := r.dial(ctx, id)
	if err != nil {
		if !errors.Is(err, ErrIncompatible) && r.monitorAlive(r.stateDir(id)) {
			return nil, fmt.Errorf("container %s: %s: %w (%v)", id, req.Op, ErrMonitorBusy, err)
		}
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	}
	if err := c.send(req); err != nil {
		return nil, err
	}
	var resp protocol.Response
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
func (r *Runtime) Status(ctx context.Context, id string) (*protocol.Journal, error) {
	j, err := r.call(ctx, id, &protocol.Request{Op: protocol.OpStatus})
	if err == nil {
		return j, nil
	}
	if disk, derr := protocol.ReadJournal(r.stateDir(id)); derr == nil {
		return disk, nil
	} else if errors.Is(derr, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil, err
}

// Signal sends a signal to a container's init.
func (r *Runtime) Signal(ctx context.Context, id string, sig unix.Signal) error {
	_, err := r.call(ctx, id, &protocol.Request{Op: protocol.OpSignal, Signal: int(sig)})
	return err
}

// Kill ends the container's current run (stop signal, KILL after grace) and lets
// its restart policy decide what follows, as kubelet does after a failed liveness probe.
func (r *Runtime) Kill(ctx context.Context, id string, grace time.Duration) (*protocol.Journal, error) {
	g := protocol.Duration(grace)
	return r.call(ctx, id, &protocol.Request{Op: protocol.OpKill, Grace: &g})
}

// Update changes a container's cgroup limits (protocol.OpUpdate): at once on
// its running container, and in its monitor's config, so that its restarts
// and a later agentd keep them. It returns the limits now in force. A monitor
// older than the update capability gives an error wrapping
// protocol.ErrUnsupported (nothing is changed); one whose container will not
// run again protocol.ErrNotRunning; limits the kernel refused
// protocol.ErrInvalid, with the kernel's message.
func (r *Runtime) Update(ctx context.Context, id string, upd *protocol.Resources) (*protocol.Cgroup, error) {
	if err := upd.Check(); err != nil {
		return nil, fmt.Errorf("container %s: %w: %w", id, protocol.ErrInvalid, err)
	}
	c, hello, err := r.dial(ctx, id)
	if err != nil {
		if !errors.Is(err, ErrIncompatible) && r.monitorAlive(r.stateDir(id)) {
			return nil, fmt.Errorf("container %s: update: %w (%v)", id, ErrMonitorBusy, err)
		}
		return nil, err
	}
	defer c.Close()
	if !hello.HasCapability(protocol.OpUpdate) {
		return nil, fmt.Errorf("container %s: update: %w: its monitor %s speaks protocol %d.%d, before resource updates (%d.2); recreate the container to change its limits",
			id, protocol.ErrUnsupported, hello.MonitorVersion, hello.Major, hello.Minor, protocol.Major)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	}
	if err := c.send(&protocol.Request{Op: protocol.OpUpdate, Update: upd}); err != nil {
		return nil, err
	}
	var resp protocol.Response
	if err := c.recv(&resp); err != nil {
		return nil, fmt.Errorf("container %s: update: %w", id, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("container %s: update: %w", id, resp.Error)
	}
	if resp.Cgroup == nil {
		return nil, fmt.Errorf("container %s: update: its monitor did not say the limits now in force", id)
	}
	return resp.Cgroup, nil
}

// ReopenLog asks the monitor to reopen its log file.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	_, err := r.call(ctx, id, &protocol.Request{Op: protocol.OpReopenLog})
	return err
}

// Stop stops a container for good (stop signal, KILL after grace) and waits until
// its monitor has cleaned up and exited. A monitor already gone is cleaned up. One
// that does not answer yet is waited for (ErrMonitorBusy if ctx ends first), but
// not for ever: silent for StartTimeout, it is taken as wedged and ended like an
// Unmanaged one.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) (*protocol.Journal, error) {
	g := protocol.Duration(grace)
	m := r.Inspect(ctx, id)
	wedged := time.Now().Add(r.cfg.StartTimeout)
	for m.State == MonitorStarting && time.Now().Before(wedged) {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("container %s: %w: %s", id, ErrMonitorBusy, m.Reason)
		}
		m = r.Inspect(ctx, id)
	}
	switch m.State {
	case MonitorFinished:
		return m.Journal, nil
	case MonitorDead, MonitorBroken:
		return r.Cleanup(ctx, id)
	case MonitorUnmanaged, MonitorStarting:
		// It cannot be asked to stop: end it (pid and start time verified), then
		// kill its container through its cgroup, as for a monitor that died. A
		// monitor that wrote no journal yet has no pid to verify: Cleanup refuses.
		// The pid is the journal's: it is signalled only while it is in the
		// monitor cgroup of a record agentd made, never as a bare pid.
		if m.Journal != nil && m.Config != nil && protocol.ProcessAlive(m.Journal.MonitorPid, m.Journal.MonitorStart) {
			if err := r.checkConfig(id, m.Config); err != nil {
				r.log.Error(err, "Not stopping a monitor whose record agentd did not make; leaving it to the operator", "container", id)
				return nil, err
			}
			if err := cgroupkill.Pid(m.Journal.MonitorPid, m.Config.Cgroup.MonitorPath, unix.SIGKILL); err != nil {
				return nil, fmt.Errorf("container %s: end its monitor: %w", id, err)
			}
			_ = waitGone(ctx, m.Journal.MonitorPid, m.Journal.MonitorStart)
		}
		return r.Cleanup(ctx, id)
	}
	j, err := r.call(ctx, id, &protocol.Request{Op: protocol.OpStop, Grace: &g})
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
	if disk, err := protocol.ReadJournal(r.stateDir(id)); err == nil {
		j = disk
	}
	return j, nil
}

// waitGone waits for a process (pid + start time) to exit.
func waitGone(ctx context.Context, pid int, start uint64) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if !protocol.ProcessAlive(pid, start) {
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
// every run it left destroyed (recorded or not) and its exit recorded as
// MonitorLost (by `agent-monitor kill`). While the monitor is alive — it holds the
// state dir's lock, or its pid and start time match the journal — it refuses with
// ErrMonitorAlive and touches nothing: adopt the monitor and check it again later.
func (r *Runtime) Cleanup(ctx context.Context, id string) (*protocol.Journal, error) {
	if err := checkComponent("container id", id); err != nil {
		return nil, err
	}
	dir := r.stateDir(id)
	if cfg, err := protocol.ReadConfig(dir); err == nil {
		// `kill` kills what the config's cgroups hold and destroys its runs.
		if err := r.checkConfig(id, cfg); err != nil {
			r.log.Error(err, "Not cleaning up after a monitor whose record agentd did not make; leaving it to the operator", "container", id, "stateDir", dir)
			return nil, err
		}
	}
	if r.monitorAlive(dir) {
		return nil, fmt.Errorf("container %s: %w; not cleaning up", id, ErrMonitorAlive)
	}
	if _, err := os.Stat(filepath.Join(dir, protocol.ConfigFile)); err != nil {
		// Nothing ever ran from here (no config, no monitor): remove what is left.
		return nil, mounts.RemoveUnmounted(dir)
	}
	out, err := exec.CommandContext(ctx, r.cfg.MonitorPath, protocol.KillArgs(dir)...).CombinedOutput()
	if err != nil {
		// `kill` takes the lock and checks the pid itself: a monitor can have
		// started since the check above.
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == protocol.ExitMonitorAlive {
			return nil, fmt.Errorf("container %s: %w: %s", id, ErrMonitorAlive, strings.TrimSpace(string(out)))
		}
		return nil, fmt.Errorf("clean up container %s: %w: %s", id, err, strings.TrimSpace(string(out)))
	}
	return protocol.ReadJournal(dir)
}

// Remove deletes a finished monitor's state, what its runs left under root and
// its cgroups. The monitor must be gone (ErrMonitorAlive otherwise): a finished
// one is waited for. It also removes what is left under root of a container
// whose state directory is gone already.
func (r *Runtime) Remove(id string) error {
	if err := checkComponent("container id", id); err != nil {
		return err
	}
	dir := r.stateDir(id)
	cfg, _ := protocol.ReadConfig(dir)
	if cfg != nil {
		if err := r.checkRecord(id, cfg); err != nil {
			r.log.Error(err, "Not removing a monitor whose record agentd did not make; leaving it to the operator", "container", id, "stateDir", dir)
			return err
		}
		if err := r.checkCgroups(id, cfg); err != nil {
			// A cgroup-parent changed since (a restore-sensitive setting), or a
			// planted record: its own state dir goes, the cgroups it names stay.
			r.log.Error(err, "Leaving alone the cgroups a monitor record names outside cgroup-parent", "container", id, "cgroup", cfg.Cgroup.Path, "monitorCgroup", cfg.Cgroup.MonitorPath)
			cfg = nil
		}
	}
	if j, err := protocol.ReadJournal(dir); err == nil {
		if j.State == protocol.StateExited {
			// A finished monitor removes its last run, then exits.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := waitGone(ctx, j.MonitorPid, j.MonitorStart)
			cancel()
			if err != nil {
				return fmt.Errorf("container %s: %w", id, err)
			}
		} else if protocol.ProcessAlive(j.MonitorPid, j.MonitorStart) {
			return fmt.Errorf("container %s: %w: pid %d still runs", id, ErrMonitorAlive, j.MonitorPid)
		}
	}
	if protocol.Locked(dir) {
		return fmt.Errorf("container %s: %w: a process holds %s", id, ErrMonitorAlive, filepath.Join(dir, protocol.LockFile))
	}
	if cfg != nil {
		removeCgroupTree(cfg.Cgroup.MonitorPath)
		removeCgroupTree(cfg.Cgroup.Path)
	}
	// A run's rootfs or pinned subPath the monitor could not unmount (it was
	// killed, or its clean-up failed) must be unmounted first: removing through a
	// pinned subPath would delete the volume's data. Root's part goes first: a
	// state directory left by a crash in between is found again by IDs.
	if cfg != nil {
		if err := r.checkRunsPlace(id, cfg); err != nil {
			// Written by an agentd with another root, or planted: nothing proves
			// the place is agentd's, so it stays (as foreign cgroups do).
			r.log.Error(err, "Leaving alone a runs directory a monitor record names outside root", "container", id, "runsDir", cfg.Rootfs.RunsDir)
		}
	}
	if r.cfg.Root != "" {
		if err := mounts.RemoveUnmounted(r.containerDir(id)); err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
	}
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
type ExecIO = protocol.ExecStreams

// Exec runs a process in a running container and streams its I/O; it returns the
// process's exit code.
func (r *Runtime) Exec(ctx context.Context, id string, req *protocol.ExecRequest, eio ExecIO) (int, error) {
	c, _, err := r.dial(ctx, id)
	if err != nil {
		return -1, err
	}
	defer c.Close()
	req.Stdin = eio.Stdin != nil
	if err := c.send(&protocol.Request{Op: protocol.OpExec, Exec: req}); err != nil {
		return -1, err
	}
	var resp protocol.Response
	if err := c.recv(&resp); err != nil {
		return -1, fmt.Errorf("container %s: exec: %w", id, err)
	}
	if resp.Error != nil {
		return -1, fmt.Errorf("container %s: exec: %w", id, resp.Error)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	code, err := protocol.ClientStream(c.r, c.c, protocol.ExecStreams{Stdin: eio.Stdin, Stdout: eio.Stdout, Stderr: eio.Stderr, Resize: eio.Resize})
	if err != nil {
		return -1, fmt.Errorf("container %s: exec stream: %w", id, err)
	}
	return code, nil
}

// AttachIO is the I/O of an attach: a nil Stdin, Stdout or Stderr is not attached;
// Resize may be nil.
type AttachIO = protocol.ExecStreams

// Attach attaches to the current run of a container: what it writes from now on
// goes to aio.Stdout and aio.Stderr (a client that does not keep up loses output;
// the container never waits for it), aio.Stdin goes to its stdin (the container
// must have Process.Stdin: protocol.ErrInvalid otherwise; at aio.Stdin's EOF a
// StdinOnce container's stdin is closed) and sizes from aio.Resize to its terminal
// (Process.Tty). It returns nil when the run ends or ctx is done (the client
// detached); protocol.ErrNotRunning when no run is going, protocol.ErrUnsupported
// from a monitor older than the attach capability.
func (r *Runtime) Attach(ctx context.Context, id string, aio AttachIO) error {
	c, hello, err := r.dial(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	if !hello.HasCapability(protocol.OpAttach) {
		return fmt.Errorf("container %s: attach: %w (monitor %s speaks protocol %d.%d)", id, protocol.ErrUnsupported, hello.MonitorVersion, hello.Major, hello.Minor)
	}
	req := &protocol.AttachRequest{Stdin: aio.Stdin != nil, Stdout: aio.Stdout != nil, Stderr: aio.Stderr != nil}
	if err := c.send(&protocol.Request{Op: protocol.OpAttach, Attach: req}); err != nil {
		return err
	}
	var resp protocol.Response
	if err := c.recv(&resp); err != nil {
		return fmt.Errorf("container %s: attach: %w", id, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("container %s: attach: %w", id, resp.Error)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := protocol.ClientStream(c.r, c.c, aio); err != nil && ctx.Err() == nil {
		return fmt.Errorf("container %s: attach stream: %w", id, err)
	}
	return nil
}
