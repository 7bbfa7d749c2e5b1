package credprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
)

// testPlugin is testdata/plugin built by TestMain.
var testPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "credprovider-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "plugin")
	out, err := exec.Command("go", "build", "-o", testPlugin, "./testdata/plugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the test plugin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// secret is the password test plugins return; no error or log line may hold it.
const secret = "s3cr3t-pa55"

// testProvider is one provider of a test config, run by the test plugin.
type testProvider struct {
	name       string // default "plugin"
	match      []string
	defaultTTL time.Duration
	env        map[string]string // CREDP_* settings of the test plugin
	args       []string
}

// rig is a Keychain over the test plugin with a fake clock and captured logs.
type rig struct {
	kc     *Keychain
	binDir string
	counts string // directory of the per-provider run counts
	mu     sync.Mutex
	now    time.Time    // guarded by mu
	logs   bytes.Buffer // guarded by mu
}

func newRig(t *testing.T, timeout time.Duration, providers ...testProvider) *rig {
	t.Helper()
	r := &rig{binDir: t.TempDir(), counts: t.TempDir(), now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg := &kubeletconfigv1.CredentialProviderConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: ConfigAPIVersion, Kind: ConfigKind},
	}
	for _, p := range providers {
		if p.name == "" {
			p.name = "plugin"
		}
		if err := os.Symlink(testPlugin, filepath.Join(r.binDir, p.name)); err != nil {
			t.Fatal(err)
		}
		cp := kubeletconfigv1.CredentialProvider{
			Name:                 p.name,
			MatchImages:          p.match,
			DefaultCacheDuration: &metav1.Duration{Duration: p.defaultTTL},
			APIVersion:           PluginAPIVersion,
			Args:                 p.args,
			Env:                  []kubeletconfigv1.ExecEnvVar{{Name: "CREDP_COUNT", Value: filepath.Join(r.counts, p.name)}},
		}
		for k, v := range p.env {
			cp.Env = append(cp.Env, kubeletconfigv1.ExecEnvVar{Name: k, Value: v})
		}
		cfg.Providers = append(cfg.Providers, cp)
	}
	// Through the file, as an operator configures it.
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "credential-providers.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	log := funcr.New(func(prefix, args string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		fmt.Fprintln(&r.logs, prefix, args)
	}, funcr.Options{Verbosity: 9})
	r.kc, err = Load(file, r.binDir, Options{Log: log, Timeout: timeout, Now: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("the logs hold the secret:\n%s", r.logs.String())
		}
	})
	return r
}

func (r *rig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *rig) advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = r.now.Add(d)
}

// runs is how often provider's plugin has run.
func (r *rig) runs(t *testing.T, provider string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.counts, provider))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// resolve returns the credentials the keychain gives ref, or its error.
func (r *rig) resolve(t *testing.T, ref string) (*authn.AuthConfig, error) {
	t.Helper()
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.kc.Resolve(parsed.Context())
	if err != nil {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error holds the secret: %v", err)
		}
		return nil, err
	}
	if a == authn.Anonymous {
		return nil, nil
	}
	return a.Authorization()
}

// user resolves ref and returns the user name it gets, "" for anonymous.
func (r *rig) user(t *testing.T, ref string) string {
	t.Helper()
	cfg, err := r.resolve(t, ref)
	if err != nil {
		t.Fatalf("resolving %s: %v", ref, err)
	}
	if cfg == nil {
		return ""
	}
	if cfg.Password != secret {
		t.Errorf("resolving %s: password %q, want the plugin's", ref, cfg.Password)
	}
	return cfg.Username
}

// response is a plugin response as CREDP_RESPONSE takes it.
func response(cacheKeyType, cacheDuration string, auth map[string]string) string {
	m := map[string]any{"apiVersion": PluginAPIVersion, "kind": "CredentialProviderResponse", "cacheKeyType": cacheKeyType}
	if cacheDuration != "" {
		m["cacheDuration"] = cacheDuration
	}
	a := map[string]any{}
	for key, user := range auth {
		a[key] = map[string]string{"username": user, "password": secret}
	}
	m["auth"] = a
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestResolvePicksTheMostSpecificAuth(t *testing.T) {
	r := newRig(t, 0, testProvider{
		match: []string{"*.example.com", "*.example.com/team"},
		env: map[string]string{"CREDP_RESPONSE": response("Global", "", map[string]string{
			"*.example.com":                     "any-host",
			"registry.example.com":              "registry",
			"https://registry.example.com/team": "team",
		})},
		defaultTTL: time.Hour,
		args:       []string{"get-credentials", "--quiet"},
	})
	for ref, want := range map[string]string{
		"registry.example.com/team/app:v3": "team",
		"registry.example.com/other:v1":    "registry",
		"mirror.example.com/team/app":      "any-host",
		"example.com/app":                  "", // not matched by matchImages: the plugin is not run
		"quay.io/team/app":                 "",
	} {
		if got := r.user(t, ref); got != want {
			t.Errorf("%s: user %q, want %q", ref, got, want)
		}
	}
	if n := r.runs(t, "plugin"); n != 1 {
		t.Errorf("plugin ran %d times, want once (a Global answer is cached)", n)
	}
}

func TestRequestAndEnvironment(t *testing.T) {
	// The host's environment reaches the plugin; the provider's env wins over it.
	t.Setenv("CREDP_RESPONSE", response("Image", "0s", map[string]string{"docker.io": "$IMAGE", "registry.example.com:5000": "$IMAGE"}))
	t.Setenv("CREDP_MODE", "fail")
	r := newRig(t, 0, testProvider{
		match: []string{"docker.io", "registry.example.com:5000"},
		env:   map[string]string{"CREDP_MODE": "ok", "CREDP_ARGS": "get-credentials"},
		args:  []string{"get-credentials"},
	})
	// Plugins get the repository, Docker Hub spelt as kubelet does.
	for ref, want := range map[string]string{
		"nginx:1.27":                             "docker.io/library/nginx",
		"index.docker.io/team/app@sha256:" + sha: "docker.io/team/app",
		"registry.example.com:5000/app:v1":       "registry.example.com:5000/app",
	} {
		if got := r.user(t, ref); got != want {
			t.Errorf("%s: the plugin was asked for %q, want %q", ref, got, want)
		}
	}
}

func TestCache(t *testing.T) {
	images := []string{"a.example.com/x/one", "a.example.com/x/one", "a.example.com/x/two", "b.example.com/x/one"}
	for _, tc := range []struct {
		name          string
		cacheKeyType  string
		cacheDuration string // "" leaves the response's out: defaultCacheDuration applies
		defaultTTL    time.Duration
		wantRuns      int // for images
	}{
		{"per image", "Image", "1h", 0, 3},
		{"per registry", "Registry", "1h", 0, 2},
		{"global", "Global", "1h", 0, 1},
		{"default duration", "Global", "", time.Hour, 1},
		{"zero duration turns caching off", "Global", "0s", time.Hour, 4},
		{"no duration and a zero default", "Global", "", 0, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 0, testProvider{
				match:      []string{"*.example.com"},
				defaultTTL: tc.defaultTTL,
				env:        map[string]string{"CREDP_RESPONSE": response(tc.cacheKeyType, tc.cacheDuration, map[string]string{"*.example.com": "u"})},
			})
			for _, img := range images {
				if got := r.user(t, img); got != "u" {
					t.Fatalf("%s: user %q", img, got)
				}
			}
			if n := r.runs(t, "plugin"); n != tc.wantRuns {
				t.Errorf("plugin ran %d times for %v, want %d", n, images, tc.wantRuns)
			}
			// Within the duration the cache answers; after it the plugin runs again.
			before := r.runs(t, "plugin")
			r.advance(59 * time.Minute)
			r.user(t, images[0])
			if tc.wantRuns < len(images) && r.runs(t, "plugin") != before {
				t.Errorf("plugin ran again within the cache duration")
			}
			before = r.runs(t, "plugin")
			r.advance(time.Minute)
			r.user(t, images[0])
			if r.runs(t, "plugin") != before+1 {
				t.Errorf("plugin did not run again once the cache duration passed")
			}
		})
	}
}

func TestConcurrentLookupsRunThePluginOnce(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	if err := syscall.Mkfifo(release, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, 30*time.Second, testProvider{
		match: []string{"registry.example.com"},
		env: map[string]string{
			"CREDP_MODE":     "wait",
			"CREDP_RELEASE":  release,
			"CREDP_RESPONSE": response("Image", "0s", map[string]string{"registry.example.com": "u"}), // no cache: only the shared run dedups
		},
	})
	const callers = 8
	users := make(chan string, callers)
	for range callers {
		go func() {
			cfg, err := r.resolve(t, "registry.example.com/app:v1")
			switch {
			case err != nil:
				users <- err.Error()
			case cfg == nil:
				users <- "anonymous"
			default:
				users <- cfg.Username
			}
		}()
	}
	p := r.kc.providers[0]
	waitFor(t, "every caller to wait on one plugin run", func() bool {
		return p.waiting.Load() == callers && r.runs(t, "plugin") == 1
	})
	w, err := os.OpenFile(release, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	for range callers {
		if u := <-users; u != "u" {
			t.Errorf("a caller got %q", u)
		}
	}
	if n := r.runs(t, "plugin"); n != 1 {
		t.Errorf("plugin ran %d times for %d concurrent lookups, want once", n, callers)
	}
}

func TestTimeout(t *testing.T) {
	r := newRig(t, 500*time.Millisecond, testProvider{
		match: []string{"registry.example.com"},
		env:   map[string]string{"CREDP_MODE": "hang"},
	})
	start := time.Now()
	_, err := r.resolve(t, "registry.example.com/app")
	if !errors.Is(err, ErrPlugin) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `provider "plugin"`) {
		t.Fatalf("error %v, want ErrPlugin and DeadlineExceeded naming the provider", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Resolve took %s with a 500ms timeout", d)
	}
	// The plugin was killed and reaped, not left behind.
	pid := pluginPid(t, r)
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin pid %d after the timeout: kill 0 says %v, want ESRCH", pid, err)
	}
}

func TestResolveContextCanceled(t *testing.T) {
	// The timeout must outlast the time to see the plugin start on a busy
	// machine; the test waits for it at the end, for the plugin to be gone.
	r := newRig(t, 5*time.Second, testProvider{
		match: []string{"registry.example.com"},
		env:   map[string]string{"CREDP_MODE": "hang"},
	})
	ref, err := name.NewRepository("registry.example.com/app")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, "the plugin to start", func() bool { return r.runs(t, "plugin") == 1 })
		cancel()
	}()
	if _, err := r.kc.ResolveContext(ctx, ref); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	// The run goes on for other callers until its own timeout kills it.
	pid := pluginPid(t, r)
	waitFor(t, "the plugin to be killed at its timeout", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

// pluginPid is the pid of the first run of r's plugin "plugin".
func pluginPid(t *testing.T, r *rig) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.counts, "plugin"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestBadResponses(t *testing.T) {
	valid := response("Image", "", map[string]string{"registry.example.com": "u"})
	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     error
		contains string
	}{
		{"plugin fails", map[string]string{"CREDP_MODE": "fail"}, ErrPlugin, "stderr: plugin: token endpoint said 403 for registry.example.com/app"},
		{"garbage on stdout", map[string]string{"CREDP_MODE": "garbage"}, ErrBadResponse, "not JSON"},
		{"empty stdout", map[string]string{"CREDP_RESPONSE": ""}, ErrBadResponse, "not JSON"},
		{"wrong apiVersion", map[string]string{"CREDP_RESPONSE": strings.Replace(valid, PluginAPIVersion, "credentialprovider.kubelet.k8s.io/v1beta1", 1)},
			ErrBadResponse, `apiVersion "credentialprovider.kubelet.k8s.io/v1beta1", want "credentialprovider.kubelet.k8s.io/v1"`},
		{"wrong kind", map[string]string{"CREDP_RESPONSE": strings.Replace(valid, "CredentialProviderResponse", "CredentialProviderRequest", 1)},
			ErrBadResponse, `kind "CredentialProviderRequest"`},
		{"unknown field", map[string]string{"CREDP_RESPONSE": strings.Replace(valid, `"password"`, `"pasword"`, 1)},
			ErrBadResponse, `unknown field "auth.registry.example.com.pasword"`},
		{"wrong type", map[string]string{"CREDP_RESPONSE": `{"apiVersion":"` + PluginAPIVersion + `","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{"registry.example.com":{"username":"u","password":73757501}}}`},
			ErrBadResponse, "wrong type"},
		{"bad duration", map[string]string{"CREDP_RESPONSE": strings.Replace(valid, `"cacheKeyType"`, `"cacheDuration":"`+secret+`","cacheKeyType"`, 1)},
			ErrBadResponse, "wrong type"}, // time.ParseDuration's error would quote the value
		{"bad cacheKeyType", map[string]string{"CREDP_RESPONSE": strings.Replace(valid, `"Image"`, `"Pod"`, 1)},
			ErrBadResponse, `cacheKeyType "Pod"`},
		{"truncated", map[string]string{"CREDP_RESPONSE": valid[:len(valid)-10]}, ErrBadResponse, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 0, testProvider{match: []string{"registry.example.com"}, defaultTTL: time.Hour, env: tc.env})
			_, err := r.resolve(t, "registry.example.com/app:v1")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %v, want %v containing %q", err, tc.want, tc.contains)
			}
			if strings.Contains(err.Error(), "73757501") || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error repeats the response: %v", err)
			}
			// A failure is not cached.
			r.resolve(t, "registry.example.com/app:v1")
			if n := r.runs(t, "plugin"); n != 2 {
				t.Errorf("plugin ran %d times for two lookups after a failure, want 2", n)
			}
		})
	}
}

func TestFailingProviderDoesNotHideAnother(t *testing.T) {
	r := newRig(t, 0,
		testProvider{name: "broken", match: []string{"*.example.com"}, env: map[string]string{"CREDP_MODE": "fail"}},
		testProvider{name: "working", match: []string{"registry.example.com"},
			env: map[string]string{"CREDP_RESPONSE": response("Image", "", map[string]string{"registry.example.com": "u"})}},
	)
	if got := r.user(t, "registry.example.com/app"); got != "u" {
		t.Errorf("user %q, want the working provider's", got)
	}
	// Where only the broken provider applies, its failure is the answer.
	if _, err := r.resolve(t, "other.example.com/app"); !errors.Is(err, ErrPlugin) || !strings.Contains(err.Error(), `"broken"`) {
		t.Errorf("error %v, want the broken provider's", err)
	}
}

func TestHostileNameRunsNothing(t *testing.T) {
	// A plugin one level above the bin dir that would count its runs.
	root := t.TempDir()
	binDir := filepath.Join(root, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testPlugin, filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	count := filepath.Join(root, "count")
	for _, n := range []string{"../evil", filepath.Join(root, "evil"), "..", "."} {
		cfg := &kubeletconfigv1.CredentialProviderConfig{
			TypeMeta: metav1.TypeMeta{APIVersion: ConfigAPIVersion, Kind: ConfigKind},
			Providers: []kubeletconfigv1.CredentialProvider{{
				Name: n, MatchImages: []string{"*"}, DefaultCacheDuration: &metav1.Duration{},
				APIVersion: PluginAPIVersion, Env: []kubeletconfigv1.ExecEnvVar{{Name: "CREDP_COUNT", Value: count}},
			}},
		}
		if _, err := New(cfg, binDir, Options{Log: logr.Discard()}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "providers[0].name") {
			t.Errorf("name %q: error %v, want ErrInvalidConfig naming providers[0].name", n, err)
		}
	}
	if _, err := os.Stat(count); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the plugin outside the bin dir ran (stat count: %v)", err)
	}
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
