// Package supervisor is the long-lived, lean half of a container's monitor
// (agent-monitor-lean). It is the container's parent: it copies the container's
// output into CRI log files, reaps it and records its exit in the journal, applies
// the restart policy with kubelet's back-off, and serves the control socket (attached
// clients get the output the log gets, without ever holding it up: attach.go) — all
// whether or not agentd is running. Whenever libcontainer is needed (a new run, the
// clean-up of a finished one, an exec) it execs agent-monitor, which does that work
// and execs back; the pid and the container stay the same.
//
// It must stay small: no libcontainer, no goroutine that is not waiting on the
// container, its pipes or a client, and small fixed buffers.
package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

// Version is the monitor's build version, reported in the handshake.
var Version = "dev"

// supervisor is the state of the lean monitor.
type supervisor struct {
	h        *protocol.Handoff
	cfg      *protocol.ContainerConfig
	listener *net.UnixListener
	// listenerFile holds the inherited fd h.Listener open: a collected *os.File
	// closes its fd, and the next image needs it.
	listenerFile *os.File

	// updateMu serialises updates (OpUpdate): each reads the config, changes it
	// and writes it back. Taken before mu.
	updateMu sync.Mutex

	mu      sync.Mutex // guards journal, stopped, waiters
	journal *protocol.Journal
	log     *crilog.Writer  // the current run's log; nil when not running
	waiters []chan struct{} // closed when the current run's exit is recorded

	// discarded counts the output of a run whose log could not be opened.
	discarded atomic.Int64

	exited chan unix.WaitStatus // the container init's exit status
	wg     sync.WaitGroup       // connections being served; they answer before an exec

	// The current run's output (read ends, or the terminal's master), set before
	// the socket is served and handed to the log's copy.
	stdout, stderr *os.File
	// io is the current run's stdin and terminal (nil when not running); set
	// before the socket is served, never replaced in this image.
	io  *runIO
	hub attachHub // the clients attached to the current run
}

// Main runs the lean monitor. It returns only on failure or when the container is
// finished for good; otherwise it ends by exec'ing agent-monitor.
func Main() int {
	signalsIgnored()
	h, err := TakeHandoff()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-monitor-lean:", err)
		return 2
	}
	s, err := load(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-monitor-lean:", err)
		return 1
	}
	if s.journal.State == protocol.StateRunning {
		s.takeRunFds()
	}
	go s.serve()
	switch s.journal.State {
	case protocol.StateRunning:
		return s.supervise()
	case protocol.StateBackOff:
		return s.backoff()
	}
	return s.finish()
}

func load(h *protocol.Handoff) (*supervisor, error) {
	cfg, err := protocol.ReadConfig(h.StateDir)
	if err != nil {
		return nil, err
	}
	j, err := protocol.ReadJournal(h.StateDir)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(h.Listener), protocol.SocketFile)
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("control socket fd %d: %w", h.Listener, err)
	}
	return &supervisor{h: h, cfg: cfg, listener: l.(*net.UnixListener), listenerFile: f, journal: j, exited: make(chan unix.WaitStatus, 1)}, nil
}

// signalsIgnored keeps the monitor alive through the agent's unit being stopped or a
// terminal hanging up: only SIGKILL ends it, and then whoever finds it dead cleans up.
func signalsIgnored() {
	signal.Ignore(unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGPIPE)
}

// takeRunFds takes the current run's descriptors from the handoff: they are this
// image's to close, and not to be handed on once the run ended.
func (s *supervisor) takeRunFds() {
	h := s.h
	if h.Console > 0 {
		con := newFile(h.Console, "console")
		s.stdout = con
		s.io = &runIO{console: con, once: s.cfg.Process.StdinOnce}
		if s.cfg.Process.Stdin {
			s.io.stdin = con
		}
	} else {
		if h.Stdout > 0 {
			s.stdout = newFile(h.Stdout, "stdout")
		}
		if h.Stderr > 0 {
			s.stderr = newFile(h.Stderr, "stderr")
		}
		s.io = &runIO{once: s.cfg.Process.StdinOnce}
		if h.Stdin > 0 {
			s.io.stdin = newFile(h.Stdin, "stdin")
		}
	}
	h.Stdout, h.Stderr, h.Stdin, h.Console = 0, 0, 0, 0
}

// supervise copies the running container's output into its log, waits for it to
// exit, records the exit and hands over to agent-monitor for what comes next.
func (s *supervisor) supervise() int {
	run := s.journal.Current()
	w, err := s.openLog(run.LogPath)
	if err != nil {
		// Without a log (a pod may have planted a symlink in its place) the
		// container still must not block: drain into nothing, and count it.
		fmt.Fprintln(os.Stderr, "agent-monitor-lean: open log:", err)
	}
	s.mu.Lock()
	s.log = w
	s.mu.Unlock()

	var copies sync.WaitGroup
	for _, p := range []struct {
		f      *os.File
		stream string
		frame  byte
	}{{s.stdout, "stdout", protocol.FrameStdout}, {s.stderr, "stderr", protocol.FrameStderr}} {
		if p.f == nil {
			continue
		}
		r := teeReader{r: p.f, hub: &s.hub, typ: p.frame}
		terminal := p.f == s.io.console // closed with stdin, by s.io.close
		copies.Add(1)
		go func() {
			defer copies.Done()
			if !terminal {
				defer p.f.Close()
			}
			if w == nil {
				_, _ = io.Copy(countingDiscard{&s.discarded}, r)
				return
			}
			_ = w.Copy(p.stream, r)
		}()
	}

	go s.reap(run.Pid)
	status := <-s.exited

	// The pipes close when the last process holding them exits; with a private pid
	// namespace that is the init. Do not wait forever for a daemon that kept them.
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	code := s.recordExit(status)
	s.io.close()
	s.hub.end(code)
	return s.next()
}

// openLog opens a run's log file beneath the log root (crilog refuses whatever a pod
// planted on the way).
func (s *supervisor) openLog(logPath string) (*crilog.Writer, error) {
	root, name, err := LogFile(s.cfg, logPath)
	if err != nil {
		return nil, err
	}
	return crilog.Open(root, name, crilog.Options{MaxSize: s.cfg.Log.MaxSize, MaxFiles: s.cfg.Log.MaxFiles})
}

// countingDiscard drops what is written to it and counts the bytes.
type countingDiscard struct{ n *atomic.Int64 }

func (d countingDiscard) Write(p []byte) (int, error) {
	d.n.Add(int64(len(p)))
	return len(p), nil
}

// reap waits for the container's init. It also reaps exec helpers, which are our
// children too.
func (s *supervisor) reap(pid int) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// No children: the init is gone and was reaped elsewhere (cannot happen,
			// but never hang): report it as killed.
			s.exited <- unix.WaitStatus(unix.SIGKILL)
			return
		}
		if got == pid {
			s.exited <- ws
			return
		}
	}
}

// recordExit writes how the run ended and what happens next into the journal, and
// returns the exit code.
func (s *supervisor) recordExit(ws unix.WaitStatus) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	run := s.journal.Current()
	exit := &protocol.Exit{FinishedAt: now}
	switch {
	case ws.Signaled():
		exit.Signal = int(ws.Signal())
		exit.ExitCode = 128 + exit.Signal
	default:
		exit.ExitCode = ws.ExitStatus()
	}
	exit.Reason = protocol.ExitReason(exit.ExitCode, oomKilled(s.cfg.Cgroup.Path))
	exit.Message = s.terminationMessage(run, exit)
	run.Exit = exit
	if s.log != nil {
		s.journal.DroppedLog += s.log.Dropped()
		_ = s.log.Close()
		s.log = nil
	}
	s.journal.DroppedLog += s.discarded.Swap(0)
	s.journal.Ended(s.cfg.Restart)
	if err := protocol.WriteJournal(s.h.StateDir, s.journal); err != nil {
		fmt.Fprintln(os.Stderr, "agent-monitor-lean: write journal:", err)
	}
	for _, w := range s.waiters {
		close(w)
	}
	s.waiters = nil
	return exit.ExitCode
}

// quiesce stops accepting connections and lets those being served answer: an exec
// would close them. New clients wait in the socket's backlog for the next image.
func (s *supervisor) quiesce() {
	_ = s.listener.Close() // a dup: the inherited fd, and the backlog, stay
	s.wg.Wait()
}

// next hands over to agent-monitor, which removes the finished run and starts the
// next one when it is due.
func (s *supervisor) next() int {
	s.quiesce()
	s.mu.Lock()
	err := Exec(s.h.Fat, protocol.NextArgs(s.h.StateDir), s.h)
	s.mu.Unlock()
	fmt.Fprintln(os.Stderr, "agent-monitor-lean: exec agent-monitor:", err)
	return 1
}

// backoff waits until the next run is due (or a stop request), serving the socket.
func (s *supervisor) backoff() int {
	s.mu.Lock()
	wait := time.Until(s.journal.NextStart)
	stopped := make(chan struct{})
	s.waiters = append(s.waiters, stopped)
	s.mu.Unlock()
	select {
	case <-time.After(wait):
		return s.next()
	case <-stopped:
		return s.finish()
	}
}

// finish ends a monitor whose container will not run again.
func (s *supervisor) finish() int {
	s.quiesce()
	_ = os.Remove(filepath.Join(s.h.StateDir, protocol.SocketFile))
	return 0
}

// oomKilled reports whether the kernel's OOM killer killed a process of the cgroup.
func oomKilled(path string) bool {
	for _, f := range []string{
		"/sys/fs/cgroup/memory" + path + "/memory.oom_control", // v1: oom_kill N
		"/sys/fs/cgroup" + path + "/memory.events",             // v2: oom_kill N
		"/sys/fs/cgroup/unified" + path + "/memory.events",
	} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok && v != "0" {
				return true
			}
		}
	}
	return false
}

// terminationMessage reads the host file bind-mounted at the container's
// termination message path, falling back to the end of its log when asked and the
// container failed. Nothing is read from the container's rootfs: a device node or
// FIFO there would leak host data or block the monitor. Callers hold mu.
func (s *supervisor) terminationMessage(run *protocol.Run, exit *protocol.Exit) string {
	t := s.cfg.Termination
	if msg := protocol.ReadTerminationLog(t.HostPath); msg != "" {
		return msg
	}
	if t.FallbackToLog && exit.ExitCode != 0 {
		var b strings.Builder
		if root, name, err := LogFile(s.cfg, run.LogPath); err == nil && crilog.ReadAll(root, name, crilog.ReadOptions{Tail: 80}, &b) == nil {
			msg := b.String()
			if len(msg) > 2048 {
				msg = msg[len(msg)-2048:]
			}
			return msg
		}
	}
	return ""
}

// serve accepts control connections for the life of this image.
func (s *supervisor) serve() {
	for {
		c, err := s.listener.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		// The socket's directory is root's, but modes are not the only guard: only
		// root may speak to the monitor. SO_PEERCRED answers at once; a refused
		// client gets its connection closed without a word.
		if uid, err := PeerUID(c); err != nil || !PeerAllowed(uid) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// requestTimeout bounds how long a client may take to send its handshake and request.
const requestTimeout = 5 * time.Second

// handle speaks the protocol on one connection: the handshake, then one request.
func (s *supervisor) handle(c *net.UnixConn) {
	handedOff := false
	defer func() {
		if !handedOff {
			c.Close()
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReaderSize(c, 1024)
	var hello protocol.Hello
	if err := protocol.ReadMessage(r, &hello, protocol.MaxRequestLine); err != nil {
		return
	}
	st, _ := protocol.ProcessStartTime(os.Getpid())
	reply := protocol.HelloReply{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor,
		Capabilities: protocol.Capabilities, MonitorVersion: Version, ID: s.cfg.ID, Pid: os.Getpid(), StartTime: st}
	if err := protocol.WriteMessage(c, &reply); err != nil {
		return
	}
	var req protocol.Request
	if err := protocol.ReadMessage(r, &req, protocol.MaxRequestLine); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.Op == protocol.OpAttach {
		s.attach(c, r, &req)
		return
	}
	if req.Op == protocol.OpExec {
		// The connection now belongs to the exec helper.
		resp := s.exec(c, &req)
		if resp == nil {
			handedOff = true
			return
		}
		_ = protocol.WriteMessage(c, resp)
		return
	}
	_ = protocol.WriteMessage(c, s.do(&req))
}

func (s *supervisor) do(req *protocol.Request) *protocol.Response {
	switch req.Op {
	case protocol.OpStatus:
		return s.status()
	case protocol.OpStop, protocol.OpKill:
		grace := s.cfg.Stop.GracePeriod
		if req.Grace != nil {
			grace = time.Duration(*req.Grace)
		}
		return s.stop(grace, req.Op == protocol.OpStop)
	case protocol.OpSignal:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.journal.State != protocol.StateRunning {
			return errResponse(protocol.ErrCodeNotRunning, "container is not running")
		}
		if req.Signal <= 0 || req.Signal > 64 {
			return errResponse(protocol.ErrCodeInvalid, "invalid signal "+strconv.Itoa(req.Signal))
		}
		if err := unix.Kill(s.journal.Current().Pid, unix.Signal(req.Signal)); err != nil {
			return errResponse(protocol.ErrCodeInternal, "signal: "+err.Error())
		}
		return s.statusLocked()
	case protocol.OpUpdate:
		return s.update(req.Update)
	case protocol.OpReopenLog:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.log != nil {
			if err := s.log.Reopen(); err != nil {
				return errResponse(protocol.ErrCodeInternal, "reopen log: "+err.Error())
			}
		}
		return s.statusLocked()
	}
	return errResponse(protocol.ErrCodeUnsupported, "unknown operation "+strconv.Quote(req.Op))
}

func (s *supervisor) status() *protocol.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *supervisor) statusLocked() *protocol.Response {
	j := *s.journal
	j.Runs = append([]protocol.Run(nil), s.journal.Runs...)
	if s.log != nil {
		j.DroppedLog += s.log.Dropped()
	}
	j.DroppedLog += s.discarded.Load()
	return &protocol.Response{Journal: &j}
}

// stop ends the current run: the stop signal, then after the grace period SIGKILL
// to everything in its cgroup. With forGood the container is not restarted (a stop);
// otherwise the restart policy applies to the exit (a kill after a failed liveness
// probe). It answers once the exit is recorded.
func (s *supervisor) stop(grace time.Duration, forGood bool) *protocol.Response {
	s.mu.Lock()
	if !forGood && s.journal.State != protocol.StateRunning {
		s.mu.Unlock()
		return errResponse(protocol.ErrCodeNotRunning, "container is not running")
	}
	if forGood && s.journal.Stop() { // between runs: nothing to stop
		err := protocol.WriteJournal(s.h.StateDir, s.journal)
		for _, w := range s.waiters {
			close(w)
		}
		s.waiters = nil
		s.mu.Unlock()
		if err != nil {
			return errResponse(protocol.ErrCodeInternal, "write journal: "+err.Error())
		}
		return s.status()
	}
	_ = protocol.WriteJournal(s.h.StateDir, s.journal)
	done := make(chan struct{})
	s.waiters = append(s.waiters, done)
	pid := s.journal.Current().Pid
	s.mu.Unlock()

	sig := unix.SIGTERM
	if s.cfg.Stop.Signal > 0 {
		sig = unix.Signal(s.cfg.Stop.Signal)
	}
	_ = unix.Kill(pid, sig)
	select {
	case <-done:
	case <-time.After(grace):
		killCgroup(s.cfg.Cgroup.Path, pid)
		<-done
	}
	return s.status()
}

// killCgroup sends SIGKILL to the init and every process of the container's cgroup
// (with a shared pid namespace the init's death does not take the others along).
// Each is signalled through a pidfd and only while it is still in the cgroup
// (cgroupkill.Cgroup): the init may have been reaped, and its pid reused, since the grace
// period began.
func killCgroup(path string, pid int) {
	if cgroupkill.CheckPath(path) != nil {
		// No cgroup to check against (a config without one): the init is our
		// child, not reaped while done is open.
		_ = unix.Kill(pid, unix.SIGKILL)
		return
	}
	_ = cgroupkill.Pid(pid, path, unix.SIGKILL)
	_, _ = cgroupkill.Cgroup(path)
}

// exec hands the connection to an `agent-monitor exec` helper, which runs the
// process in the container and streams its I/O. It returns nil when handed off.
func (s *supervisor) exec(c *net.UnixConn, req *protocol.Request) *protocol.Response {
	s.mu.Lock()
	running := s.journal.State == protocol.StateRunning
	var id string
	if running {
		id = s.journal.Current().ContainerID
	}
	s.mu.Unlock()
	if !running {
		return errResponse(protocol.ErrCodeNotRunning, "container is not running")
	}
	if req.Exec == nil || len(req.Exec.Args) == 0 {
		return errResponse(protocol.ErrCodeInvalid, "exec needs a command")
	}
	f, err := c.File()
	if err != nil {
		return errResponse(protocol.ErrCodeInternal, err.Error())
	}
	defer f.Close()
	args, err := protocol.ExecArgs(s.h.StateDir, id, req.Exec)
	if err != nil {
		return errResponse(protocol.ErrCodeInvalid, err.Error())
	}
	cmd := exec.Command(s.h.Fat, args...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return errResponse(protocol.ErrCodeInternal, "start exec helper: "+err.Error())
	}
	// The helper is reaped by reap's Wait4(-1); do not Wait here.
	c.Close()
	return nil
}

func errResponse(code, msg string) *protocol.Response {
	return &protocol.Response{Error: &protocol.Error{Code: code, Message: msg}}
}
