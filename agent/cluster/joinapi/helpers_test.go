package joinapi

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// fakeAuthority records every call the handler makes and answers with err (nil: success).
type fakeAuthority struct {
	mu    sync.Mutex
	calls []authCall // guarded by mu
	err   error      // guarded by mu; what every method returns
}

var _ Authority = (*fakeAuthority)(nil)

// authCall is one call to the Authority: the method, the node from the caller's certificate (Promote, Abort,
// Leave, Renew) and the request (Join, Renew).
type authCall struct {
	method string
	node   string
	join   JoinRequest
	renew  RenewRequest
}

// testClusterID is what the fake answers a join with, to see the response cross the wire.
const testClusterID = "cluster-under-test"

func (f *fakeAuthority) record(c authCall) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.err
}

func (f *fakeAuthority) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeAuthority) recorded() []authCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]authCall(nil), f.calls...)
}

func (f *fakeAuthority) Join(_ context.Context, req JoinRequest) (*JoinResponse, error) {
	if err := f.record(authCall{method: "Join", join: req}); err != nil {
		return nil, err
	}
	return &JoinResponse{ClusterID: testClusterID, NodeCert: "cert for " + req.NodeName}, nil
}

func (f *fakeAuthority) Promote(_ context.Context, node string) error {
	return f.record(authCall{method: "Promote", node: node})
}

func (f *fakeAuthority) Abort(_ context.Context, node string) error {
	return f.record(authCall{method: "Abort", node: node})
}

func (f *fakeAuthority) Leave(_ context.Context, node string) error {
	return f.record(authCall{method: "Leave", node: node})
}

func (f *fakeAuthority) Renew(_ context.Context, node string, req RenewRequest) (*RenewResponse, error) {
	if err := f.record(authCall{method: "Renew", node: node, renew: req}); err != nil {
		return nil, err
	}
	return &RenewResponse{NodeCert: "renewed " + req.NodeCSR}, nil
}

// countingHandler counts the HTTP requests that reach the API, whatever becomes of them.
type countingHandler struct {
	n atomic.Int64
	h http.Handler
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	c.h.ServeHTTP(w, r)
}

// testServer is a join service on loopback with a fake Authority.
type testServer struct {
	url  string
	auth *fakeAuthority
	hits *countingHandler
}

// startServer serves the API at 127.0.0.1 on a free port with the certificate cert returns, verifying client
// certificates against clientCA. It is closed when the test ends.
func startServer(t *testing.T, clientCA *x509.Certificate, cert func() (*tls.Certificate, error)) *testServer {
	t.Helper()
	log := testr.New(t)
	ts := &testServer{auth: &fakeAuthority{}}
	ts.hits = &countingHandler{h: NewHandler(ts.auth, log)}
	srv, err := Listen("https://127.0.0.1:0", clientCA, cert, ts.hits, log)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the join service: %v", err)
		}
	})
	ts.url = "https://" + srv.Addr().String()
	return ts
}

// assertUntouched fails unless no HTTP request reached the server and the Authority was never called. It then
// shows that the counters are live: a probe request that skips server verification must be counted, so that
// "nothing arrived" cannot come from a server that counts nothing.
func (ts *testServer) assertUntouched(t *testing.T) {
	t.Helper()
	if n := ts.hits.n.Load(); n != 0 {
		t.Errorf("%d HTTP request(s) reached the join service; want none", n)
	}
	if calls := ts.auth.recorded(); len(calls) != 0 {
		t.Errorf("the Authority was called: %+v; want no call", calls)
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a probe of the counters only
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(ts.url+PathJoin, "application/json", bytes.NewReader([]byte(`{"token":"probe"}`)))
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	resp.Body.Close()
	if n := ts.hits.n.Load(); n != 1 {
		t.Errorf("after the probe %d HTTP request(s) reached the join service; want exactly the probe", n)
	}
	if calls := ts.auth.recorded(); len(calls) != 1 || calls[0].join.Token != "probe" {
		t.Errorf("after the probe the Authority saw %+v; want only the probe's join", calls)
	}
}

func newCA(t *testing.T, cn string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(cn, time.Now())
	if err != nil {
		t.Fatalf("NewCA(%q): %v", cn, err)
	}
	return ca
}

// issue issues a leaf for a new key, as of now.
func issue(t *testing.T, ca *pki.CA, req pki.Request, now time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	req.PublicKey = key.Public()
	c, err := ca.Issue(req, now)
	if err != nil {
		t.Fatalf("Issue(%q): %v", req.CommonName, err)
	}
	return c, key
}

// loopback is the server certificate's address: the host the clients dial.
var loopback = []net.IP{net.ParseIP("127.0.0.1")}

// serverCert is the certificate func the product gives Listen: the leaf followed by chain (the CA).
func serverCert(leaf *x509.Certificate, key crypto.Signer, chain ...*x509.Certificate) func() (*tls.Certificate, error) {
	c := pki.TLSCertificate(leaf, key)
	for _, ca := range chain {
		c.Certificate = append(c.Certificate, ca.Raw)
	}
	return func() (*tls.Certificate, error) { return c, nil }
}

// joinServiceCert is the certificate func of a correctly configured join service of ca: ca's join service leaf
// for 127.0.0.1 with ca appended.
func joinServiceCert(t *testing.T, ca *pki.CA) func() (*tls.Certificate, error) {
	t.Helper()
	leaf, key := issue(t, ca, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClientServer}, time.Now())
	return serverCert(leaf, key, ca.Cert)
}

// clusterServer is a correctly configured join service of a new cluster CA.
func clusterServer(t *testing.T) (*pki.CA, *testServer) {
	t.Helper()
	ca := newCA(t, "test cluster CA")
	return ca, startServer(t, ca.Cert, joinServiceCert(t, ca))
}

func pinOf(t *testing.T, ca *x509.Certificate) []byte {
	t.Helper()
	pin, err := pki.ParsePin(pki.SPKIHash(ca))
	if err != nil {
		t.Fatalf("ParsePin: %v", err)
	}
	return pin
}

func pinnedClient(t *testing.T, url string, pin []byte) *Client {
	t.Helper()
	c, err := NewPinnedClient(url, pin)
	if err != nil {
		t.Fatalf("NewPinnedClient(%s): %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}

// mtlsClient is a client that trusts ca and presents cert (none when nil), as a joined node's.
func mtlsClient(t *testing.T, url string, ca *x509.Certificate, cert *tls.Certificate) *Client {
	t.Helper()
	var get func() (*tls.Certificate, error)
	if cert != nil {
		get = func() (*tls.Certificate, error) { return cert, nil }
	}
	c, err := NewClient(url, pki.ClientTLS(ca, get))
	if err != nil {
		t.Fatalf("NewClient(%s): %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}
