package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// Tests run members with tenfold shorter raft timings than production so elections and lease expiry are quick.
var testOpts = []Option{WithTimeouts(50*time.Millisecond, 500*time.Millisecond), WithReadyTimeout(20 * time.Second)}

// testTTL is the node lease TTL of the tests.
const testTTL = 2 * time.Second

// testLog collects everything (etcd's own lines included) and prints the tail when the test fails, or always with
// STORE_TEST_LOG=1 (all of it with STORE_TEST_LOG=all). It never calls t.Log, which would panic when one of etcd's
// goroutines logs after the test ended.
func testLog(t *testing.T) logr.Logger {
	log, _ := testLogSearch(t)
	return log
}

// testLogSearch is testLog that also returns a function saying whether a line containing s has been logged.
func testLogSearch(t *testing.T) (logr.Logger, func(s string) bool) {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("STORE_TEST_LOG") == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		b := buf.Bytes()
		if len(b) > 64<<10 && os.Getenv("STORE_TEST_LOG") != "all" {
			b = b[len(b)-64<<10:]
		}
		fmt.Printf("--- log of %s (tail) ---\n%s--- end of log ---\n", t.Name(), b)
	})
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&buf, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
	logged := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Contains(buf.Bytes(), []byte(s))
	}
	return log, logged
}

// node is one test node: its root, member and membership.
type node struct {
	root string
	m    *Member
	ms   *Membership
}

func initNode(t *testing.T, log logr.Logger) *node {
	t.Helper()
	root := t.TempDir()
	m, ms, err := Init(context.Background(), root, "node-1", testutil.FreeLoopbackURL(t), testutil.FreeLoopbackURL(t), log, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &node{root: root, m: m, ms: ms}
}

func joinNode(t *testing.T, name, endpoint string, log logr.Logger) *node {
	t.Helper()
	root := t.TempDir()
	m, ms, err := Join(context.Background(), root, name, testutil.FreeLoopbackURL(t), testutil.FreeLoopbackURL(t), endpoint, log, testOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &node{root: root, m: m, ms: ms}
}

func connect(t *testing.T, log logr.Logger, endpoints ...string) *Client {
	t.Helper()
	c, err := Connect(context.Background(), endpoints, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond every 100 ms until it returns nil or timeout passes, then fails with cond's last error.
func eventually(t *testing.T, timeout time.Duration, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func nodeByName(t *testing.T, c *Client, name string) (Node, error) {
	t.Helper()
	nodes, err := c.Nodes(context.Background())
	if err != nil {
		return Node{}, err
	}
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("node %q not listed in %+v", name, nodes)
}

func wantReady(t *testing.T, c *Client, name string, ready bool) func() error {
	return func() error {
		n, err := nodeByName(t, c, name)
		if err != nil {
			return err
		}
		if n.Ready != ready {
			return fmt.Errorf("node %q Ready=%v, want %v", name, n.Ready, ready)
		}
		return nil
	}
}

// closeLeaderFirst stops members, the current leader first each time, so that its leadership goes to a member
// that is still up (a leader stopping after its peers waits 5 s for a transfer that cannot happen).
func closeLeaderFirst(members ...*Member) {
	for len(members) > 0 {
		i := slices.IndexFunc(members, func(m *Member) bool {
			select {
			case <-m.Done():
				return false
			default:
				return m.IsLeader()
			}
		})
		i = max(i, 0)
		members[i].Close()
		members = slices.Delete(members, i, i+1)
	}
}
