package supervisor

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// PeerAllowed reports whether a client with effective uid uid may use a monitor's
// control socket (or the exec helper it hands a connection to): root only, as agentd
// is root and the socket can stop, signal and exec into the container.
func PeerAllowed(uid uint32) bool { return uid == 0 }

// PeerUID returns the effective uid the client of c had when it connected (SO_PEERCRED).
func PeerUID(c syscall.Conn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var uid uint32
	var cerr error
	if err := raw.Control(func(fd uintptr) { uid, cerr = PeerUIDFd(int(fd)) }); err != nil {
		return 0, err
	}
	return uid, cerr
}

// PeerUIDFd is PeerUID for a raw socket fd.
func PeerUIDFd(fd int) (uint32, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}
