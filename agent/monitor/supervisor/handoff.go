package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// TakeHandoff reads and clears the handoff (protocol.HandoffEnv) from the
// environment, and marks the fds it names close-on-exec again (Exec cleared that
// flag): a child of this image — the container's init, an exec helper — must not
// inherit the control socket or the lock, or it would keep the monitor looking
// alive after it died.
func TakeHandoff() (*protocol.Handoff, error) {
	v, ok := os.LookupEnv(protocol.HandoffEnv)
	if !ok {
		return nil, fmt.Errorf("%s is not set: this program is started by agent-monitor, not by hand", protocol.HandoffEnv)
	}
	os.Unsetenv(protocol.HandoffEnv)
	var h protocol.Handoff
	if err := json.Unmarshal([]byte(v), &h); err != nil {
		return nil, fmt.Errorf("%s: %w", protocol.HandoffEnv, err)
	}
	for _, fd := range h.Fds() {
		if fd > 2 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
				return nil, fmt.Errorf("handed-over fd %d: %w", fd, err)
			}
		}
	}
	return &h, nil
}

// Exec replaces the process with path, handing h over. The fds in h are kept open
// across the exec; every other fd is closed by it (Go opens files close-on-exec).
func Exec(path string, args []string, h *protocol.Handoff) error {
	for _, fd := range h.Fds() {
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
	env := append(os.Environ(), protocol.HandoffEnv+"="+string(data))
	if filepath.Base(path) == protocol.LeanBinary {
		// One P is plenty for a process that mostly waits, and every P costs memory.
		env = append(env, "GOMAXPROCS=1")
	}
	return syscall.Exec(path, append([]string{path}, args...), env)
}
