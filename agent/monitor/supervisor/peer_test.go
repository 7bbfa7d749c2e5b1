package supervisor

import (
	"net"
	"os"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	for uid, want := range map[uint32]bool{0: true, 1: false, 65534: false, 1000: false} {
		if got := PeerAllowed(uid); got != want {
			t.Errorf("PeerAllowed(%d) = %v, want %v", uid, got, want)
		}
	}
}

// TestPeerUID: SO_PEERCRED reports the connecting process's uid (ours here); the
// root tests in agent/e2e connect as another user.
func TestPeerUID(t *testing.T) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: t.TempDir() + "/s.sock", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	uid, err := PeerUID(s)
	if err != nil || uid != uint32(os.Geteuid()) {
		t.Errorf("PeerUID = %d, %v; want %d", uid, err, os.Geteuid())
	}
}
