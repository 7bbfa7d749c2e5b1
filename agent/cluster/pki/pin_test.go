package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSPKIHashOpenSSL checks the pin against the command kubeadm's
// documentation gives for computing it by hand.
func TestSPKIHashOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	ca := newTestCA(t, testNow)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edLeaf, err := ca.Issue(Request{CommonName: "ed", PublicKey: pub}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	ecLeaf, _ := issue(t, ca, Request{CommonName: "ec"}, testNow)
	for name, c := range map[string][]byte{"ca": EncodeCert(ca.Cert), "ed25519": EncodeCert(edLeaf), "ecdsa": EncodeCert(ecLeaf)} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca.crt")
			if err := os.WriteFile(path, c, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", "-o", "pipefail", "-c",
				`openssl x509 -pubkey -noout -in "$1" | openssl pkey -pubin -outform der | sha256sum`, "bash", path)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl: %v", err)
			}
			want := "sha256:" + strings.Fields(string(out))[0]
			cert, err := ParseCert(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := SPKIHash(cert); got != want {
				t.Errorf("SPKIHash = %s, openssl says %s", got, want)
			}
		})
	}
}

func TestSPKIHashFormat(t *testing.T) {
	ca := newTestCA(t, testNow)
	pin := SPKIHash(ca.Cert)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(pin) {
		t.Errorf("SPKIHash = %q", pin)
	}
	// The pin names the key: a CA re-signed with the same key keeps it.
	again, err := ca.Issue(Request{CommonName: "y", PublicKey: ca.Cert.PublicKey}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if SPKIHash(again) != pin {
		t.Error("two certificates of one key have different pins")
	}
}

func TestParsePin(t *testing.T) {
	ca := newTestCA(t, testNow)
	pin := SPKIHash(ca.Cert)
	hexDigits := strings.TrimPrefix(pin, "sha256:")
	for _, tc := range []struct {
		name string
		in   string
		want string // in the error; "" when it parses
	}{
		{"as written", pin, ""},
		{"upper-case hex", "sha256:" + strings.ToUpper(hexDigits), ""},
		{"upper-case prefix", "SHA256:" + hexDigits, ""},
		{"whitespace around", " " + pin + "\n", ""},
		{"empty", "", "empty"},
		{"no prefix", hexDigits, `no "sha256:" prefix`},
		{"another hash", "md5:0123", `hash "md5" is not supported`},
		{"short", pin[:len(pin)-2], "62 hex digits"},
		{"long", pin + "00", "66 hex digits"},
		{"not hex", "sha256:" + strings.Repeat("g", 64), "not hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, err := ParsePin(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParsePin: %v", err)
				}
				if !MatchesPin(ca.Cert, sum) {
					t.Error("the parsed pin does not match its CA")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "64 hex digits") {
				t.Errorf("ParsePin = %v, want an error containing %q that says what a pin looks like", err, tc.want)
			}
		})
	}
}

func TestMatchesPin(t *testing.T) {
	ca := newTestCA(t, testNow)
	other := newTestCA(t, testNow)
	pin, err := ParsePin(SPKIHash(ca.Cert))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pin  []byte
		want bool
	}{
		{"its own", pin, true},
		{"truncated", pin[:31], false},
		{"nil", nil, false},
	} {
		if got := MatchesPin(ca.Cert, tc.pin); got != tc.want {
			t.Errorf("MatchesPin(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if MatchesPin(other.Cert, pin) {
		t.Error("another CA matches the pin")
	}
}
