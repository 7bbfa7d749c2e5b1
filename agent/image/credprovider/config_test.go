package credprovider

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validYAML = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: ecr-credential-provider
  matchImages: ["*.dkr.ecr.*.amazonaws.com", "registry.example.com:5000/team"]
  defaultCacheDuration: 12h
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  args: ["get-credentials"]
  env: [{name: AWS_PROFILE, value: pulls}]
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Providers[0]
	if p.Name != "ecr-credential-provider" || len(p.MatchImages) != 2 || p.DefaultCacheDuration.Duration != 12*time.Hour ||
		p.Args[0] != "get-credentials" || p.Env[0].Value != "pulls" {
		t.Errorf("decoded %+v", p)
	}
}

func TestParseConfigErrors(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(validYAML, old) {
			t.Fatalf("%q not in the valid config", old)
		}
		return strings.Replace(validYAML, old, new, 1)
	}
	for _, tc := range []struct {
		name, config, want string
	}{
		{"unknown field", edit("  args:", "  argz:"), `providers[0].argz: unknown field`},
		{"field in the wrong case", edit("  args:", "  Args:"), `providers[0].Args: unknown field`},
		{"duplicate field", edit("  args:", "  name: again\n  args:"), `key "name" already set`},
		{"kind", edit("kind: CredentialProviderConfig", "kind: KubeletConfiguration"), `kind: Unsupported value`},
		{"config apiVersion", edit("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1"), `apiVersion: Unsupported value`},
		{"plugin apiVersion", edit("credentialprovider.kubelet.k8s.io/v1", "credentialprovider.kubelet.k8s.io/v1alpha1"),
			`providers[0].apiVersion: Unsupported value`},
		{"no defaultCacheDuration", edit("  defaultCacheDuration: 12h\n", ""), `providers[0].defaultCacheDuration: Required`},
		{"negative defaultCacheDuration", edit("12h", "-1s"), `must not be negative`},
		{"no matchImages", edit(`  matchImages: ["*.dkr.ecr.*.amazonaws.com", "registry.example.com:5000/team"]`+"\n", ""),
			`providers[0].matchImages: Required`},
		{"matchImage with scheme", edit(`"registry.example.com:5000/team"`, `"https://registry.example.com"`),
			`providers[0].matchImages[1]`},
		{"matchImage with a bad glob", edit(`"registry.example.com:5000/team"`, `"[.example.com"`), `providers[0].matchImages[1]`},
		{"matchImage with a port glob", edit(`"registry.example.com:5000/team"`, `"registry.example.com:*"`), `providers[0].matchImages[1]`},
		{"token attributes", edit("  args:", "  tokenAttributes: {serviceAccountTokenAudience: x, requireServiceAccount: false, cacheType: Token}\n  args:"),
			`providers[0].tokenAttributes: Forbidden`},
		{"env name", edit("name: AWS_PROFILE", "name: A=B"), `providers[0].env[0].name`},
		{"duplicate provider", validYAML + strings.SplitAfterN(validYAML, "providers:\n", 2)[1], `providers[1].name: Duplicate`},
		{"no providers", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n", `providers: Required`},
		{"two documents", validYAML + "---\n" + validYAML, ``},
		{"not YAML", "{", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.config))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrInvalidConfig containing %q", err, tc.want)
			}
		})
	}
}

func TestPluginNameMustBeAFileInTheBinDir(t *testing.T) {
	for _, name := range []string{"", "/bin/sh", "../plugin", "sub/plugin", "..", ".", "a..b", `a\b`, "a b", "a\x00b", "a\nb"} {
		cfg := strings.Replace(validYAML, "name: ecr-credential-provider", "name: "+strconvQuote(name), 1)
		_, err := ParseConfig([]byte(cfg))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "providers[0].name") {
			t.Errorf("name %q: error %v, want ErrInvalidConfig naming providers[0].name", name, err)
		}
		if _, err := pluginPath(t.TempDir(), name); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("pluginPath(%q): error %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestPluginPath(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	write("good", 0o755)
	write("not-executable", 0o644)
	write("world-writable", 0o757)
	if err := os.Mkdir(filepath.Join(dir, "a-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "good"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"good":           "",
		"link":           "",
		"missing":        "no such file",
		"not-executable": "not executable",
		"world-writable": "writable by everyone",
		"a-dir":          "not a regular file",
	} {
		p, err := pluginPath(dir, name)
		if want == "" {
			if err != nil || p != filepath.Join(dir, name) {
				t.Errorf("pluginPath(%q) = %q, %v", name, p, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("pluginPath(%q): error %v, want one containing %q", name, err, want)
		}
	}
	if _, err := pluginPath("relative/dir", "good"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative bin dir: error %v", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := pluginPath(dir, "good"); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("world-writable bin dir: error %v", err)
	}
}

// strconvQuote quotes s as a YAML double-quoted scalar.
func strconvQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\x00", `\0`)
	return `"` + r.Replace(s) + `"`
}
