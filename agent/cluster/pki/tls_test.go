package pki

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// handshake runs a TLS handshake over an in-memory pipe and returns the
// client certificate the server saw, or the errors of both sides.
func handshake(t *testing.T, client, server *tls.Config, serverName string) (*x509.Certificate, error) {
	t.Helper()
	cConn, sConn := net.Pipe()
	defer cConn.Close()
	defer sConn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client = client.Clone()
	client.ServerName = serverName
	type result struct {
		peer *x509.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s := tls.Server(sConn, server)
		err := s.HandshakeContext(ctx)
		var peer *x509.Certificate
		if err == nil {
			if certs := s.ConnectionState().PeerCertificates; len(certs) > 0 {
				peer = certs[0]
			}
			// TLS 1.3 sends the server's verdict on the client certificate
			// after the client's handshake returns: make the client read it.
			_, err = s.Write([]byte("ok"))
		}
		if err != nil {
			sConn.Close()
		}
		done <- result{peer, err}
	}()
	c := tls.Client(cConn, client)
	cErr := c.HandshakeContext(ctx)
	if cErr == nil {
		buf := make([]byte, 2)
		_, cErr = c.Read(buf)
	}
	if cErr != nil {
		cConn.Close()
	}
	r := <-done
	if err := errors.Join(cErr, r.err); err != nil {
		return nil, err
	}
	return r.peer, nil
}

func TestTLS(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, now)
	other := newTestCA(t, now)
	serverCert, serverKey := issue(t, ca, Request{CommonName: NodeCN("n1"), DNSNames: []string{"n1.example"}, Usage: UsageClientServer}, now)
	clientOnly, clientOnlyKey := issue(t, ca, Request{CommonName: NodeCN("n1"), DNSNames: []string{"n1.example"}, Usage: UsageClient}, now)
	admin, adminKey := newAdmin(t, ca, now, 0)
	foreignAdmin, foreignAdminKey := newAdmin(t, other, now, 0)
	foreignServer, foreignServerKey := issue(t, other, Request{CommonName: "x", DNSNames: []string{"n1.example"}, Usage: UsageClientServer}, now)

	fixed := func(c *x509.Certificate, k crypto.Signer) func() (*tls.Certificate, error) {
		return func() (*tls.Certificate, error) { return TLSCertificate(c, k), nil }
	}
	for _, tc := range []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		wantPeer   string // the CN the server sees, when the handshake succeeds
		wantErr    string
		serverName string
	}{
		{
			name:     "mutual",
			server:   ServerTLS(ca.Cert, fixed(serverCert, serverKey), tls.RequireAndVerifyClientCert),
			client:   ClientTLS(ca.Cert, fixed(admin, adminKey)),
			wantPeer: AdminCN,
		},
		{
			name:   "client without a certificate, as a joiner",
			server: ServerTLS(nil, fixed(serverCert, serverKey), tls.NoClientCert),
			client: ClientTLS(ca.Cert, nil),
		},
		{
			name:    "server of another CA",
			server:  ServerTLS(ca.Cert, fixed(foreignServer, foreignServerKey), tls.RequireAndVerifyClientCert),
			client:  ClientTLS(ca.Cert, fixed(admin, adminKey)),
			wantErr: "unknown authority",
		},
		{
			name:    "client of another CA",
			server:  ServerTLS(ca.Cert, fixed(serverCert, serverKey), tls.RequireAndVerifyClientCert),
			client:  ClientTLS(ca.Cert, fixed(foreignAdmin, foreignAdminKey)),
			wantErr: "unknown authority",
		},
		{
			name:    "a client-only certificate cannot serve",
			server:  ServerTLS(ca.Cert, fixed(clientOnly, clientOnlyKey), tls.RequireAndVerifyClientCert),
			client:  ClientTLS(ca.Cert, fixed(admin, adminKey)),
			wantErr: "incompatible key usage",
		},
		{
			name:       "server name not in the certificate",
			server:     ServerTLS(ca.Cert, fixed(serverCert, serverKey), tls.RequireAndVerifyClientCert),
			client:     ClientTLS(ca.Cert, fixed(admin, adminKey)),
			serverName: "n2.example",
			wantErr:    "n2.example",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.serverName == "" {
				tc.serverName = "n1.example"
			}
			peer, err := handshake(t, tc.client, tc.server, tc.serverName)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("handshake = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cnOf(peer); got != tc.wantPeer {
				t.Errorf("the server saw client %q, want %q", got, tc.wantPeer)
			}
		})
	}
	if cfg := ClientTLS(ca.Cert, nil); cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("ClientTLS MinVersion = %x", cfg.MinVersion)
	}
	if cfg := ServerTLS(ca.Cert, fixed(serverCert, serverKey), tls.RequireAndVerifyClientCert); cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("ServerTLS MinVersion = %x", cfg.MinVersion)
	}
}

func cnOf(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Subject.CommonName
}

// TestClientTLSRenewal checks that one config presents a renewed certificate
// at the next handshake, without being rebuilt.
func TestClientTLSRenewal(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, now)
	serverCert, serverKey := issue(t, ca, Request{CommonName: "s", DNSNames: []string{"s.example"}, Usage: UsageClientServer}, now)
	first, firstKey := issue(t, ca, Request{CommonName: NodeCN("n1")}, now)
	second, secondKey := issue(t, ca, Request{CommonName: NodeCN("n1")}, now)

	var current atomic.Pointer[tls.Certificate]
	current.Store(TLSCertificate(first, firstKey))
	var calls atomic.Int32
	client := ClientTLS(ca.Cert, func() (*tls.Certificate, error) {
		calls.Add(1)
		return current.Load(), nil
	})
	server := ServerTLS(ca.Cert, func() (*tls.Certificate, error) { return TLSCertificate(serverCert, serverKey), nil }, tls.RequireAndVerifyClientCert)

	for i, want := range []*x509.Certificate{first, second} {
		if i == 1 {
			current.Store(TLSCertificate(second, secondKey))
		}
		peer, err := handshake(t, client, server, "s.example")
		if err != nil {
			t.Fatal(err)
		}
		if peer.SerialNumber.Cmp(want.SerialNumber) != 0 {
			t.Errorf("handshake %d: the server saw serial %v, want %v", i+1, peer.SerialNumber, want.SerialNumber)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("getCert was called %d times for 2 handshakes", n)
	}
}

func TestTLSCertificate(t *testing.T) {
	ca := newTestCA(t, testNow)
	c, k := issue(t, ca, Request{CommonName: "x"}, testNow)
	tc := TLSCertificate(c, k)
	if tc.Leaf != c || len(tc.Certificate) != 1 || string(tc.Certificate[0]) != string(c.Raw) || tc.PrivateKey != k {
		t.Errorf("TLSCertificate = %+v", tc)
	}
}
