package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// What Inspect does for every monitor a restore finds — read its config and
// journal (protocol.ReadConfig, ReadJournal), look at its lock (protocol.Locked),
// say Hello — is done with plain system calls: a net.Conn parks and wakes its
// goroutine around every read. On 2 CPUs, agentd's own CPU is what a restore of
// 100 monitors waits for. The results, and the errors' meaning, are those of dial.

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
