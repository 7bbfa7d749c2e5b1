package pull

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadHosts(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "registries.yaml", `
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/v2"
  "*":
    endpoint: ["registry.example.com:443"]
configs:
  "registry.example.com:443":
    tls:
      ca_file: /etc/agent/ca.pem
      cert_file: /etc/agent/client.pem
      key_file: /etc/agent/client-key.pem
    auth:
      username: bob
      password: hunter2
  "127.0.0.1:5000":
    tls:
      insecure_skip_verify: true
`)
	h, err := LoadHosts(p)
	if err != nil {
		t.Fatalf("LoadHosts: %v", err)
	}
	want := Hosts{
		Mirrors: map[string]Mirror{
			"docker.io": {Endpoints: []string{"http://127.0.0.1:5000", "https://mirror.example.com/v2"}},
			"*":         {Endpoints: []string{"registry.example.com:443"}},
		},
		Configs: map[string]HostConfig{
			"registry.example.com:443": {CAFile: "/etc/agent/ca.pem", CertFile: "/etc/agent/client.pem", KeyFile: "/etc/agent/client-key.pem", Username: "bob", Password: "hunter2"},
			"127.0.0.1:5000":           {InsecureSkipVerify: true},
		},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("LoadHosts =\n%+v\nwant\n%+v", h, want)
	}

	eps := h.endpoints("docker.io", "index.docker.io")
	var got []string
	for _, e := range eps {
		got = append(got, fmt.Sprintf("%s mirror=%v", e, e.mirror))
	}
	wantEps := []string{"http://127.0.0.1:5000 mirror=true", "https://mirror.example.com mirror=true", "index.docker.io mirror=false"}
	if !reflect.DeepEqual(got, wantEps) {
		t.Errorf("endpoints(docker.io) = %v, want %v", got, wantEps)
	}
	if eps := h.endpoints("quay.io", "quay.io"); len(eps) != 2 || eps[0].host != "registry.example.com:443" {
		t.Errorf("endpoints(quay.io) = %v, want the * mirror, then quay.io", eps)
	}

	if h, err := LoadHosts(filepath.Join(dir, "missing.yaml")); err != nil || len(h.Mirrors)+len(h.Configs) != 0 {
		t.Errorf("missing file: %+v, %v; want an empty configuration", h, err)
	}
}

func TestLoadHostsRejects(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level field", "mirror:\n  docker.io: {}\n", `unknown field "mirror"`},
		{"unknown mirror field", "mirrors:\n  docker.io:\n    endpoints: [http://x]\n", `unknown field "endpoints"`},
		{"unknown tls field", "configs:\n  r:5000:\n    tls:\n      ca: /x\n", `unknown field "ca"`},
		{"bad scheme", "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n", `mirrors["docker.io"].endpoint[0]`},
		{"path", "mirrors:\n  docker.io:\n    endpoint: [\"https://x/prefix\"]\n", "a path (/prefix) is not supported"},
		{"cert without key", "configs:\n  r:5000:\n    tls:\n      cert_file: /c\n", "cert_file and key_file go together"},
		{"not yaml", "mirrors: [", "registries file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "registries.yaml", tc.yaml)
			_, err := LoadHosts(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("LoadHosts: %v, want an error naming %s and containing %q", err, p, tc.want)
			}
		})
	}
}

func TestDefaultDockerConfigPaths(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	got := DefaultDockerConfigPaths("/var/lib/agent")
	want := []string{
		"/var/lib/agent/config.json", "/home/op/.docker/config.json", "/.docker/config.json",
		"/var/lib/agent/.dockercfg", "/home/op/.dockercfg", "/.dockercfg",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultDockerConfigPaths = %v, want %v", got, want)
	}
}

func resolve(t *testing.T, kc authn.Keychain, ref string) authn.AuthConfig {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(r.Context())
	if err != nil {
		t.Fatalf("Resolve(%s): %v", ref, err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return *cfg
}

func TestDockerConfigKeychain(t *testing.T) {
	dir := t.TempDir()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	first := writeFile(t, dir, "root/config.json", fmt.Sprintf(`{
  "auths": {
    "https://index.docker.io/v1/": {"auth": %q},
    "registry.example.com:5000": {"username": "carol", "password": "pw-carol"},
    "registry.example.com:5000/team-b": {"username": "dave", "password": "pw-dave"},
    "*.corp.example": {"identitytoken": "refresh-tok"}
  }
}`, b64("alice:pw-alice")))
	second := writeFile(t, dir, "home/.docker/config.json", `{"auths": {"quay.io": {"username": "erin", "password": "pw-erin"}, "registry.example.com:5000": {"username": "nope", "password": "x"}}}`)
	legacy := writeFile(t, dir, "home/.dockercfg", fmt.Sprintf(`{"legacy.example.com": {"auth": %q, "email": "x@y"}}`, b64("frank:pw-frank")))
	kc := DockerConfigKeychain(filepath.Join(dir, "missing/config.json"), first, second, legacy)

	for _, tc := range []struct {
		ref  string
		want authn.AuthConfig
	}{
		{"nginx", authn.AuthConfig{Username: "alice", Password: "pw-alice"}},
		{"docker.io/team/app:1", authn.AuthConfig{Username: "alice", Password: "pw-alice"}},
		{"registry.example.com:5000/team-a/app", authn.AuthConfig{Username: "carol", Password: "pw-carol"}},
		{"registry.example.com:5000/team-b/app", authn.AuthConfig{Username: "dave", Password: "pw-dave"}},
		{"registry.example.com/app", authn.AuthConfig{}}, // the port must match
		{"r1.corp.example/app", authn.AuthConfig{IdentityToken: "refresh-tok"}},
		{"quay.io/x/y", authn.AuthConfig{Username: "erin", Password: "pw-erin"}},
		{"legacy.example.com/x", authn.AuthConfig{Username: "frank", Password: "pw-frank"}},
		{"ghcr.io/x/y", authn.AuthConfig{}},
	} {
		if got := resolve(t, kc, tc.ref); got != tc.want {
			t.Errorf("credentials for %s = %+v, want %+v", tc.ref, got, tc.want)
		}
	}

	broken := writeFile(t, dir, "broken/config.json", `{"auths": {"x.io": {"auth": "c2VjcmV0LXB3`)
	r, _ := name.ParseReference("x.io/a")
	_, err := DockerConfigKeychain(broken).Resolve(r.Context())
	if err == nil || !strings.Contains(err.Error(), broken) || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("broken file: %v, want an error naming the file and none of its content", err)
	}
	numeric := writeFile(t, dir, "numeric/config.json", `{"auths": {"x.io": {"username": "u", "password": 987654321}}}`)
	_, err = DockerConfigKeychain(numeric).Resolve(r.Context())
	if err == nil || strings.Contains(err.Error(), "987654321") || !strings.Contains(err.Error(), "password") {
		t.Errorf("numeric password: %v, want an error naming the field without its value", err)
	}
	badAuth := writeFile(t, dir, "badauth/config.json", `{"auths": {"x.io": {"auth": "%%%not-base64-secret"}}}`)
	_, err = DockerConfigKeychain(badAuth).Resolve(r.Context())
	if err == nil || strings.Contains(err.Error(), "not-base64-secret") {
		t.Errorf("bad auth: %v, want an error without the value", err)
	}
}

func TestReason(t *testing.T) {
	terr := func(status int, code transport.ErrorCode) error {
		e := &transport.Error{StatusCode: status}
		if code != "" {
			e.Errors = []transport.Diagnostic{{Code: code}}
		}
		return fmt.Errorf("pulling x: %w", e)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("something"), ""},
		{terr(401, transport.UnauthorizedErrorCode), "unauthorized"},
		{terr(403, transport.DeniedErrorCode), "unauthorized"},
		{terr(401, ""), "unauthorized"},
		{terr(404, transport.NameUnknownErrorCode), "not found"},
		{terr(404, ""), "not found"},
		{terr(404, transport.ManifestUnknownErrorCode), "manifest unknown"},
		{terr(500, ""), ""},
		{fmt.Errorf("get: %w", x509.UnknownAuthorityError{}), "TLS"},
		{fmt.Errorf("get: %w", x509.HostnameError{Host: "x"}), "TLS"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("layer x: no byte received for 1m: %w", ErrNoProgress), "no progress"},
		{fmt.Errorf("index: %w: ...", ErrNoPlatform), "no matching platform"},
		{&timeoutErr{}, "timeout"},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }
