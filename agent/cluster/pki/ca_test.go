package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNodeCN(t *testing.T) {
	if got := NodeCN("worker-1"); got != "node:worker-1" {
		t.Errorf("NodeCN(worker-1) = %q", got)
	}
	for _, tc := range []struct {
		cn   string
		node string
		ok   bool
	}{
		{"node:worker-1", "worker-1", true},
		{NodeCN("a:b"), "a:b", true},
		{"node:", "", false},
		{AdminCN, "", false},
		{PeerCN, "", false},
		{"Node:x", "", false},
		{"", "", false},
	} {
		node, ok := NodeFromCN(tc.cn)
		if node != tc.node || ok != tc.ok {
			t.Errorf("NodeFromCN(%q) = %q, %v; want %q, %v", tc.cn, node, ok, tc.node, tc.ok)
		}
	}
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t, testNow)
	c := ca.Cert
	if c.Subject.CommonName != "test CA" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v MaxPathLen=%d MaxPathLenZero=%v; want a CA with path length 0",
			c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Errorf("KeyUsage = %b, want %b", c.KeyUsage, want)
	}
	if len(c.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId has %d bytes, want 20", len(c.SubjectKeyId))
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
	}
	if !c.NotBefore.Equal(testNow.Add(-time.Hour)) || !c.NotAfter.Equal(testNow.Add(CAValidity)) {
		t.Errorf("valid %v to %v; want %v to %v", c.NotBefore, c.NotAfter, testNow.Add(-time.Hour), testNow.Add(CAValidity))
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("the CA is not self-signed: %v", err)
	}
	if err := keyMatches(c, ca.Key); err != nil {
		t.Error(err)
	}

	def, err := NewCA("", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if def.Cert.Subject.CommonName != DefaultCACommonName {
		t.Errorf("default CN = %q", def.Cert.Subject.CommonName)
	}
	if def.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs have the same serial")
	}
}

// TestIssueUsages verifies each usage's chain with x509.Verify for the key
// usages a certificate must and must not allow.
func TestIssueUsages(t *testing.T) {
	ca := newTestCA(t, testNow)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, tc := range []struct {
		usage      Usage
		wantEKU    []x509.ExtKeyUsage
		clientAuth bool
		serverAuth bool
	}{
		{UsageClient, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, true, false},
		{UsageClientServer, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, true, true},
	} {
		t.Run(tc.usage.String(), func(t *testing.T) {
			c, _ := issue(t, ca, Request{CommonName: "x", Usage: tc.usage}, testNow)
			if !slices.Equal(c.ExtKeyUsage, tc.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", c.ExtKeyUsage, tc.wantEKU)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %b, want DigitalSignature only", c.KeyUsage)
			}
			if c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA=%v BasicConstraintsValid=%v; want an explicit CA:FALSE", c.IsCA, c.BasicConstraintsValid)
			}
			for _, u := range []struct {
				eku  x509.ExtKeyUsage
				want bool
			}{{x509.ExtKeyUsageClientAuth, tc.clientAuth}, {x509.ExtKeyUsageServerAuth, tc.serverAuth}} {
				_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{u.eku}})
				if (err == nil) != u.want {
					t.Errorf("x509.Verify for EKU %v: %v; want ok=%v", u.eku, err, u.want)
				}
			}
			both := Verify(ca.Cert, c, testNow, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth)
			if (both == nil) != (tc.clientAuth && tc.serverAuth) {
				t.Errorf("Verify for client and server: %v", both)
			}
		})
	}
}

func TestIssueFields(t *testing.T) {
	ca := newTestCA(t, testNow)
	ips := []net.IP{net.ParseIP("10.0.0.7").To4(), net.ParseIP("fd00::7")}
	c, _ := issue(t, ca, Request{
		CommonName:   NodeCN("worker-1"),
		Organization: []string{"agentd"},
		DNSNames:     []string{"worker-1", "worker-1.example"},
		IPs:          ips,
		Usage:        UsageClientServer,
	}, testNow)
	if c.Subject.CommonName != "node:worker-1" || !slices.Equal(c.Subject.Organization, []string{"agentd"}) {
		t.Errorf("subject = %v", c.Subject)
	}
	if !slices.Equal(c.DNSNames, []string{"worker-1", "worker-1.example"}) {
		t.Errorf("DNSNames = %v", c.DNSNames)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(ips[0]) || !c.IPAddresses[1].Equal(ips[1]) {
		t.Errorf("IPAddresses = %v, want %v", c.IPAddresses, ips)
	}
	for _, host := range []string{"worker-1.example", "10.0.0.7", "fd00::7"} {
		if err := c.VerifyHostname(host); err != nil {
			t.Errorf("VerifyHostname(%s): %v", host, err)
		}
	}
	if err := c.VerifyHostname("worker-2"); err == nil {
		t.Error("VerifyHostname(worker-2) succeeded for a certificate of worker-1")
	}
	if string(c.AuthorityKeyId) != string(ca.Cert.SubjectKeyId) {
		t.Errorf("AuthorityKeyId %x, want the CA's SubjectKeyId %x", c.AuthorityKeyId, ca.Cert.SubjectKeyId)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
	}
	c2, _ := issue(t, ca, Request{CommonName: AdminCN}, testNow)
	if c2.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two certificates have the same serial")
	}
}

func TestIssueValidity(t *testing.T) {
	ca := newTestCA(t, testNow)
	for _, tc := range []struct {
		name     string
		validity time.Duration
		backdate time.Duration
		lifetime time.Duration
	}{
		{"default", 0, 5 * time.Minute, DefaultValidity},
		{"an hour, backdated 5m not 6m", time.Hour, 5 * time.Minute, time.Hour},
		{"30m, backdated a tenth", 30 * time.Minute, 3 * time.Minute, 30 * time.Minute},
		{"minimum", MinValidity, time.Second, MinValidity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := issue(t, ca, Request{CommonName: "x", Validity: tc.validity}, testNow)
			if want := testNow.Add(-tc.backdate); !c.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", c.NotBefore, want)
			}
			if want := testNow.Add(tc.lifetime); !c.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", c.NotAfter, want)
			}
			// A node whose clock is a little behind accepts it.
			if err := Verify(ca.Cert, c, testNow.Add(-tc.backdate/2)); err != nil {
				t.Errorf("not valid shortly before its issue: %v", err)
			}
			if err := Verify(ca.Cert, c, c.NotAfter.Add(time.Second)); err == nil {
				t.Error("valid after NotAfter")
			}
		})
	}
}

func TestIssueRefusals(t *testing.T) {
	ca := newTestCA(t, testNow)
	other := newTestCA(t, testNow)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ok := Request{CommonName: "x", PublicKey: key.Public()}
	with := func(f func(*Request)) Request { r := ok; f(&r); return r }
	lateNow := ca.Cert.NotAfter.Add(-DefaultValidity + time.Hour)
	for _, tc := range []struct {
		name string
		ca   *CA
		req  Request
		now  time.Time
		want string // in the error
	}{
		{"no CA key", &CA{Cert: ca.Cert}, ok, testNow, "cannot sign"},
		{"CA key of another CA", &CA{Cert: ca.Cert, Key: other.Key}, ok, testNow, "does not belong"},
		{"past the CA's NotAfter", ca, ok, lateNow, "after the CA"},
		{"validity under the minimum", ca, with(func(r *Request) { r.Validity = MinValidity - time.Second }), testNow, "shorter than the minimum"},
		{"negative validity", ca, with(func(r *Request) { r.Validity = -time.Hour }), testNow, "shorter than the minimum"},
		{"no CN", ca, with(func(r *Request) { r.CommonName = "" }), testNow, "no common name"},
		{"unknown usage", ca, with(func(r *Request) { r.Usage = 7 }), testNow, "unknown usage"},
		{"no public key", ca, with(func(r *Request) { r.PublicKey = nil }), testNow, "no public key"},
		{"P-384", ca, with(func(r *Request) { r.PublicKey = p384.Public() }), testNow, "curve P-384"},
		{"RSA", ca, with(func(r *Request) { r.PublicKey = rsaKey.Public() }), testNow, "RSA (2048 bits)"},
		{"bad IP", ca, with(func(r *Request) { r.IPs = []net.IP{{1, 2, 3}} }), testNow, "not an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.ca.Issue(tc.req, tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue = %v, %v; want an error containing %q", c, err, tc.want)
			}
		})
	}

	// Up to the CA's NotAfter is fine.
	r := ok
	r.Validity = ca.Cert.NotAfter.Sub(lateNow)
	if _, err := ca.Issue(r, lateNow); err != nil {
		t.Errorf("Issue ending with the CA: %v", err)
	}
}

func TestIssueEd25519(t *testing.T) {
	ca := newTestCA(t, testNow)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(Request{CommonName: "x", PublicKey: pub}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ca.Cert, c, testNow, x509.ExtKeyUsageClientAuth); err != nil {
		t.Error(err)
	}
}

func TestRenewAt(t *testing.T) {
	start := testNow
	c := &x509.Certificate{NotBefore: start, NotAfter: start.Add(100 * time.Hour)}
	for _, tc := range []struct {
		jitter float64
		want   time.Duration
	}{
		{0, 70 * time.Hour},
		{0.5, 80 * time.Hour},
		{1, 90 * time.Hour},
		{-1, 70 * time.Hour},
		{7, 90 * time.Hour},
		{math.NaN(), 70 * time.Hour},
	} {
		if got := RenewAt(c, tc.jitter).Sub(start); got != tc.want {
			t.Errorf("RenewAt(jitter %v) at %v of 100h, want %v", tc.jitter, got, tc.want)
		}
	}
	// Just under 1, as a rand.Float64 may be: before 90 %, after 89.9 %.
	got := RenewAt(c, math.Nextafter(1, 0)).Sub(start)
	if got > 90*time.Hour || got < 89*time.Hour+54*time.Minute {
		t.Errorf("RenewAt(jitter→1) at %v of 100h, want just under 90h", got)
	}
}
