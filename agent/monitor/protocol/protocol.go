package protocol

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The control socket speaks newline-delimited JSON. The client sends Hello; the
// monitor answers HelloReply. The meaning of these two messages never changes, so any
// agentd can tell any monitor's version. Then the client sends one Request, answered
// by one Response, and the connection ends — except that an "exec" request that
// succeeds turns the connection into a stream of Frames.

// Limits on one message line: a monitor reads at most MaxRequestLine bytes of its
// client's Hello or Request, agentd at most MaxResponseLine of a monitor's
// HelloReply or Response (a Journal of MaxJournalRuns runs, each with a
// termination message of up to MaxTerminationMessage bytes, fits many times).
const (
	MaxRequestLine  = 64 << 10
	MaxResponseLine = 4 << 20
)

// WriteMessage writes v as one line of JSON: every message on the control socket
// before an exec stream, and the SyncMessage on the sync pipe.
func WriteMessage(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// ReadMessage reads one line of JSON into v; a line longer than limit bytes is
// an error. What follows the line (an exec stream's frames) stays in r.
func ReadMessage(r *bufio.Reader, v any, limit int) error {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > limit {
			return fmt.Errorf("message longer than %d bytes", limit)
		}
		if err == nil && line == nil {
			line = frag // the common case: no copy
			break
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	return json.Unmarshal(line, v)
}

// Hello is the client's first message.
type Hello struct {
	Protocol string `json:"protocol"`
	Major    int    `json:"major"`
	Minor    int    `json:"minor"`
}

// NewHello is the Hello of this version.
func NewHello() *Hello { return &Hello{Protocol: Name, Major: Major, Minor: Minor} }

// HelloReply is the monitor's answer to Hello.
type HelloReply struct {
	Protocol       string   `json:"protocol"`
	Major          int      `json:"major"`
	Minor          int      `json:"minor"`
	Capabilities   []string `json:"capabilities"`
	MonitorVersion string   `json:"monitorVersion"`
	ID             string   `json:"id"`
	Pid            int      `json:"pid"`
	StartTime      uint64   `json:"startTime"`
}

// Operations of protocol 1.
const (
	OpStatus    = "status"     // → Response.Journal
	OpStop      = "stop"       // stop signal, then KILL of the cgroup after the grace period; no more restarts; answers when the container is gone
	OpSignal    = "signal"     // send Request.Signal to the container's init
	OpKill      = "kill"       // stop signal, KILL after the grace period; the restart policy then applies (liveness failures)
	OpReopenLog = "reopen-log" // reopen the log file (after an external rotation)
	OpExec      = "exec"       // run a process in the container; the connection becomes a Frame stream
	// OpAttach (1.1) attaches to the current run's stdio: the connection becomes a
	// Frame stream of its output from now on (a client that does not keep up loses
	// output, as the log never waits for it), of FrameStdin to its stdin
	// (Process.Stdin) and FrameResize to its terminal (Process.Tty), ending with
	// FrameExit when the run ends. A monitor without the capability answers
	// Unsupported.
	OpAttach = "attach"
	// OpUpdate (1.2) changes the container's cgroup limits (Request.Update):
	// those of the running container at once, and in the monitor's config, so
	// every later run (the restart policy's) and every later agentd see them. It
	// answers Response.Cgroup, the config's limits after the update. Between
	// runs (BackOff) only the config changes; once the container is Exited it
	// answers NotRunning. The kernel's refusal (a memory limit below what the
	// container uses, a CPU it does not have) is Invalid, with its message; the
	// container keeps its old limits then. A monitor without the capability
	// answers Unsupported.
	OpUpdate = "update"
)

// Capabilities of this version, sent in HelloReply.
var Capabilities = []string{OpStatus, OpStop, OpSignal, OpKill, OpReopenLog, OpExec, OpAttach, OpUpdate}

// HasCapability reports whether a monitor's handshake offers op.
func (h *HelloReply) HasCapability(op string) bool {
	for _, c := range h.Capabilities {
		if c == op {
			return true
		}
	}
	return false
}

// Request is one operation.
type Request struct {
	Op     string         `json:"op"`
	Grace  *Duration      `json:"grace,omitempty"`  // stop: overrides the configured grace period
	Signal int            `json:"signal,omitempty"` // signal
	Exec   *ExecRequest   `json:"exec,omitempty"`
	Attach *AttachRequest `json:"attach,omitempty"`
	Update *Resources     `json:"update,omitempty"` // update
}

// AttachRequest says which of the run's streams a client attaches to. Stdin
// needs a container configured with Process.Stdin (Invalid otherwise).
type AttachRequest struct {
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
}

// Duration is a time.Duration in nanoseconds on the wire.
type Duration int64

// ExecRequest runs a process in a running container.
type ExecRequest struct {
	Args   []string `json:"args"`
	Env    []string `json:"env,omitempty"`
	Cwd    string   `json:"cwd,omitempty"`
	Tty    bool     `json:"tty,omitempty"`
	Stdin  bool     `json:"stdin,omitempty"`
	Width  uint16   `json:"width,omitempty"`
	Height uint16   `json:"height,omitempty"`
}

// Response answers a Request: Error is set on failure.
type Response struct {
	Error   *Error   `json:"error,omitempty"`
	Journal *Journal `json:"journal,omitempty"`
	Cgroup  *Cgroup  `json:"cgroup,omitempty"` // update: the limits now in force
}

// Error classes on the wire.
const (
	ErrCodeNotRunning  = "NotRunning"
	ErrCodeInvalid     = "Invalid"
	ErrCodeUnsupported = "Unsupported"
	ErrCodeInternal    = "Internal"
	ErrCodeStartFailed = "StartFailed"
)

// Sentinels the Error codes map to (errors.Is).
var (
	ErrNotRunning  = errors.New("container is not running")
	ErrInvalid     = errors.New("invalid request")
	ErrUnsupported = errors.New("operation not supported by this monitor")
	ErrStartFailed = errors.New("container failed to start")
)

// Error is a classified error from a monitor.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is maps codes to sentinels.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case ErrCodeNotRunning:
		return target == ErrNotRunning
	case ErrCodeInvalid:
		return target == ErrInvalid
	case ErrCodeUnsupported:
		return target == ErrUnsupported
	case ErrCodeStartFailed:
		return target == ErrStartFailed
	}
	return false
}

// Frame types of an exec or attach stream. For an exec, a client that closes the connection, or only
// its writing side, before FrameExit has gone away: the monitor kills the
// process (and its process group), as an ExecSync timeout needs. A client that
// has no more stdin but still wants the output sends FrameCloseStdin instead. For
// an attach, a client going detaches it (and closes the container's stdin when
// Process.StdinOnce), as does FrameCloseStdin; the container keeps running.
const (
	FrameStdin      byte = 1 // client → monitor
	FrameStdout     byte = 2 // monitor → client (the pty's output when Tty)
	FrameStderr     byte = 3
	FrameCloseStdin byte = 4 // client → monitor: stdin reached EOF
	FrameResize     byte = 5 // client → monitor: width, height as two big-endian uint16
	FrameExit       byte = 6 // monitor → client: exit code as big-endian int32; the last frame
)

// MaxFrame bounds a frame's payload.
const MaxFrame = 1 << 20

// WriteFrame writes one frame: type, big-endian uint32 length, payload.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", len(payload), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// ReadFrame reads one frame into buf (grown as needed) and returns its type and payload.
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// ExitPayload encodes an exit code for FrameExit.
func ExitPayload(code int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	return b[:]
}

// ParseExitPayload decodes FrameExit's payload.
func ParseExitPayload(p []byte) int {
	if len(p) != 4 {
		return -1
	}
	return int(int32(binary.BigEndian.Uint32(p)))
}

// Compatible reports whether an agent speaking Major can manage a monitor
// speaking major: its own and the previous major version.
func Compatible(major int) bool {
	return major == Major || major == Major-1 && major > 0
}
