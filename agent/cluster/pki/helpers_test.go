package pki

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"
)

// testNow is a fixed instant for tests that do not go through time.Now.
var testNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA("test CA", now)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// issue issues a certificate for a new key.
func issue(t *testing.T, ca *CA, req Request, now time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := NewKey()
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
