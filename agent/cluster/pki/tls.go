package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
)

// ClientTLS is a client configuration (TLS 1.2 at least) that trusts only ca
// and presents the certificate getCert returns, asked at each handshake so
// that a renewed certificate is used without rebuilding clients. getCert may be
// nil for a client without a certificate (a joiner before it has one). The
// server name is left to the dialer, which takes it from the address.
func ClientTLS(ca *x509.Certificate, getCert func() (*tls.Certificate, error)) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
	}
	if getCert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return getCert()
		}
	}
	return cfg
}

// ServerTLS is a server configuration (TLS 1.2 at least) that presents the
// certificate getCert (not nil) returns, asked at each handshake like ClientTLS's, and
// checks client certificates against ca as clientAuth says (ca may be nil when
// clientAuth asks for none: the join server, whose clients have no
// certificate yet and prove themselves with a bootstrap token).
func ServerTLS(ca *x509.Certificate, getCert func() (*tls.Certificate, error), clientAuth tls.ClientAuthType) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return getCert()
		},
		ClientAuth: clientAuth,
	}
	if ca != nil {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		cfg.ClientCAs = pool
	}
	return cfg
}

// TLSCertificate is c and k as crypto/tls wants them, with Leaf set so that
// nobody parses c again.
func TLSCertificate(c *x509.Certificate, k crypto.Signer) *tls.Certificate {
	return &tls.Certificate{
		Certificate: [][]byte{c.Raw},
		PrivateKey:  k,
		Leaf:        c,
	}
}
