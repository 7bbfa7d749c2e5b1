// Package testutil holds the helpers of the integration tests: the one skip helper for
// tests that need root, where the built binaries and the test image are, and free
// loopback ports.
package testutil

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// BinDir returns the directory of the built agentd, agentctl, agent-monitor,
// agent-monitor-lean and agent-etcd (make build; the Makefile exports AGENTD_TEST_BIN).
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("AGENTD_TEST_BIN")
	if dir == "" {
		t.Skip("AGENTD_TEST_BIN is not set: run `make test-integration`, which builds the binaries first")
	}
	for _, b := range []string{"agent-monitor", "agent-monitor-lean", "agent-etcd"} {
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

// FreeLoopbackURL returns https://127.0.0.1:PORT with a port that was free a moment ago, for an etcd member's peer
// or client URL. The port is below the kernel's ephemeral range (ip_local_port_range): tests stop a member and
// start it again on the same URLs, and a port from that range may meanwhile become the source port of any
// outgoing connection on the machine ("bind: address already in use"); a port below it never does.
func FreeLoopbackURL(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return fmt.Sprintf("https://127.0.0.1:%d", port)
	}
	t.Fatalf("no free loopback port between 10000 and %d", low)
	return ""
}

// ephemeralLow is the lowest port the kernel gives outgoing connections.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}

// DirNames lists the names in dir, sorted; the test fails if dir cannot be read.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// SyncBuffer is a bytes.Buffer that a command's or a stream's goroutines may write
// while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
