package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemCSR         = "CERTIFICATE REQUEST"
	pemPrivateKey  = "PRIVATE KEY"    // PKCS#8
	pemECKey       = "EC PRIVATE KEY" // SEC 1, what openssl ecparam -genkey writes
)

// MaxCSRSize bounds what ParseCSR reads: a CSR comes from a joiner that has not
// yet proven anything, and an honest one is well under a kilobyte.
const MaxCSRSize = 16 << 10

// EncodeCert is c as a PEM CERTIFICATE block.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c.Raw})
}

// ParseCert parses exactly one PEM CERTIFICATE block: a bundle where one
// certificate is expected is a mistake worth an error, not a silent choice.
func ParseCert(pemBytes []byte) (*x509.Certificate, error) {
	block, err := decodeOne(pemBytes, pemCertificate)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing a certificate: %w", err)
	}
	return c, nil
}

// EncodeKey is k as a PEM PKCS#8 PRIVATE KEY block. k must be a key in memory
// (*ecdsa.PrivateKey or ed25519.PrivateKey), not a handle to a key elsewhere.
func EncodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding a %T private key as PKCS#8: %w", k, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParseKey parses exactly one PEM private key block: PKCS#8 "PRIVATE KEY", or
// SEC 1 "EC PRIVATE KEY" as openssl writes it. Only ECDSA P-256 and Ed25519 keys
// are accepted, as for certificates. Errors never quote the key.
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	block, err := decodeOne(pemBytes, pemPrivateKey, pemECKey)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case pemPrivateKey:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case pemECKey:
		key, err = x509.ParseECPrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing a %s block: %w", block.Type, err)
	}
	var signer crypto.Signer
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		signer = k
	case ed25519.PrivateKey:
		signer = k
	default:
		return nil, fmt.Errorf("the private key is a %T; only ECDSA P-256 and Ed25519 keys are accepted", key)
	}
	if err := CheckPublicKey(signer.Public()); err != nil {
		return nil, fmt.Errorf("the private key: %w", err)
	}
	return signer, nil
}

// NewCSR is a PEM CERTIFICATE REQUEST for key's public key and commonName. It
// carries nothing else: the signer decides SANs and usages itself, so a joiner
// cannot ask for more than it is given.
func NewCSR(key crypto.Signer, commonName string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating a certificate request for %q: %w", commonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// ParseCSR parses exactly one PEM CERTIFICATE REQUEST of at most MaxCSRSize
// bytes and checks its signature, which proves the sender holds the key.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	if len(pemBytes) > MaxCSRSize {
		return nil, fmt.Errorf("the certificate request is %d bytes, more than the limit of %d", len(pemBytes), MaxCSRSize)
	}
	block, err := decodeOne(pemBytes, pemCSR)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing a certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate request for %q has a bad signature: %w", csr.Subject.CommonName, err)
	}
	return csr, nil
}

// decodeOne decodes the one PEM block of data, which must be of one of types
// and may be surrounded by whitespace only.
func decodeOne(data []byte, types ...string) (*pem.Block, error) {
	want := types[0]
	for _, t := range types[1:] {
		want += " or " + t
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("expected a PEM %s block, found no PEM data", want)
	}
	typeOK := false
	for _, t := range types {
		typeOK = typeOK || block.Type == t
	}
	if !typeOK {
		return nil, fmt.Errorf("expected a PEM %s block, found %q", want, block.Type)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("the PEM %s block has headers (an encrypted key?); expected none", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		if next, _ := pem.Decode(rest); next != nil {
			return nil, fmt.Errorf("expected one PEM %s block, found another (%q) after it", want, next.Type)
		}
		return nil, errors.New("expected one PEM " + want + " block, found other data after it")
	}
	return block, nil
}
