package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"time"
)

// DefaultCACommonName is the CA's CN when NewCA is given none.
const DefaultCACommonName = "agentd cluster CA"

// caBackdate is how far before its creation the CA is valid: a node whose
// clock is behind the CA's host by less than this still accepts the CA.
const caBackdate = time.Hour

// maxLeafBackdate bounds how far before its issue a leaf is valid, for clock
// skew between the signer and the nodes that check the certificate.
const maxLeafBackdate = 5 * time.Minute

// CA is the cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	// Key signs; nil when only the certificate is known (a node that cannot
	// sign, which uses the CA to verify its peers).
	Key crypto.Signer
}

// NewCA makes a self-signed CA with a new ECDSA P-256 key, valid from an hour
// before now for CAValidity. commonName is DefaultCACommonName when empty;
// callers give each cluster its own name so that two clusters' CAs are told
// apart in errors and in openssl's output.
func NewCA(commonName string, now time.Time) (*CA, error) {
	if commonName == "" {
		commonName = DefaultCACommonName
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // signs leaves only, never another CA
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating the cluster CA certificate %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new cluster CA certificate %q: %w", commonName, err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Usage is what a leaf certificate may be used for.
type Usage int

const (
	// UsageClient is ExtKeyUsageClientAuth only: the admin, and nodes that are
	// etcd clients only.
	UsageClient Usage = iota
	// UsageClientServer is ClientAuth and ServerAuth: etcd members' node and
	// peer certificates, which both serve and dial.
	UsageClientServer
)

// String names u for errors.
func (u Usage) String() string {
	switch u {
	case UsageClient:
		return "client"
	case UsageClientServer:
		return "client+server"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

// extKeyUsages are u's extended key usages, nil for an unknown u.
func (u Usage) extKeyUsages() []x509.ExtKeyUsage {
	switch u {
	case UsageClient:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case UsageClientServer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	return nil
}

// Request is what a leaf certificate says. The signer fills it: a CSR only
// contributes its public key and the CN it asks for, never its SANs or usages.
type Request struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
	// Validity is DefaultValidity when 0; less than MinValidity is an error.
	Validity time.Duration
	// PublicKey must be ECDSA P-256 or Ed25519.
	PublicKey crypto.PublicKey
}

// Issue signs a leaf certificate for req, valid until now+req.Validity and
// from a tenth of that (at most 5 minutes, for clock skew) before now. It fails
// when the CA cannot sign (no key) or when the certificate would outlive the
// CA: a certificate that claims a life its issuer does not have fails
// verification later, far from here.
func (ca *CA) Issue(req Request, now time.Time) (*x509.Certificate, error) {
	if ca == nil || ca.Cert == nil {
		return nil, errors.New("issuing a certificate: no CA certificate")
	}
	if ca.Key == nil {
		return nil, fmt.Errorf("issuing a certificate for %q: this node has the CA certificate %q but not its key, so it cannot sign; issue it on a node that has %s", req.CommonName, ca.Cert.Subject.CommonName, CAKeyFile)
	}
	if err := keyMatches(ca.Cert, ca.Key); err != nil {
		return nil, fmt.Errorf("issuing a certificate for %q: the CA key does not belong to the CA certificate %q: %w", req.CommonName, ca.Cert.Subject.CommonName, err)
	}
	if req.CommonName == "" {
		return nil, errors.New("issuing a certificate: the request has no common name")
	}
	eku := req.Usage.extKeyUsages()
	if eku == nil {
		return nil, fmt.Errorf("issuing a certificate for %q: unknown usage %v", req.CommonName, req.Usage)
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < MinValidity {
		return nil, fmt.Errorf("issuing a certificate for %q: validity %v is shorter than the minimum %v", req.CommonName, validity, MinValidity)
	}
	if err := CheckPublicKey(req.PublicKey); err != nil {
		return nil, fmt.Errorf("issuing a certificate for %q: %w", req.CommonName, err)
	}
	for i, ip := range req.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, fmt.Errorf("issuing a certificate for %q: IP address #%d is not an IP address", req.CommonName, i+1)
		}
	}
	notBefore, notAfter := leafValidity(now, validity)
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("issuing a certificate for %q: it would be valid until %s, after the CA %q expires at %s; ask for a shorter validity or rotate the CA", req.CommonName, notAfter.UTC().Format(time.RFC3339), ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   req.CommonName,
			Organization: req.Organization,
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true, // CA:FALSE, said explicitly
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate for %q with the CA %q: %w", req.CommonName, ca.Cert.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new certificate for %q: %w", req.CommonName, err)
	}
	return cert, nil
}

// leafValidity is a leaf's validity window: backdated by a tenth of its
// validity, at most maxLeafBackdate, for clock skew, and ending validity after
// now so that the caller gets the lifetime it asked for.
func leafValidity(now time.Time, validity time.Duration) (notBefore, notAfter time.Time) {
	return now.Add(-min(maxLeafBackdate, validity/10)), now.Add(validity)
}

// Verify checks that c chains to ca at now and may be used for every one of
// usages (none: any usage).
func Verify(ca, c *x509.Certificate, now time.Time, usages ...x509.ExtKeyUsage) error {
	if ca == nil || c == nil {
		return errors.New("verifying a certificate: missing CA or certificate")
	}
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	// x509.Verify accepts a chain that allows any one of KeyUsages; check
	// each so that all of them are required.
	for _, u := range usages {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return fmt.Errorf("certificate %q against the CA %q: %w", c.Subject.CommonName, ca.Subject.CommonName, err)
		}
	}
	return nil
}

// RenewAt is when c should be renewed, kubelet's certificate manager rule: at
// 70 % to 90 % of its lifetime, jitter (in [0, 1), clamped) choosing where, so
// that nodes whose certificates were issued together do not all renew at once.
func RenewAt(c *x509.Certificate, jitter float64) time.Time {
	if math.IsNaN(jitter) || jitter < 0 {
		jitter = 0
	}
	if jitter > 1 {
		jitter = 1
	}
	total := c.NotAfter.Sub(c.NotBefore)
	// Rounded: 0.7 is not exact in binary, and 70 % should not be a nanosecond early.
	return c.NotBefore.Add(time.Duration(math.Round(float64(total) * (0.7 + 0.2*jitter))))
}

// NewKey makes an ECDSA P-256 private key, the kind every key of this package is.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating an ECDSA P-256 key: %w", err)
	}
	return k, nil
}

// CheckPublicKey says why pub may not be certified, nil when it may: only
// ECDSA P-256 and Ed25519 keys are accepted, so that every certificate of the
// cluster has a key of the same strength and TLS needs no RSA.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("the public key is ECDSA on curve %s; only ECDSA P-256 (prime256v1) and Ed25519 keys are accepted", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("the Ed25519 public key has the wrong size")
		}
		return nil
	case *rsa.PublicKey:
		return fmt.Errorf("the public key is RSA (%d bits); only ECDSA P-256 (prime256v1) and Ed25519 keys are accepted", k.N.BitLen())
	case nil:
		return errors.New("there is no public key")
	}
	return fmt.Errorf("the public key is a %T; only ECDSA P-256 (prime256v1) and Ed25519 keys are accepted", pub)
}

// newSerial is a random positive 128-bit serial number: unique without a
// counter that every signer would have to share.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating a certificate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 7093's method 1: the leftmost 160 bits of the SHA-256 of
// the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding a public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decoding a public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// keyMatches says why k is not the private key of c's public key.
func keyMatches(c *x509.Certificate, k crypto.Signer) error {
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return fmt.Errorf("cannot compare a %T public key", k.Public())
	}
	if !pub.Equal(c.PublicKey) {
		return fmt.Errorf("the private key does not belong to the certificate %q", c.Subject.CommonName)
	}
	return nil
}
