package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// What Inspect does for every monitor a restore finds — read its config and
// journal, look at its lock, say Hello — is done here with plain system calls:
// os.Open of a regular file costs six (it puts the descriptor in non-blocking
// mode, fails to add it to the poller and puts it back), and a net.Conn parks
// and wakes its goroutine around every read. On 2 CPUs, agentd's own CPU is
// what a restore of 100 monitors waits for. The results, and the errors'
// meaning, are those of protocol.ReadConfig, ReadJournal, Locked and dial.
// Watch reads journals and looks at locks the same way.

// maxStateFile bounds what readStateFile reads: configs and journals are a few
// KiB; a file planted in their place must not fill agentd's memory.
const maxStateFile = 4 << 20

// readStateFile reads a file of a monitor's state directory. O_NONBLOCK makes a
// FIFO planted there read as empty instead of blocking the open, and O_NOFOLLOW
// refuses a symlink (the monitor writes its files by rename, never as links).
func readStateFile(path string) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 8<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN: // a FIFO with a writer: not a state file
			return buf, nil
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > maxStateFile {
			return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes: not a state file", maxStateFile)}
		}
	}
}

// readStateJSON is protocol's readJSON by readStateFile.
func readStateJSON(path string, v any) error {
	data, err := readStateFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// readConfig is protocol.ReadConfig.
func readConfig(stateDir string) (*protocol.ContainerConfig, error) {
	var cfg protocol.ContainerConfig
	if err := readStateJSON(filepath.Join(stateDir, protocol.ConfigFile), &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// readJournal is protocol.ReadJournal.
func readJournal(stateDir string) (*protocol.Journal, error) {
	var j protocol.Journal
	if err := readStateJSON(filepath.Join(stateDir, protocol.JournalFile), &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// locked is protocol.Locked: whether a process holds the state dir's lock (an
// OFD write lock on LockFile, tested without taking it).
func locked(stateDir string) bool {
	fd, err := unix.Open(filepath.Join(stateDir, protocol.LockFile), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

// hello connects to monitor id's control socket, says Hello and returns the
// HelloReply, as dial does, and closes the connection. It waits for the
// monitor until ctx's deadline, at most 10 s, as dial does (a cancelled ctx,
// as in dial once connected, does not cut it short).
func (r *Runtime) hello(ctx context.Context, id string) (*protocol.HelloReply, error) {
	path, done, err := protocol.SocketAddr(r.stateDir(id))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMonitorGone, id, err)
	}
	defer done()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if wait <= 0 {
		return nil, fmt.Errorf("%w: %s: %v", ErrMonitorGone, id, context.DeadlineExceeded)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: socket: %v", ErrMonitorGone, id, err)
	}
	defer unix.Close(fd)
	// Blocking calls, each bounded by the time left: connect (a full backlog) by
	// the send timeout, the reply by the receive timeout.
	tv := unix.NsecToTimeval(max(wait.Nanoseconds(), int64(time.Microsecond)))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMonitorGone, id, err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMonitorGone, id, err)
	}
	if err := retryEINTR(func() error { return unix.Connect(fd, &unix.SockaddrUnix{Name: path}) }); err != nil {
		return nil, fmt.Errorf("%w: %s: connect %s: %v", ErrMonitorGone, id, path, err)
	}
	msg, err := json.Marshal(protocol.NewHello())
	if err != nil {
		return nil, err
	}
	msg = append(msg, '\n')
	for len(msg) > 0 {
		n, err := unix.Write(fd, msg)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: handshake: %v", ErrMonitorGone, id, err)
		}
		msg = msg[n:]
	}
	line, err := readLine(fd, protocol.MaxResponseLine)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: handshake: %v", ErrMonitorGone, id, err)
	}
	var hello protocol.HelloReply
	if err := json.Unmarshal(line, &hello); err != nil {
		return nil, fmt.Errorf("%w: %s: handshake: %v", ErrMonitorGone, id, err)
	}
	if hello.Protocol != protocol.Name || !protocol.Compatible(hello.Major) {
		return &hello, fmt.Errorf("%w: %s speaks %s %d.%d, this agentd %d.%d", ErrIncompatible, id, hello.Protocol, hello.Major, hello.Minor, protocol.Major, protocol.Minor)
	}
	return &hello, nil
}

// errLineTimeout: no whole line within the receive timeout.
var errLineTimeout = errors.New("no answer in time")

// readLine reads from fd up to the first newline (which the monitor's reply
// ends with), at most limit bytes.
func readLine(fd, limit int) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) >= limit {
			return nil, fmt.Errorf("message longer than %d bytes", limit)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):min(cap(buf), limit)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil, errLineTimeout
		case err != nil:
			return nil, err
		case n == 0:
			return nil, fmt.Errorf("connection closed after %d bytes without a whole message", len(buf))
		}
		start := len(buf)
		buf = buf[:len(buf)+n]
		if i := bytes.IndexByte(buf[start:], '\n'); i >= 0 {
			return buf[:start+i], nil
		}
	}
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
