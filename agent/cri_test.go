package agent

import (
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/network"
	"github.com/agentd-project/agentd/agent/runtime/runtimetest"
	criserver "github.com/agentd-project/agentd/cri/server"
)

func TestFsUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   unix.Statfs_t
		want criserver.FsUsage
	}{
		{"used", unix.Statfs_t{Bsize: 4096, Blocks: 1000, Bfree: 250, Bavail: 200, Files: 500, Ffree: 100},
			criserver.FsUsage{Mountpoint: "/d", UsedBytes: 750 * 4096, InodesUsed: 400}},
		{"empty", unix.Statfs_t{Bsize: 512, Blocks: 10, Bfree: 10, Files: 5, Ffree: 5}, criserver.FsUsage{Mountpoint: "/d"}},
		// Some filesystems report no inode counts (Files 0), or more free than total while they change.
		{"odd counts", unix.Statfs_t{Bsize: 4096, Blocks: 10, Bfree: 11, Files: 0, Ffree: 7}, criserver.FsUsage{Mountpoint: "/d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fsUsage("/d", &tc.st); got != tc.want {
				t.Errorf("fsUsage = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestCRINetworkStatus: NetworkReady is false, with a reason, while the network is being set up and when it is
// unavailable, and the CRI's Status never waits for the set-up.
func TestCRINetworkStatus(t *testing.T) {
	newA := func() *Agent {
		dir := t.TempDir()
		return newAgent(Options{RunDir: filepath.Join(dir, "run"), Root: filepath.Join(dir, "root"), Log: logr.Discard()},
			runtimetest.New(filepath.Join(dir, "run")), &fakeImages{})
	}
	check := func(what string, b criBackend, wantReady bool) {
		t.Helper()
		ready, reason, msg := b.NetworkStatus()
		if ready != wantReady || !wantReady && (reason != "NetworkPluginNotReady" || msg == "") || wantReady && (reason != "" || msg != "") {
			t.Errorf("%s: NetworkStatus = %v, %q, %q", what, ready, reason, msg)
		}
	}
	a := newA()
	check("being set up", criBackend{a}, false)
	a.setNetwork(nil)
	check("unavailable", criBackend{a}, false)
	a = newA()
	a.setNetwork(&network.Network{})
	check("up", criBackend{a}, true)
}
