// Package runtimetest is a fake runtime.Interface for tests that need no root:
// pods' sandboxes are directories, monitors are records in memory whose
// journals change as a monitor's would (a run per start, the restart policy on
// each exit), and every call is recorded. Tests drive what a real container
// would do with Exit and what a crash would do with KillMonitor.
package runtimetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
)

// Runtime is the fake. It is safe for concurrent use.
type Runtime struct {
	dir      string
	settings runtime.Settings

	mu        sync.Mutex // guards the fields below
	calls     []string
	monitors  map[string]*monitor
	sandboxes map[string]bool
	watch     chan runtime.Event // the current watcher's, or nil
	watchCtx  context.Context
	// startErr makes Start of a container ID fail with the error.
	startErr map[string]error
	// updateErr makes Update of a container ID fail with the error.
	updateErr map[string]error
	// execExit is the exit code of Exec of a command, by its first word (0 when absent).
	execExit map[string]int
	// execErr makes Exec of a command, by its first word, fail to run with the error.
	execErr map[string]error
	// execHold makes Exec of a command, by its first word, wait until the channel is closed.
	execHold map[string]chan struct{}
	// graces are the grace periods Stop and Kill were given, by container ID.
	graces map[string][]time.Duration
	pids   int
	// qosPods are the UIDs UpdateQOSCgroups was given last.
	qosPods []string
}

type monitor struct {
	cfg     *protocol.ContainerConfig
	journal *protocol.Journal
	dead    bool // its monitor was killed (KillMonitor)
}

var _ runtime.Interface = (*Runtime)(nil)

// New returns a fake whose sandboxes are made under dir.
func New(dir string) *Runtime {
	return &Runtime{dir: dir, monitors: map[string]*monitor{}, sandboxes: map[string]bool{},
		startErr: map[string]error{}, updateErr: map[string]error{}, execExit: map[string]int{}, execHold: map[string]chan struct{}{}, execErr: map[string]error{}, graces: map[string][]time.Duration{}, settings: runtime.Settings{RunDir: dir, LogDir: filepath.Join(dir, "logs")}}
}

// SetExecExit makes Exec of a command whose first word is cmd exit with code.
func (r *Runtime) SetExecExit(cmd string, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execExit[cmd] = code
}

// Graces returns the grace periods Stop and Kill of container id were given, in order.
func (r *Runtime) Graces(id string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.graces[id])
}

func (r *Runtime) record(format string, args ...any) {
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

// Calls returns the calls made so far, as "Start <id>", "Stop <id>", … in order.
func (r *Runtime) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// FailStart makes every Start of a container fail with err (nil: succeed again).
func (r *Runtime) FailStart(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startErr[id] = err
}

// emit sends an event to the current watcher. Callers hold mu; events are
// buffered generously, and a watcher that is gone drops them.
func (r *Runtime) emit(ev runtime.Event) {
	if r.watch == nil || r.watchCtx.Err() != nil {
		return
	}
	ev.Journal = clone(ev.Journal)
	select {
	case r.watch <- ev:
	default:
		panic("runtimetest: the agent does not read its events")
	}
}

func clone(j *protocol.Journal) *protocol.Journal {
	if j == nil {
		return nil
	}
	c := *j
	c.Runs = make([]protocol.Run, len(j.Runs))
	for i, run := range j.Runs {
		c.Runs[i] = run
		if run.Exit != nil {
			e := *run.Exit
			c.Runs[i].Exit = &e
		}
	}
	return &c
}

// Settings implements runtime.Interface.
func (r *Runtime) Settings() *runtime.Settings { return &r.settings }

// EnsureSandbox implements runtime.Interface.
func (r *Runtime) EnsureSandbox(pod *corev1.Pod) (*runtime.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	uid := string(pod.UID)
	r.record("EnsureSandbox %s", uid)
	dir := r.SandboxDir(uid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r.sandboxes[uid] = true
	return &runtime.Sandbox{Dir: dir, NetNS: filepath.Join(dir, "ns", "net"), Volumes: map[string]string{}}, nil
}

// RemoveSandbox implements runtime.Interface.
func (r *Runtime) RemoveSandbox(uid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("RemoveSandbox %s", uid)
	delete(r.sandboxes, uid)
	_ = os.RemoveAll(r.SandboxDir(uid))
}

// UpdateQOSCgroups implements runtime.Interface. It keeps the UIDs it was
// given last (QOSPods) and records no call: it runs beside every sandbox change.
func (r *Runtime) UpdateQOSCgroups(pods []*corev1.Pod) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.qosPods = r.qosPods[:0]
	for _, p := range pods {
		r.qosPods = append(r.qosPods, string(p.UID))
	}
	return nil
}

// QOSPods are the UIDs of the pods UpdateQOSCgroups was given last.
func (r *Runtime) QOSPods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.qosPods)
}

// SandboxNetNS implements runtime.Interface.
func (r *Runtime) SandboxNetNS(uid string) string {
	return filepath.Join(r.SandboxDir(uid), "ns", "net")
}

// SandboxDir implements runtime.Interface.
func (r *Runtime) SandboxDir(uid string) string { return filepath.Join(r.dir, "pods", uid) }

// CheckSandbox implements runtime.Interface: the sandbox must be one this fake
// made for the pod, with volumes only of the pod's spec.
func (r *Runtime) CheckSandbox(pod *corev1.Pod, sb *runtime.Sandbox) error {
	if sb.Dir != r.SandboxDir(string(pod.UID)) {
		return fmt.Errorf("%w: sandbox directory %q", runtime.ErrForeignRecord, sb.Dir)
	}
	for name := range sb.Volumes {
		if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name }) {
			return fmt.Errorf("%w: volume %q", runtime.ErrForeignRecord, name)
		}
	}
	return nil
}

// Sandboxes implements runtime.Interface.
func (r *Runtime) Sandboxes() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for uid := range r.sandboxes {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out, nil
}

// PodsWithState implements runtime.Interface.
func (r *Runtime) PodsWithState() []string {
	out, _ := r.Sandboxes()
	return out
}

// HasSandbox says whether a pod's sandbox exists.
func (r *Runtime) HasSandbox(uid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sandboxes[uid]
}

// Start implements runtime.Interface: the container runs at once.
func (r *Runtime) Start(_ context.Context, cfg *protocol.ContainerConfig) (*runtime.Started, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("Start %s", cfg.ID)
	if m := r.monitors[cfg.ID]; m != nil {
		if !m.dead && m.journal.State != protocol.StateExited {
			return nil, fmt.Errorf("container %s: %w", cfg.ID, runtime.ErrMonitorAlive)
		}
		return nil, fmt.Errorf("container %s: a monitor state directory exists already; remove it first", cfg.ID)
	}
	if err := r.startErr[cfg.ID]; err != nil {
		return nil, err
	}
	r.pids++
	m := &monitor{cfg: cfg, journal: &protocol.Journal{ID: cfg.ID, MonitorPid: 1000 + r.pids, MonitorStart: 1}}
	r.monitors[cfg.ID] = m
	r.run(m)
	r.emit(runtime.Event{Type: runtime.JournalChanged, ID: cfg.ID, Journal: m.journal})
	cur := m.journal.Current()
	return &runtime.Started{MonitorPid: m.journal.MonitorPid, Pid: 2000 + r.pids, ContainerID: cur.ContainerID}, nil
}

// run begins a new run of a monitor's container. Callers hold mu.
func (r *Runtime) run(m *monitor) {
	j := m.journal
	if len(j.Runs) > 0 {
		j.RestartCount++
	}
	j.Runs = append(j.Runs, protocol.Run{ContainerID: fmt.Sprintf("%s-%d", m.cfg.ID, len(j.Runs)),
		RestartCount: j.RestartCount, StartedAt: time.Now()})
	j.State = protocol.StateRunning
}

// exit ends a monitor's current run; the restart policy then applies unless stopped.
// Callers hold mu.
func (r *Runtime) exit(m *monitor, code int, reason string, stopped bool) {
	cur := m.journal.Current()
	if cur == nil || cur.Exit != nil {
		return
	}
	cur.Exit = &protocol.Exit{ExitCode: code, Reason: reason, FinishedAt: time.Now()}
	if !stopped && protocol.WantsRestart(m.cfg.Restart, cur.Exit) {
		r.run(m) // the fake restarts at once: no back-off
	} else {
		m.journal.State = protocol.StateExited
	}
}

// Exit makes a container's current run exit with code, as if its process ended;
// its monitor applies the restart policy.
func (r *Runtime) Exit(id string, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.monitors[id]
	if m == nil || m.dead {
		panic("runtimetest: Exit of a container without a live monitor: " + id)
	}
	reason := protocol.ReasonCompleted
	if code != 0 {
		reason = protocol.ReasonError
	}
	r.exit(m, code, reason, false)
	r.emit(runtime.Event{Type: runtime.JournalChanged, ID: id, Journal: m.journal})
}

// KillMonitor kills a container's monitor (kill -9): its container keeps
// running, unmanaged, and the next relist reports it dead.
func (r *Runtime) KillMonitor(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.monitors[id]
	if m == nil {
		panic("runtimetest: KillMonitor of an unknown monitor: " + id)
	}
	m.dead = true
}

// Relist reports every dead monitor whose exit is not recorded, as the real
// runtime's periodic relist does.
func (r *Runtime) Relist() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range r.idsLocked() {
		if m := r.monitors[id]; m.dead && m.journal.State != protocol.StateExited {
			r.emit(runtime.Event{Type: runtime.MonitorDied, ID: id, Journal: m.journal})
		}
	}
}

// Journal implements runtime.Interface.
func (r *Runtime) Journal(id string) (*protocol.Journal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.monitors[id]
	if m == nil {
		return nil, fmt.Errorf("container %s: %w", id, os.ErrNotExist)
	}
	return clone(m.journal), nil
}

// Stop implements runtime.Interface.
func (r *Runtime) Stop(_ context.Context, id string, grace time.Duration) (*protocol.Journal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("Stop %s", id)
	r.graces[id] = append(r.graces[id], grace)
	m := r.monitors[id]
	if m == nil {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	if m.dead {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrMonitorGone)
	}
	r.exit(m, 143, protocol.ReasonError, true)
	m.journal.State = protocol.StateExited
	r.emit(runtime.Event{Type: runtime.JournalChanged, ID: id, Journal: m.journal})
	return clone(m.journal), nil
}

// Kill implements runtime.Interface: the run ends, and the restart policy applies.
func (r *Runtime) Kill(_ context.Context, id string, grace time.Duration) (*protocol.Journal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("Kill %s", id)
	r.graces[id] = append(r.graces[id], grace)
	m := r.monitors[id]
	if m == nil || m.dead {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrMonitorGone)
	}
	r.exit(m, 137, protocol.ReasonError, false)
	r.emit(runtime.Event{Type: runtime.JournalChanged, ID: id, Journal: m.journal})
	return clone(m.journal), nil
}

// SetExecError makes Exec of a command whose first word is cmd fail with err,
// as a command that cannot be run does.
func (r *Runtime) SetExecError(cmd string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execErr[cmd] = err
}

// HoldExec makes Exec of a command whose first word is cmd wait, after it is
// recorded in Calls, until release is called (or its context is done); Calls
// then records "Exec <id> [<args>] done".
func (r *Runtime) HoldExec(cmd string) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execHold[cmd] = ch
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Exec implements runtime.Interface: a command prints nothing and exits with
// the code SetExecExit gave its first word, else 0.
func (r *Runtime) Exec(ctx context.Context, id string, req *protocol.ExecRequest, _ runtime.ExecIO) (int, error) {
	r.mu.Lock()
	r.record("Exec %s %v", id, req.Args)
	if m := r.monitors[id]; m == nil || m.dead {
		r.mu.Unlock()
		return -1, fmt.Errorf("container %s: %w", id, runtime.ErrMonitorGone)
	}
	if len(req.Args) == 0 {
		r.mu.Unlock()
		return 0, nil
	}
	code, hold, err := r.execExit[req.Args[0]], r.execHold[req.Args[0]], r.execErr[req.Args[0]]
	r.mu.Unlock()
	if err != nil {
		return -1, err
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return -1, ctx.Err()
		}
		r.mu.Lock()
		r.record("Exec %s %v done", id, req.Args)
		r.mu.Unlock()
	}
	return code, nil
}

// Attach implements runtime.Interface: it is recorded in Calls ("Attach <id>
// stdin=<bool>"), fails as the real one does (a monitor gone, a container not
// running, stdin asked of one without Process.Stdin) and otherwise behaves as a
// container running `cat`: what aio.Stdin holds goes to aio.Stdout, and it returns
// at its EOF (at once without stdin) or when ctx is done.
func (r *Runtime) Attach(ctx context.Context, id string, aio runtime.AttachIO) error {
	r.mu.Lock()
	r.record("Attach %s stdin=%v", id, aio.Stdin != nil)
	m := r.monitors[id]
	var err error
	switch {
	case m == nil || m.dead:
		err = fmt.Errorf("container %s: %w", id, runtime.ErrMonitorGone)
	case m.journal.State != protocol.StateRunning:
		err = fmt.Errorf("container %s: attach: %w", id, protocol.ErrNotRunning)
	case aio.Stdin != nil && !m.cfg.Process.Stdin:
		err = fmt.Errorf("container %s: attach: %w: no stdin", id, protocol.ErrInvalid)
	}
	r.mu.Unlock()
	if err != nil || aio.Stdin == nil {
		return err
	}
	out := aio.Stdout
	if out == nil {
		out = io.Discard
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(out, aio.Stdin)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// ReopenLog implements runtime.Interface: it is recorded in Calls ("ReopenLog
// <id>") and fails as the real one does when no monitor answers: it is unknown,
// dead, or ended with its container for good.
func (r *Runtime) ReopenLog(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("ReopenLog %s", id)
	if m := r.monitors[id]; m == nil || m.dead || m.journal.State == protocol.StateExited {
		return fmt.Errorf("container %s: %w", id, runtime.ErrMonitorGone)
	}
	return nil
}

// Update implements runtime.Interface: it is recorded in Calls ("Update
// <id>"), checks upd as the real one does, and applies it to the monitor's
// config (Config) while its container runs or waits to restart; a monitor
// that is gone or ended for good fails as the real one does. FailUpdate
// makes it fail instead.
func (r *Runtime) Update(_ context.Context, id string, upd *protocol.Resources) (*protocol.Cgroup, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("Update %s", id)
	if err := upd.Check(); err != nil {
		return nil, fmt.Errorf("container %s: %w: %w", id, protocol.ErrInvalid, err)
	}
	if err := r.updateErr[id]; err != nil {
		return nil, err
	}
	m := r.monitors[id]
	if m == nil || m.dead {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrMonitorGone)
	}
	if m.journal.State == protocol.StateExited {
		return nil, fmt.Errorf("container %s: update: %w", id, protocol.ErrNotRunning)
	}
	cfg := *m.cfg
	cfg.Cgroup = upd.Apply(m.cfg.Cgroup)
	m.cfg = &cfg
	c := cfg.Cgroup
	return &c, nil
}

// FailUpdate makes every Update of container id fail with err (nil: succeed again).
func (r *Runtime) FailUpdate(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updateErr[id] = err
}

// Config returns the config monitor id runs with now (after its updates), or nil.
func (r *Runtime) Config(id string) *protocol.ContainerConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.monitors[id]; m != nil {
		c := *m.cfg
		return &c
	}
	return nil
}

func (r *Runtime) idsLocked() []string {
	var ids []string
	for id := range r.monitors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (r *Runtime) inspectLocked(id string) *runtime.Monitor {
	m := r.monitors[id]
	if m == nil {
		return &runtime.Monitor{ID: id, State: runtime.MonitorBroken, Reason: "no such monitor"}
	}
	out := &runtime.Monitor{ID: id, Config: m.cfg, Journal: clone(m.journal), State: runtime.MonitorAlive}
	switch {
	case m.journal.State == protocol.StateExited:
		out.State = runtime.MonitorFinished
	case m.dead:
		out.State, out.Reason = runtime.MonitorDead, "killed"
	}
	return out
}

// List implements runtime.Interface.
func (r *Runtime) List(context.Context) ([]*runtime.Monitor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtime.Monitor
	for _, id := range r.idsLocked() {
		out = append(out, r.inspectLocked(id))
	}
	return out, nil
}

// Inspect implements runtime.Interface.
func (r *Runtime) Inspect(_ context.Context, id string) *runtime.Monitor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inspectLocked(id)
}

// IDs implements runtime.Interface.
func (r *Runtime) IDs() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.idsLocked(), nil
}

// ContainersWithState implements runtime.Interface: the fake keeps no runs
// apart from its monitors.
func (r *Runtime) ContainersWithState() []string {
	ids, _ := r.IDs()
	return ids
}

// Cleanup implements runtime.Interface: a dead monitor's run is recorded as lost.
func (r *Runtime) Cleanup(_ context.Context, id string) (*protocol.Journal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("Cleanup %s", id)
	m := r.monitors[id]
	if m == nil {
		return nil, nil
	}
	if !m.dead && m.journal.State != protocol.StateExited {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrMonitorAlive)
	}
	if cur := m.journal.Current(); cur != nil && cur.Exit == nil {
		cur.Exit = &protocol.Exit{ExitCode: 137, Reason: protocol.ReasonMonitorLost, FinishedAt: time.Now()}
	}
	m.journal.State = protocol.StateExited
	return clone(m.journal), nil
}

// Remove implements runtime.Interface.
func (r *Runtime) Remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.record("Remove %s", id)
	m := r.monitors[id]
	if m == nil {
		return nil
	}
	if !m.dead && m.journal.State != protocol.StateExited {
		return fmt.Errorf("container %s: %w", id, runtime.ErrMonitorAlive)
	}
	delete(r.monitors, id)
	return nil
}

// Watch implements runtime.Interface: every journal is reported once at once;
// then each change as it happens. One watcher at a time: a new Watch replaces
// the last.
func (r *Runtime) Watch(ctx context.Context) (<-chan runtime.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan runtime.Event, 4096)
	r.watch, r.watchCtx = ch, ctx
	for _, id := range r.idsLocked() {
		if m := r.monitors[id]; m.journal != nil {
			r.emit(runtime.Event{Type: runtime.JournalChanged, ID: id, Journal: m.journal})
		}
	}
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		if r.watch == ch {
			r.watch = nil
		}
		r.mu.Unlock()
	}()
	return ch, nil
}
