// Package testregistry runs a real OCI registry on loopback for the tests of image
// pulls: Debian's docker-registry (the distribution registry, /usr/bin/docker-registry,
// installed by hack/install-deps.sh), started by the test with its own config in
// t.TempDir and stopped by pid when the test ends.
//
// Options choose plain HTTP or TLS (a test CA and a server certificate for
// 127.0.0.1 and localhost; the CA file is CAFile) and htpasswd basic auth. Push,
// PushImage and PushIndex put images on it with go-containerregistry, as the
// first user of Options.Users when there are users. For example:
//
//	r := testregistry.Start(t, testregistry.Options{TLS: true, Users: map[string]string{"alice": "s3cret"}})
//	digest := r.Push(t, testutil.TestImage(t), "busybox:1.0")
//	// the pod's image is r.Ref("busybox:1.0"); agentd trusts r.CAFile() for r.Host()
//
// AGENTD_TEST_REGISTRY_BIN names another registry binary with the same `serve
// CONFIG` command line. A missing binary skips the test, except when the CI
// environment variable is set: then it fails, so that CI cannot skip the pull
// tests silently.
package testregistry

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// fallbackBinary is looked for when PATH has no docker-registry; a variable for
// the tests of findBinary.
var fallbackBinary = Binary

// waitTimeout bounds the registry's start and stop: generous, for a busy CI machine.
const waitTimeout = 30 * time.Second

// Options say how the registry serves.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost signed by a
	// CA made for this registry (CAFile); otherwise plain HTTP.
	TLS bool
	// Users, user name → password, turns on htpasswd basic auth: every request,
	// /v2/ included, then needs one of them. Push uses the first name in sort order.
	Users map[string]string
}

// Registry is one running docker-registry. Its methods may be called from any
// goroutine; it stops when the test that started it ends.
type Registry struct {
	host      string            // 127.0.0.1:PORT
	scheme    string            // http or https
	caFile    string            // PEM of the CA; "" without TLS
	user      string            // Push's user; "" without auth
	password  string            // user's password
	transport http.RoundTripper // trusts the CA
	logFile   string            // the registry's stdout and stderr
}

// Start starts a registry for t and waits until it answers on /v2/.
func Start(t testing.TB, o Options) *Registry {
	t.Helper()
	bin := findBinary(t)
	dir := t.TempDir()
	r := &Registry{
		scheme:    "http",
		logFile:   filepath.Join(dir, "registry.log"),
		transport: http.DefaultTransport,
	}

	var tlsFiles *certFiles
	if o.TLS {
		var err error
		if tlsFiles, err = writeCerts(dir); err != nil {
			t.Fatalf("Could not make the test registry's certificates: %v", err)
		}
		r.scheme, r.caFile = "https", tlsFiles.ca
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: tlsFiles.pool, MinVersion: tls.VersionTLS12}
		r.transport = tr
	}
	var htpasswd string
	if len(o.Users) > 0 {
		htpasswd = filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, o.Users); err != nil {
			t.Fatalf("Could not write the test registry's htpasswd file: %v", err)
		}
		names := make([]string, 0, len(o.Users))
		for u := range o.Users {
			names = append(names, u)
		}
		slices.Sort(names)
		r.user, r.password = names[0], o.Users[names[0]]
	}

	// The port was free a moment ago; if another process took it meanwhile the
	// registry exits at once, and another port is tried.
	var lastErr error
	for range 5 {
		u, err := url.Parse(testutil.FreeLoopbackURL(t))
		if err != nil {
			t.Fatal(err)
		}
		r.host = u.Host
		cfg := filepath.Join(dir, "config.yml")
		data, err := configYAML(r.host, filepath.Join(dir, "storage"), tlsFiles, htpasswd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, data, 0o600); err != nil {
			t.Fatal(err)
		}
		lastErr = r.start(t, bin, cfg, len(o.Users) > 0)
		if lastErr == nil {
			return r
		}
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	t.Fatalf("Could not start the test registry (%s serve): %v\n%s", bin, lastErr, r.logTail())
	return nil
}

// errExited: the registry exited before it answered.
var errExited = errors.New("docker-registry exited before it answered on /v2/")

// start runs the registry on cfg, waits for /v2/ to answer, and arranges its stop.
func (r *Registry) start(t testing.TB, bin, cfg string, auth bool) error {
	log, err := os.OpenFile(r.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = registryEnv(os.Environ())
	// Killed with the test binary too (a panic or a -timeout skips t.Cleanup). The
	// kernel sends it when the starting OS thread exits, so Start must not run on a
	// goroutine that locked its thread and ends before the test does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(waitTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	want := http.StatusOK
	if auth {
		want = http.StatusUnauthorized
	}
	client := &http.Client{Transport: r.transport, Timeout: 5 * time.Second}
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, err := get(client, r.URL()+"/v2/")
		if err == nil && code == want {
			break
		}
		if err == nil {
			err = fmt.Errorf("GET /v2/: status %d, want %d", code, want)
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("not ready after %v: %w", waitTimeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("%w (%v)", errExited, waitErr)
		case <-tick.C:
		}
	}

	t.Cleanup(func() {
		select {
		case <-exited:
			t.Errorf("The test registry exited while the test ran: %v\n%s", waitErr, r.logTail())
			return
		default:
		}
		stop()
		if t.Failed() {
			t.Logf("Test registry log:\n%s", r.logTail())
		}
	})
	return nil
}

// get returns the status of a GET of u.
func get(client *http.Client, u string) (int, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// registryEnv is env without REGISTRY_* variables, which would override the config file.
func registryEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "REGISTRY_")
	})
}

// findBinary returns the docker-registry binary: $AGENTD_TEST_REGISTRY_BIN when
// set, else docker-registry from PATH or Binary. When there is none it skips t, or
// fails it when the CI environment variable is set.
func findBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AGENTD_TEST_REGISTRY_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("AGENTD_TEST_REGISTRY_BIN: %v", err)
		}
		return p
	}
	if p, err := exec.LookPath("docker-registry"); err == nil {
		return p
	}
	if _, err := os.Stat(fallbackBinary); err == nil {
		return fallbackBinary
	}
	msg := "docker-registry not found (neither in PATH nor " + fallbackBinary + "): install Debian's docker-registry package with `sudo hack/install-deps.sh`, or set AGENTD_TEST_REGISTRY_BIN"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI is set, so the registry tests may not be skipped", msg)
	}
	t.Skip(msg)
	return ""
}

// configYAML is the registry's config: storage in storageDir, listening on addr
// only, warnings and errors only, deletes allowed, no redirects. (YAML is a
// superset of JSON; the registry reads it with a YAML parser.)
func configYAML(addr, storageDir string, tlsFiles *certFiles, htpasswd string) ([]byte, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	httpCfg := map[string]any{
		"addr":   addr,
		"secret": hex.EncodeToString(secret), // else a warning about a random one
	}
	if tlsFiles != nil {
		httpCfg["tls"] = map[string]any{"certificate": tlsFiles.cert, "key": tlsFiles.key}
	}
	cfg := map[string]any{
		"version": "0.1",
		"log": map[string]any{
			"level":     "warn",
			"accesslog": map[string]any{"disabled": true},
		},
		"storage": map[string]any{
			"filesystem":  map[string]any{"rootdirectory": storageDir},
			"delete":      map[string]any{"enabled": true},
			"redirect":    map[string]any{"disable": true},
			"maintenance": map[string]any{"uploadpurging": map[string]any{"enabled": false}},
		},
		"http": httpCfg,
	}
	if htpasswd != "" {
		cfg["auth"] = map[string]any{"htpasswd": map[string]any{"realm": "agentd-test-registry", "path": htpasswd}}
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// writeHtpasswd writes users as an htpasswd file of bcrypt entries, the only kind
// the registry accepts. The lowest cost keeps each request's check cheap.
func writeHtpasswd(path string, users map[string]string) error {
	var b bytes.Buffer
	for u, p := range users {
		if u == "" || strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("user name %q: must be non-empty without ':' or newlines", u)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// Host is the registry's host:port, 127.0.0.1:PORT, as an image reference starts.
func (r *Registry) Host() string { return r.host }

// URL is http://HOST or https://HOST.
func (r *Registry) URL() string { return r.scheme + "://" + r.host }

// CAFile is the PEM file of the CA that signed the registry's certificate; "" without TLS.
func (r *Registry) CAFile() string { return r.caFile }

// Ref is the image reference of repoAndTag ("busybox:1.0", "team/app@sha256:…") on this registry.
func (r *Registry) Ref(repoAndTag string) string { return r.host + "/" + repoAndTag }

// Transport is an HTTP transport that trusts the registry's CA.
func (r *Registry) Transport() http.RoundTripper { return r.transport }

// RemoteOptions are go-containerregistry options to reach the registry as Push
// does: its CA trusted, Push's user's credentials.
func (r *Registry) RemoteOptions() []remote.Option {
	auth := authn.Anonymous
	if r.user != "" {
		auth = &authn.Basic{Username: r.user, Password: r.password}
	}
	return []remote.Option{remote.WithTransport(r.transport), remote.WithAuth(auth)}
}

// parseRef parses a reference on this registry: "repo:tag" is made HOST/repo:tag.
func (r *Registry) parseRef(t testing.TB, ref string) name.Reference {
	t.Helper()
	if !strings.HasPrefix(ref, r.host+"/") {
		ref = r.Ref(ref)
	}
	opts := []name.Option{name.StrictValidation}
	if r.scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(ref, opts...)
	if err != nil {
		t.Fatalf("Image reference %q: %v", ref, err)
	}
	return parsed
}

// logTail is the end of the registry's log, for a failing test's output.
func (r *Registry) logTail() string {
	data, err := os.ReadFile(r.logFile)
	if err != nil {
		return fmt.Sprintf("(no registry log: %v)", err)
	}
	const max = 8 << 10
	if len(data) > max {
		data = append([]byte("…"), data[len(data)-max:]...)
	}
	return string(data)
}
