package cluster

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// identity is a set of credentials for the cluster's etcd and join service: a CA to trust and a certificate to
// present, read from files and read again (reload) after they are renewed, so that clients and servers built on
// it use the new certificate at their next handshake without being rebuilt. Safe for concurrent use.
type identity struct {
	caFile, certFile, keyFile string
	credFile                  string   // instead of the three: a pki.Credential file (the admin credential)
	endpoints                 []string // the credential's etcd endpoints; guarded by mu

	mu   sync.Mutex // guards the fields below
	ca   *x509.Certificate
	cert *tls.Certificate
}

// nodeIdentity is the node's own certificate in dir.
func nodeIdentity(dir pki.Dir) (*identity, error) {
	return loadIdentity(dir.Path(pki.CACertFile), dir.Path(pki.NodeFile), dir.Path(pki.NodeFile))
}

// loadIdentity reads a CA certificate and a certificate with its key.
func loadIdentity(caFile, certFile, keyFile string) (*identity, error) {
	id := &identity{caFile: caFile, certFile: certFile, keyFile: keyFile}
	if err := id.reload(); err != nil {
		return nil, err
	}
	return id, nil
}

// adminIdentity is the admin credential at path.
func adminIdentity(path string) (*identity, error) {
	id := &identity{credFile: path}
	if err := id.reload(); err != nil {
		return nil, err
	}
	return id, nil
}

// reload reads the files again.
func (id *identity) reload() error {
	if id.credFile != "" {
		cred, err := pki.LoadCredential(id.credFile)
		if err != nil {
			return fmt.Errorf("cluster admin credential: %w", err)
		}
		id.mu.Lock()
		defer id.mu.Unlock()
		id.ca, id.cert, id.endpoints = cred.CA, pki.TLSCertificate(cred.Cert, cred.Key), cred.Endpoints
		return nil
	}
	ca, err := pki.Dir("").LoadCert(id.caFile)
	if err != nil {
		return fmt.Errorf("cluster credentials: %w", err)
	}
	var cert *x509.Certificate
	var key crypto.Signer
	if id.certFile == id.keyFile {
		cert, key, err = pki.Dir("").LoadCombined(id.certFile)
	} else {
		cert, key, err = pki.Dir("").LoadPair(id.certFile, id.keyFile)
	}
	if err != nil {
		return fmt.Errorf("cluster credentials: %w", err)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.ca, id.cert = ca, pki.TLSCertificate(cert, key)
	return nil
}

// leaf is the current certificate.
func (id *identity) leaf() *x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert.Leaf
}

func (id *identity) caCert() *x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.ca
}

// clientTLS presents the current certificate and trusts only the CA.
func (id *identity) clientTLS() *tls.Config {
	return pki.ClientTLS(id.caCert(), func() (*tls.Certificate, error) {
		id.mu.Lock()
		defer id.mu.Unlock()
		return id.cert, nil
	})
}

// serverCert is the current certificate with the CA appended, so that joiners can pin the CA.
func (id *identity) serverCert() (*tls.Certificate, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	c := *id.cert
	c.Certificate = append(append([][]byte(nil), id.cert.Certificate...), id.ca.Raw)
	return &c, nil
}
