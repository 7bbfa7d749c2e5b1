package joinapi

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// nodeCalls are the calls that need a node's certificate, each as a client makes it.
var nodeCalls = []struct {
	method string
	call   func(c *Client, ctx context.Context) error
}{
	{"Promote", (*Client).Promote},
	{"Abort", (*Client).Abort},
	{"Leave", (*Client).Leave},
	{"Renew", func(c *Client, ctx context.Context) error {
		resp, err := c.Renew(ctx, RenewRequest{NodeCSR: "node csr"})
		if err == nil && resp.NodeCert != "renewed node csr" {
			return errors.New("Renew answered " + resp.NodeCert + "; want the fake Authority's answer")
		}
		return err
	}},
}

func TestNodeCallsWithTheNodesCertificate(t *testing.T) {
	ca, ts := clusterServer(t)
	leaf, key := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, time.Now())
	c := mtlsClient(t, ts.url, ca.Cert, pki.TLSCertificate(leaf, key))
	for i, nc := range nodeCalls {
		if err := nc.call(c, t.Context()); err != nil {
			t.Fatalf("%s with node-2's certificate: %v", nc.method, err)
		}
		calls := ts.auth.recorded()
		if len(calls) != i+1 {
			t.Fatalf("after %s the Authority saw %+v; want %d calls", nc.method, calls, i+1)
		}
		if got := calls[i]; got.method != nc.method || got.node != "node-2" {
			t.Errorf("%s: the Authority saw %s for node %q; want %s for node-2", nc.method, got.method, got.node, nc.method)
		}
	}
	if got := ts.auth.recorded()[3].renew; got.NodeCSR != "node csr" {
		t.Errorf("Renew: the Authority got %+v; want the client's request", got)
	}
}

// TestNodeCallsRefuseOtherCallers: a call without a verified node certificate of the cluster's CA never reaches the
// Authority.
func TestNodeCallsRefuseOtherCallers(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		// cert is the caller's certificate (nil: none), issued by the cluster's CA or another.
		cert func(t *testing.T, ca *pki.CA) *tls.Certificate
		// inHandshake: the server refuses the certificate in the TLS handshake, so no HTTP request arrives; the
		// client still says ErrUnauthorized (not "unavailable"). Otherwise the request must arrive and be refused
		// with ErrUnauthorized.
		inHandshake bool
	}{{
		name: "no certificate",
		cert: func(*testing.T, *pki.CA) *tls.Certificate { return nil },
	}, {
		name: "a node certificate of another CA",
		cert: func(t *testing.T, _ *pki.CA) *tls.Certificate {
			other := newCA(t, "test cluster CA")
			return pki.TLSCertificate(issue(t, other, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, now))
		},
		inHandshake: true,
	}, {
		name: "the admin's certificate",
		cert: func(t *testing.T, ca *pki.CA) *tls.Certificate {
			return pki.TLSCertificate(issue(t, ca, pki.Request{CommonName: pki.AdminCN, Usage: pki.UsageClient}, now))
		},
	}, {
		name: "an etcd peer certificate",
		cert: func(t *testing.T, ca *pki.CA) *tls.Certificate {
			return pki.TLSCertificate(issue(t, ca, pki.Request{CommonName: pki.PeerCN, Usage: pki.UsageClientServer}, now))
		},
	}, {
		name: "a node CN without a name",
		cert: func(t *testing.T, ca *pki.CA) *tls.Certificate {
			return pki.TLSCertificate(issue(t, ca, pki.Request{CommonName: pki.NodeCN(""), Usage: pki.UsageClient}, now))
		},
	}, {
		name: "an expired node certificate",
		cert: func(t *testing.T, ca *pki.CA) *tls.Certificate {
			return pki.TLSCertificate(issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient, Validity: time.Minute}, now.Add(-time.Hour)))
		},
		inHandshake: true,
	}}
	for _, tt := range tests {
		for _, nc := range nodeCalls {
			t.Run(tt.name+"/"+nc.method, func(t *testing.T) {
				ca, ts := clusterServer(t)
				c := mtlsClient(t, ts.url, ca.Cert, tt.cert(t, ca))

				err := nc.call(c, t.Context())
				if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("%s = %v; want ErrUnauthorized", nc.method, err)
				}
				if tt.inHandshake {
					ts.assertUntouched(t)
					return
				}
				if calls := ts.auth.recorded(); len(calls) != 0 {
					t.Errorf("the Authority saw %+v; want no call", calls)
				}
				if n := ts.hits.n.Load(); n != 1 {
					t.Errorf("%d HTTP requests reached the join service; want the one refused", n)
				}
			})
		}
	}
}

// TestNodeCallsRefuseServer: a node calls only the join service. A server with another certificate of the
// cluster's CA for the join host (a node's, an etcd member's) is refused in the handshake, so that no request
// reaches it, and the error says so rather than "unavailable", which the caller would retry.
func TestNodeCallsRefuseServer(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		cn   string
	}{
		{"a node's certificate", pki.NodeCN("node-1")},
		{"an etcd member's peer certificate", pki.PeerCN},
	}
	for _, tt := range tests {
		for _, nc := range nodeCalls {
			t.Run(tt.name+"/"+nc.method, func(t *testing.T) {
				ca := newCA(t, "test cluster CA")
				leaf, key := issue(t, ca, pki.Request{CommonName: tt.cn, IPs: loopback, Usage: pki.UsageClientServer}, now)
				ts := startServer(t, ca.Cert, serverCert(leaf, key, ca.Cert))
				node, nodeKey := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, now)
				c := mtlsClient(t, ts.url, ca.Cert, pki.TLSCertificate(node, nodeKey))

				err := nc.call(c, t.Context())
				if !errors.Is(err, ErrNotJoinService) {
					t.Fatalf("%s = %v; want ErrNotJoinService", nc.method, err)
				}
				for _, other := range []error{ErrUnavailable, ErrUnauthorized, ErrPinMismatch} {
					if errors.Is(err, other) {
						t.Errorf("%s = %v; it must not be %v", nc.method, err, other)
					}
				}
				if want := `issued to "` + tt.cn + `", not to "` + pki.JoinServiceCN + `"`; !strings.Contains(err.Error(), want) {
					t.Errorf("%s = %q; want it to say %q", nc.method, err, want)
				}
				ts.assertUntouched(t)
			})
		}
	}
}

// TestNewClientKeepsTheCallersConfig: NewClient adds its check to a copy; the caller's config, shared with etcd's
// client, is unchanged, and the caller's own VerifyConnection still runs.
func TestNewClientKeepsTheCallersConfig(t *testing.T) {
	ca, ts := clusterServer(t)
	leaf, key := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, time.Now())
	cfg := pki.ClientTLS(ca.Cert, func() (*tls.Certificate, error) { return pki.TLSCertificate(leaf, key), nil })
	if _, err := NewClient(ts.url, cfg); err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if cfg.VerifyConnection != nil {
		t.Errorf("NewClient set VerifyConnection on the caller's config")
	}

	refused := errors.New("the caller's own check refused the server")
	cfg.VerifyConnection = func(tls.ConnectionState) error { return refused }
	c, err := NewClient(ts.url, cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	if err := c.Promote(t.Context()); !errors.Is(err, refused) {
		t.Errorf("Promote = %v; want the caller's VerifyConnection error", err)
	}
	ts.assertUntouched(t)
}
