package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newAdmin(t *testing.T, ca *CA, now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	return issue(t, ca, Request{CommonName: AdminCN, Usage: UsageClient, Validity: validity}, now)
}

func TestCredentialRoundTrip(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, now)
	cert, key := newAdmin(t, ca, now, 0)
	path := filepath.Join(t.TempDir(), "admin.json")
	in := &Credential{
		Cluster:   "c-1234",
		Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"},
		CA:        ca.Cert,
		Cert:      cert,
		Key:       key,
	}
	if err := WriteCredential(path, in); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, path); got != 0o600 {
		t.Errorf("the credential has mode %04o, want 0600", got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"apiVersion", "certificateAuthority", "clientCertificate", "clientKey", "cluster", "endpoints", "kind"}; !slices.Equal(keys, want) {
		t.Errorf("the credential's fields are %v, want %v", keys, want)
	}
	if fields["apiVersion"] != "agentd.io/v1" || fields["kind"] != "ClusterCredential" {
		t.Errorf("apiVersion %v kind %v", fields["apiVersion"], fields["kind"])
	}
	if !strings.HasPrefix(fields["clientKey"].(string), "-----BEGIN PRIVATE KEY-----") {
		t.Error("clientKey is not a PEM PKCS#8 key")
	}

	out, err := LoadCredential(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Cluster != in.Cluster || !slices.Equal(out.Endpoints, in.Endpoints) ||
		!out.CA.Equal(in.CA) || !out.Cert.Equal(in.Cert) || keyMatches(in.Cert, out.Key) != nil {
		t.Errorf("LoadCredential = %+v, want %+v", out, in)
	}
}

// writeCredentialJSON writes a credential file by hand, as WriteCredential
// refuses to write a broken one.
func writeCredentialJSON(t *testing.T, path string, f credentialFile) {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialRefusals(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, now)
	other := newTestCA(t, now)
	cert, key := newAdmin(t, ca, now, 0)
	otherCert, otherKey := newAdmin(t, other, now, 0)
	expired, expiredKey := newAdmin(t, ca, now.Add(-time.Hour), time.Minute)
	keyPEM := func(k crypto.Signer) string {
		p, err := EncodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	good := credentialFile{
		APIVersion:           CredentialAPIVersion,
		Kind:                 CredentialKind,
		Cluster:              "c-1",
		Endpoints:            []string{"https://10.0.0.1:2379"},
		CertificateAuthority: string(EncodeCert(ca.Cert)),
		ClientCertificate:    string(EncodeCert(cert)),
		ClientKey:            keyPEM(key),
	}
	with := func(f func(*credentialFile)) credentialFile { c := good; f(&c); return c }
	for _, tc := range []struct {
		name string
		file credentialFile
		mode os.FileMode
		want string
	}{
		{"certificate of another CA", with(func(c *credentialFile) {
			c.ClientCertificate, c.ClientKey = string(EncodeCert(otherCert)), keyPEM(otherKey)
		}), 0o600, "not valid under the credential's CA"},
		{"key of another certificate", with(func(c *credentialFile) { c.ClientKey = keyPEM(otherKey) }), 0o600, "client key"},
		{"expired", with(func(c *credentialFile) {
			c.ClientCertificate, c.ClientKey = string(EncodeCert(expired)), keyPEM(expiredKey)
		}), 0o600, "expired"},
		{"CA is a leaf", with(func(c *credentialFile) { c.CertificateAuthority = string(EncodeCert(cert)) }), 0o600, "not a CA certificate"},
		{"no cluster", with(func(c *credentialFile) { c.Cluster = "" }), 0o600, "no cluster id"},
		{"wrong kind", with(func(c *credentialFile) { c.Kind = "Config" }), 0o600, `not a "ClusterCredential"`},
		{"no key", with(func(c *credentialFile) { c.ClientKey = "" }), 0o600, "clientKey"},
		{"group-readable", good, 0o640, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "admin.json")
			writeCredentialJSON(t, path, tc.file)
			chmod(t, path, tc.mode)
			_, err := LoadCredential(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadCredential = %v, want an error containing %q", err, tc.want)
			}
			if lines := strings.Split(tc.file.ClientKey, "\n"); len(lines) > 1 && strings.Contains(err.Error(), lines[1]) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}

	t.Run("unknown field", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "admin.json")
		data, _ := json.Marshal(good)
		data = append([]byte(`{"clientKeyPassword":"x",`), data[1:]...)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCredential(path); err == nil || !strings.Contains(err.Error(), "clientKeyPassword") {
			t.Errorf("LoadCredential = %v, want an error naming the unknown field", err)
		}
	})

	t.Run("WriteCredential refuses a certificate of another CA", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "admin.json")
		err := WriteCredential(path, &Credential{Cluster: "c", CA: ca.Cert, Cert: otherCert, Key: otherKey})
		if err == nil {
			t.Fatal("WriteCredential accepted a certificate of another CA")
		}
		if _, statErr := os.Stat(path); !os.IsNotExist(statErr) {
			t.Errorf("a refused WriteCredential left %s: %v", path, statErr)
		}
	})
}
