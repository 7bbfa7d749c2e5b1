package joinapi

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

func TestPinnedJoinWithTheRightPin(t *testing.T) {
	ca, ts := clusterServer(t)
	c := pinnedClient(t, ts.url, pinOf(t, ca.Cert))
	if got := c.CA(); got != nil {
		t.Fatalf("CA() before any call = %q; want nil", got.Subject.CommonName)
	}

	resp, err := c.Join(t.Context(), JoinRequest{Token: "abcdef.0123456789abcdef", NodeName: "node-2", NodeCSR: "csr"})
	if err != nil {
		t.Fatalf("Join with the right pin: %v", err)
	}
	if resp.ClusterID != testClusterID || resp.NodeCert != "cert for node-2" {
		t.Errorf("Join answered %+v; want the fake Authority's answer", resp)
	}
	calls := ts.auth.recorded()
	if len(calls) != 1 || calls[0].method != "Join" || calls[0].join.Token != "abcdef.0123456789abcdef" ||
		calls[0].join.NodeName != "node-2" || calls[0].join.NodeCSR != "csr" {
		t.Errorf("the Authority saw %+v; want the one join request", calls)
	}
	if got := c.CA(); got == nil || !got.Equal(ca.Cert) {
		t.Errorf("CA() = %v; want the cluster CA the server presented", got)
	}
}

// TestPinnedClientRefusesServer: every server the pin does not vouch for is refused in the handshake, so that no
// request, and so no token, reaches it.
func TestPinnedClientRefusesServer(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		// server returns the CA the client pins and the certificate func of a server that must be refused.
		server func(t *testing.T) (pinned *pki.CA, cert func() (*tls.Certificate, error))
		// msg must be in the error, which must also say that the token was not sent.
		msg string
		// notJoinService: the server is the pinned CA's but not its join service, and the error says so.
		notJoinService bool
	}{{
		name: "the pin names another CA",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClientServer}, now)
			return newCA(t, "the CA the joiner was told about"), serverCert(leaf, key, ca.Cert)
		},
		msg: "presented no CA with that hash",
	}, {
		name: "the chain lacks the CA",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClientServer}, now)
			return ca, serverCert(leaf, key)
		},
		msg: "presented no CA with that hash",
	}, {
		// An impostor that copied the cluster's CA certificate (public) but cannot sign with its key; its own CA
		// has the same name, so that only the signature tells them apart.
		name: "the leaf is another CA's, the pinned CA appended",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			impostor := newCA(t, "test cluster CA")
			leaf, key := issue(t, impostor, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClientServer}, now)
			return ca, serverCert(leaf, key, ca.Cert)
		},
	}, {
		name: "the impostor's CA and then the pinned CA in the chain",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			impostor := newCA(t, "test cluster CA")
			leaf, key := issue(t, impostor, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClientServer}, now)
			return ca, serverCert(leaf, key, impostor.Cert, ca.Cert)
		},
	}, {
		name: "the leaf does not name the dialled host",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.JoinServiceCN, IPs: []net.IP{net.ParseIP("10.9.9.9")}, DNSNames: []string{"join.example"}, Usage: pki.UsageClientServer}, now)
			return ca, serverCert(leaf, key, ca.Cert)
		},
		msg: "is not its CA's for 127.0.0.1",
	}, {
		name: "the leaf may not serve",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClient}, now)
			return ca, serverCert(leaf, key, ca.Cert)
		},
	}, {
		name: "the leaf has expired",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.JoinServiceCN, IPs: loopback, Usage: pki.UsageClientServer, Validity: time.Minute}, now.Add(-time.Hour))
			return ca, serverCert(leaf, key, ca.Cert)
		},
	}, {
		// The pinned CA issued it, for this host and to serve, but to a node: a node that serves with its own
		// certificate must not collect the tokens of joiners sent its way.
		name: "the leaf is a node's certificate of the pinned CA",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-1"), IPs: loopback, Usage: pki.UsageClientServer}, now)
			return ca, serverCert(leaf, key, ca.Cert)
		},
		msg:            `is not the cluster's join service: the server at 127.0.0.1 presents a certificate the cluster's CA issued to "node:node-1"`,
		notJoinService: true,
	}, {
		name: "the leaf is an etcd member's peer certificate of the pinned CA",
		server: func(t *testing.T) (*pki.CA, func() (*tls.Certificate, error)) {
			ca := newCA(t, "test cluster CA")
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.PeerCN, IPs: loopback, Usage: pki.UsageClientServer}, now)
			return ca, serverCert(leaf, key, ca.Cert)
		},
		msg:            pki.PeerCN,
		notJoinService: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pinned, cert := tt.server(t)
			ts := startServer(t, pinned.Cert, cert)
			c := pinnedClient(t, ts.url, pinOf(t, pinned.Cert))

			_, err := c.Join(t.Context(), JoinRequest{Token: "abcdef.0123456789abcdef", NodeName: "node-2"})
			if !errors.Is(err, ErrPinMismatch) {
				t.Fatalf("Join = %v; want ErrPinMismatch", err)
			}
			// The join command retries an unavailable service; a refused one must not be retried.
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("Join = %v; a pin mismatch must not be ErrUnavailable", err)
			}
			for _, msg := range []string{tt.msg, "the token was not sent"} {
				if !strings.Contains(err.Error(), msg) {
					t.Errorf("Join = %q; want it to say %q", err, msg)
				}
			}
			if got := errors.Is(err, ErrNotJoinService); got != tt.notJoinService {
				t.Errorf("Join = %v; errors.Is(ErrNotJoinService) = %t, want %t", err, got, tt.notJoinService)
			}
			if strings.Contains(err.Error(), "0123456789abcdef") {
				t.Errorf("Join = %q; the error shows the token's secret", err)
			}
			if got := c.CA(); got != nil {
				t.Errorf("CA() = %q after a refused handshake; want nil", got.Subject.CommonName)
			}
			ts.assertUntouched(t)
		})
	}
}
