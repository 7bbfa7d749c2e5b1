package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestCertPEM(t *testing.T) {
	ca := newTestCA(t, testNow)
	c, _ := issue(t, ca, Request{CommonName: "x"}, testNow)
	got, err := ParseCert(EncodeCert(c))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(c) {
		t.Error("the certificate changed in a PEM round trip")
	}
	keyPEM, err := EncodeKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	withHeader := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: c.Raw})
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "no PEM data"},
		{"not PEM", []byte("hello"), "no PEM data"},
		{"a key", keyPEM, `found "PRIVATE KEY"`},
		{"two certificates", append(EncodeCert(c), EncodeCert(ca.Cert)...), "found another"},
		{"trailing data", append(EncodeCert(c), "junk"...), "other data after it"},
		{"headers", withHeader, "headers"},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), "parsing a certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCert(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCert = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Whitespace around the block is fine.
	if _, err := ParseCert(append([]byte("\n\n"), append(EncodeCert(c), "\n\n"...)...)); err != nil {
		t.Errorf("ParseCert with whitespace around: %v", err)
	}
}

func TestKeyPEM(t *testing.T) {
	ec, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM, err := EncodeKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ecPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("EncodeKey wrote %q, want PKCS#8", bytes.SplitN(ecPEM, []byte("\n"), 2)[0])
	}
	got, err := ParseKey(ecPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !ec.Equal(got) {
		t.Error("the ECDSA key changed in a PEM round trip")
	}
	edPEM, err := EncodeKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	gotEd, err := ParseKey(edPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !ed.Equal(gotEd) {
		t.Error("the Ed25519 key changed in a PEM round trip")
	}

	// openssl ecparam -genkey writes SEC 1.
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})); err != nil || !ec.Equal(got) {
		t.Errorf("ParseKey(SEC 1) = %v", err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"RSA", pkcs8(rsaKey), "only ECDSA P-256 and Ed25519"},
		{"P-384", pkcs8(p384), "curve P-384"},
		{"a certificate", EncodeCert(newTestCA(t, testNow).Cert), `found "CERTIFICATE"`},
		{"two keys", append(ecPEM, edPEM...), "found another"},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret")}), "parsing a PRIVATE KEY block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKey(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseKey = %v, want an error containing %q", err, tc.want)
			}
			if body := strings.Split(string(tc.in), "\n"); len(body) > 1 && strings.Contains(err.Error(), body[1]) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}

func TestCSR(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := NewCSR(key, NodeCN("worker-1"))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "node:worker-1" {
		t.Errorf("CN = %q", csr.Subject.CommonName)
	}
	if !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("the CSR's public key is not the key's")
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.Extensions) != 0 {
		t.Errorf("the CSR asks for more than a key and a CN: %v %v %v", csr.DNSNames, csr.IPAddresses, csr.Extensions)
	}
	// The CA signs what the CSR carries.
	ca := newTestCA(t, testNow)
	c, err := ca.Issue(Request{CommonName: csr.Subject.CommonName, PublicKey: csr.PublicKey}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := keyMatches(c, key); err != nil {
		t.Error(err)
	}

	block, _ := pem.Decode(csrPEM)
	bad := bytes.Clone(block.Bytes)
	bad[len(bad)-1] ^= 0x01 // in the signature's last integer
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"bad signature", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad}), "bad signature"},
		{"two CSRs", append(bytes.Clone(csrPEM), csrPEM...), "found another"},
		{"too large", append(bytes.Clone(csrPEM), bytes.Repeat([]byte("\n"), MaxCSRSize)...), "more than the limit"},
		{"a certificate", EncodeCert(c), `found "CERTIFICATE"`},
		{"empty", nil, "no PEM data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCSR(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCSR = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
