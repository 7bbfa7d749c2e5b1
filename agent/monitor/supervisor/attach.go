package supervisor

import (
	"bufio"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Attach (protocol.OpAttach): clients see the run's output from the moment they
// attach, write to its stdin and resize its terminal. The output reaches them from
// the copy into the log (teeReader), never the other way round: a client that does
// not read loses output (counted per client), and neither the container nor its log
// ever waits for one.

// attachQueue is how many reads of output a client may lag behind before it loses
// some: with the log's 64 KiB reads, up to 4 MiB.
const attachQueue = 64

// closeGrace is how long an attached client has, once its run ended, to take the
// rest of its output and the exit frame: the next run (or the monitor's end) waits
// for it.
const closeGrace = 2 * time.Second

// outFrame is one read of output, shared by every client that gets it.
type outFrame struct {
	typ  byte
	data []byte
}

// attachClient is one attached connection.
type attachClient struct {
	conn    *net.UnixConn
	req     protocol.AttachRequest
	out     chan outFrame // closed by the hub when the client goes or the run ends
	dropped atomic.Int64  // output bytes this client did not keep up with
}

func (c *attachClient) wants(typ byte) bool {
	return typ == protocol.FrameStdout && c.req.Stdout || typ == protocol.FrameStderr && c.req.Stderr
}

// attachHub fans out a run's output to the clients attached to it.
type attachHub struct {
	n       atomic.Int32 // len(clients): the copy loops skip the lock when it is 0
	mu      sync.Mutex
	clients map[*attachClient]struct{} // guarded by mu
	ended   bool                       // guarded by mu; the run ended: no more clients
	code    int                        // guarded by mu; the run's exit code, once ended
}

// add registers c; false when the run has ended.
func (h *attachHub) add(c *attachClient) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return false
	}
	if h.clients == nil {
		h.clients = map[*attachClient]struct{}{}
	}
	h.clients[c] = struct{}{}
	h.n.Store(int32(len(h.clients)))
	return true
}

// remove unregisters c (a client that went) and ends its output.
func (h *attachHub) remove(c *attachClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.out)
		h.n.Store(int32(len(h.clients)))
	}
}

// broadcast hands one read of output to every client that wants it, without
// waiting for any: a client whose queue is full loses it.
func (h *attachHub) broadcast(typ byte, p []byte) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var data []byte
	for c := range h.clients {
		if !c.wants(typ) {
			continue
		}
		if data == nil {
			data = append([]byte(nil), p...) // the reader reuses p
		}
		select {
		case c.out <- outFrame{typ, data}:
		default:
			c.dropped.Add(int64(len(p)))
		}
	}
}

// end detaches every client once the run has ended with code: each gets the rest
// of its queue and FrameExit, within closeGrace.
func (h *attachHub) end(code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended, h.code = true, code
	deadline := time.Now().Add(closeGrace)
	for c := range h.clients {
		_ = c.conn.SetWriteDeadline(deadline)
		close(c.out)
	}
	clear(h.clients)
	h.n.Store(0)
}

func (h *attachHub) exitCode() (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.code, h.ended
}

// teeReader hands what the log's copy reads to the attached clients.
type teeReader struct {
	r   io.Reader
	hub *attachHub
	typ byte
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.hub.broadcast(t.typ, p[:n])
	}
	return n, err
}

// runIO is the current run's stdin (a pipe's write end, or the terminal's master)
// and terminal, kept for the run's life for attached clients.
type runIO struct {
	mu      sync.Mutex // guards the fields; never held across I/O
	stdin   *os.File   // nil: no stdin, or closed (StdinOnce)
	console *os.File   // the terminal's master (Process.Tty), else nil
	once    bool       // Process.StdinOnce
	writeMu sync.Mutex // one client's write to stdin at a time; Close does not wait for it
}

// newFile makes an *os.File of a handed-over fd that reads and writes through the
// runtime's poller: no thread is parked on it, and closing it ends a write blocked
// on a container that does not read its stdin.
func newFile(fd int, name string) *os.File {
	_ = unix.SetNonblock(fd, true)
	return os.NewFile(uintptr(fd), name)
}

// writeStdin writes p to the run's stdin, waiting as long as the container does not
// read it (that client's stream waits with it; the output goes on).
func (r *runIO) writeStdin(p []byte) {
	r.mu.Lock()
	f := r.stdin
	r.mu.Unlock()
	if f == nil {
		return
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	_, _ = f.Write(p)
}

// stdinDone is called when a client that attached stdin detaches (or sent
// FrameCloseStdin): with StdinOnce the container's stdin ends — its pipe is
// closed; a terminal gets ^D, as an exec's does.
func (r *runIO) stdinDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.once || r.stdin == nil {
		return
	}
	if r.console != nil {
		_, _ = r.console.Write([]byte{4})
	} else {
		_ = r.stdin.Close()
	}
	r.stdin = nil
}

// resize sets the terminal's size.
func (r *runIO) resize(width, height uint16) {
	r.mu.Lock()
	f := r.console
	r.mu.Unlock()
	if f == nil {
		return
	}
	// Not f.Fd(): that would take the fd off the poller.
	if sc, err := f.SyscallConn(); err == nil {
		_ = sc.Control(func(fd uintptr) {
			_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
		})
	}
}

// close closes stdin and the terminal when the run has ended.
func (r *runIO) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stdin != nil && r.stdin != r.console {
		_ = r.stdin.Close()
	}
	if r.console != nil {
		_ = r.console.Close()
	}
	r.stdin, r.console = nil, nil
}

// attach serves an OpAttach request on c until the client goes or the run ends.
func (s *supervisor) attach(c *net.UnixConn, r *bufio.Reader, req *protocol.Request) {
	ar := protocol.AttachRequest{Stdout: true, Stderr: true}
	if req.Attach != nil {
		ar = *req.Attach
	}
	s.mu.Lock()
	running := s.journal.State == protocol.StateRunning && s.io != nil
	s.mu.Unlock()
	if !running {
		_ = protocol.WriteMessage(c, errResponse(protocol.ErrCodeNotRunning, "container is not running"))
		return
	}
	if ar.Stdin && !s.cfg.Process.Stdin {
		_ = protocol.WriteMessage(c, errResponse(protocol.ErrCodeInvalid,
			"container "+s.cfg.Name+" does not keep its stdin open (stdin: true): nothing to attach stdin to"))
		return
	}
	cl := &attachClient{conn: c, req: ar, out: make(chan outFrame, attachQueue)}
	// The answer goes before the client is added: no output frame may precede it.
	if err := protocol.WriteMessage(c, &protocol.Response{}); err != nil {
		return
	}
	if !s.hub.add(cl) {
		code, _ := s.hub.exitCode()
		_ = protocol.WriteFrame(c, protocol.FrameExit, protocol.ExitPayload(code))
		return
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		failed := false
		for f := range cl.out {
			if !failed && protocol.WriteFrame(c, f.typ, f.data) != nil {
				failed = true // keep draining: the hub never waits
			}
		}
		if code, ended := s.hub.exitCode(); ended && !failed {
			_ = protocol.WriteFrame(c, protocol.FrameExit, protocol.ExitPayload(code))
		}
		// Ends the read loop below when the run ended while the client stays.
		_ = c.CloseRead()
	}()
	buf := make([]byte, 32<<10)
	for {
		typ, payload, err := protocol.ReadFrame(r, buf)
		if err != nil {
			break
		}
		switch typ {
		case protocol.FrameStdin:
			if ar.Stdin {
				s.io.writeStdin(payload)
			}
		case protocol.FrameCloseStdin:
			if ar.Stdin {
				s.io.stdinDone()
				ar.Stdin = false
			}
		case protocol.FrameResize:
			if w, h, ok := protocol.ParseResizePayload(payload); ok {
				s.io.resize(w, h)
			}
		}
	}
	if ar.Stdin {
		s.io.stdinDone()
	}
	s.hub.remove(cl)
	<-written
}
