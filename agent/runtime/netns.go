package runtime

import (
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// DialInNetns dials addr from inside the network namespace pinned at nsPath (a
// pod's): the socket is created on a thread switched into the namespace and stays
// there, while the connection is used from anywhere. Probes use it to reach a
// pod's own loopback and ports, as kubelet reaches them through the pod's IP.
func DialInNetns(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		// The thread is switched back before it is unlocked; if that fails it stays
		// locked and dies with this goroutine, so no other goroutine runs in the pod's namespace.
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer host.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("enter network namespace %s: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			if c != nil {
				c.Close()
			}
			done <- result{nil, fmt.Errorf("leave network namespace: %w", err)}
			return
		}
		goruntime.UnlockOSThread()
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
