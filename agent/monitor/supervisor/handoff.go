package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// HandoffEnv carries a Handoff across execve between the two images of a monitor
// process: agent-monitor (setup, with libcontainer) and agent-monitor-lean (the
// long-lived supervisor). The pid, the container (our child) and the listed fds
// survive the exec.
const HandoffEnv = "AGENT_MONITOR_HANDOFF"

// leanBinary is the lean image's file name.
const leanBinary = "agent-monitor-lean"

// Handoff is what one image of the monitor tells the next.
type Handoff struct {
	StateDir string `json:"stateDir"`
	Listener int    `json:"listener"`         // control socket, listening
	Stdout   int    `json:"stdout,omitempty"` // the current run's output pipes (read ends), 0 if none
	Stderr   int    `json:"stderr,omitempty"`
	Lock     int    `json:"lock,omitempty"` // the state dir's LockFile, locked for the monitor's life; 0 if none
	Fat      string `json:"fat"`            // agent-monitor
	Lean     string `json:"lean"`           // agent-monitor-lean
}

// TakeHandoff reads and clears the handoff from the environment, and marks the
// fds it names close-on-exec again (Exec cleared that flag): a child of this
// image — the container's init, an exec helper — must not inherit the control
// socket or the lock, or it would keep the monitor looking alive after it died.
func TakeHandoff() (*Handoff, error) {
	v, ok := os.LookupEnv(HandoffEnv)
	if !ok {
		return nil, fmt.Errorf("%s is not set: this program is started by agent-monitor, not by hand", HandoffEnv)
	}
	os.Unsetenv(HandoffEnv)
	var h Handoff
	if err := json.Unmarshal([]byte(v), &h); err != nil {
		return nil, fmt.Errorf("%s: %w", HandoffEnv, err)
	}
	for _, fd := range h.fds() {
		if fd > 2 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
				return nil, fmt.Errorf("handed-over fd %d: %w", fd, err)
			}
		}
	}
	return &h, nil
}

// fds lists the descriptors a handoff carries.
func (h *Handoff) fds() []int { return []int{h.Listener, h.Stdout, h.Stderr, h.Lock} }

// Exec replaces the process with path, handing h over. The fds in h are kept open
// across the exec; every other fd is closed by it (Go opens files close-on-exec).
func Exec(path string, args []string, h *Handoff) error {
	for _, fd := range h.fds() {
		if fd > 2 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
				return fmt.Errorf("keep fd %d open across exec: %w", fd, err)
			}
		}
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	env := append(os.Environ(), HandoffEnv+"="+string(data))
	if filepath.Base(path) == leanBinary {
		// One P is plenty for a process that mostly waits, and every P costs memory.
		env = append(env, "GOMAXPROCS=1")
	}
	return syscall.Exec(path, append([]string{path}, args...), env)
}
