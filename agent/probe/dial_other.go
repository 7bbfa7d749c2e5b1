//go:build !unix

package probe

import "syscall"

// setLinger is a no-op where sockets are not Unix file descriptors.
func setLinger(_, _ string, _ syscall.RawConn) error { return nil }
