// Package testutil holds the helpers of the integration tests: the one skip helper for
// tests that need root, where the built binaries and the test image are, and free
// loopback ports.
package testutil

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// RequiresRoot skips a test that needs root, namespaces and cgroups when it cannot
// run: in `go test -short` (make test-unit) or as a non-root user. CI runs as root,
// so these tests run there.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("root integration test: skipped in -short mode (make test-integration runs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("root integration test: needs root (make test-integration as root)")
	}
}

// BinDir returns the directory of the built agentd, agentctl, agent-monitor and
// agent-monitor-lean (make build; the Makefile exports AGENTD_TEST_BIN).
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("AGENTD_TEST_BIN")
	if dir == "" {
		t.Skip("AGENTD_TEST_BIN is not set: run `make test-integration`, which builds the binaries first")
	}
	for _, b := range []string{"agent-monitor", "agent-monitor-lean"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%v: run `make build`", err)
		}
	}
	return dir
}

// TestImage returns the busybox OCI archive (make image; AGENTD_TEST_IMAGE).
func TestImage(t testing.TB) string {
	t.Helper()
	p := os.Getenv("AGENTD_TEST_IMAGE")
	if p == "" {
		t.Skip("AGENTD_TEST_IMAGE is not set: run `make test-integration`, which builds the test image first")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: run `make image`", err)
	}
	return p
}

// FreeLoopbackURL returns http://127.0.0.1:PORT with a port that was free a moment ago, for an etcd member's peer
// or client URL.
func FreeLoopbackURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}
