package store

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/agentd-project/agentd/agent/cluster/etcdmember/membertest"
	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// Tests run members with tenfold shorter raft timings than production so elections and lease expiry are quick.
// Their members are this test binary run as agent-etcd (TestMain).
var testOpts = []Option{WithTimeouts(50*time.Millisecond, 500*time.Millisecond), WithReadyTimeout(20 * time.Second),
	WithBinary(membertest.Binary())}

func TestMain(m *testing.M) { membertest.Main(m) }

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
	m, ms, err := initAt(t, root, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &node{root: root, m: m, ms: ms}
}

// initAt starts a new cluster of node-1 in root, as `cluster init` does: certificates from the tests' CA, access
// control on.
func initAt(t *testing.T, root string, log logr.Logger) (*Member, *Membership, error) {
	t.Helper()
	writeTestPKI(t, root, "node-1")
	setup := func(ctx context.Context, c *Client) error {
		if err := c.AddNodeUser(ctx, "node-1"); err != nil {
			return err
		}
		return c.EnableAuth(ctx)
	}
	return Init(context.Background(), root, "node-1", testutil.FreeLoopbackURL(t), testutil.FreeLoopbackURL(t), "",
		adminTLS(t), setup, log, testOpts...)
}

// joinNode joins a member as the join service does it for a node: its user, a learner, its member started, promoted.
func joinNode(t *testing.T, name, endpoint string, log logr.Logger) *node {
	t.Helper()
	root := t.TempDir()
	m, _, err := startJoining(t, root, name, testutil.FreeLoopbackURL(t), endpoint, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	admin := connect(t, log, endpoint)
	ctx := context.Background()
	if err := admin.PromoteMember(ctx, name, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	members, err := admin.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms := &Membership{ClusterName: m.ClusterName(), NodeName: name, Member: true, PeerURL: m.PeerURL(),
		ClientURL: m.ClientURL(), Endpoints: clientEndpoints(members), JoinedAt: time.Now().UTC()}
	if err := SaveMembership(root, ms); err != nil {
		t.Fatal(err)
	}
	return &node{root: root, m: m, ms: ms}
}

// startJoining adds name as a learner through the admin's client of endpoint and starts its member.
func startJoining(t *testing.T, root, name, peerURL, endpoint string, log logr.Logger) (*Member, uint64, error) {
	t.Helper()
	writeTestPKI(t, root, name)
	admin := connect(t, log, endpoint)
	ctx := context.Background()
	if err := admin.AddNodeUser(ctx, name); err != nil {
		t.Fatal(err)
	}
	id, initial, err := admin.AddLearner(ctx, name, peerURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := MemberConfig{Root: root, Name: name, PeerURL: peerURL, ClientURL: testutil.FreeLoopbackURL(t), InitialCluster: initial, Log: log}
	for _, o := range testOpts {
		o(&cfg)
	}
	m, err := StartJoining(ctx, cfg)
	return m, id, err
}

// removeVia removes name's member through c, as the join service does for a leaving node.
func removeVia(c *Client, name string) func(context.Context) error {
	return func(ctx context.Context) error { return c.RemoveMember(ctx, name) }
}

// The tests' CA, and the admin credential's TLS configuration.
var (
	testCA = sync.OnceValue(func() *pki.CA {
		ca, err := pki.NewCA("store tests CA", time.Now())
		if err != nil {
			panic(err)
		}
		return ca
	})
	testAdmin = sync.OnceValue(func() *tls.Config { return issueTLS(pki.AdminCN, pki.UsageClient) })
)

// issueTLS is a client configuration with a new certificate of the tests' CA named cn.
func issueTLS(cn string, usage pki.Usage) *tls.Config {
	key, err := pki.NewKey()
	if err != nil {
		panic(err)
	}
	cert, err := testCA().Issue(pki.Request{CommonName: cn, Usage: usage, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, PublicKey: key.Public()}, time.Now())
	if err != nil {
		panic(err)
	}
	tc := pki.TLSCertificate(cert, key)
	return pki.ClientTLS(testCA().Cert, func() (*tls.Certificate, error) { return tc, nil })
}

func adminTLS(*testing.T) *tls.Config { return testAdmin() }

// writeTestPKI gives the member under root its certificates: the node's and the peer's, for 127.0.0.1.
func writeTestPKI(t *testing.T, root, name string) {
	t.Helper()
	dir := PKIDir(root)
	if err := dir.WriteCert(pki.CACertFile, testCA().Cert); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cn, file string }{{pki.NodeCN(name), pki.NodeFile}, {pki.PeerCN, pki.PeerFile}} {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := testCA().Issue(pki.Request{CommonName: c.cn, Usage: pki.UsageClientServer, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, PublicKey: key.Public()}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := dir.WriteCombined(c.file, cert, key); err != nil {
			t.Fatal(err)
		}
	}
}

// connect is the admin's client of endpoints.
func connect(t *testing.T, log logr.Logger, endpoints ...string) *Client {
	t.Helper()
	return connectAs(t, adminTLS(t), log, endpoints...)
}

func connectAs(t *testing.T, tlsCfg *tls.Config, log logr.Logger, endpoints ...string) *Client {
	t.Helper()
	c, err := Connect(context.Background(), endpoints, tlsCfg, log)
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
