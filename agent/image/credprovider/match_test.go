package credprovider

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, image string
		want           bool
	}{
		{"*.kubernetes.io", "prefix.kubernetes.io/app", true},
		{"prefix.*.io", "prefix.kubernetes.io/app", true},
		{"prefix.kubernetes.*", "prefix.kubernetes.io/app", true},
		{"*-good.kubernetes.io", "prefix-good.kubernetes.io/app", true},
		{"*-good.kubernetes.io", "prefix-bad.kubernetes.io/app", false},
		{"*.kubernetes.io", "kubernetes.io/app", false},     // a glob is exactly one label
		{"*.kubernetes.io", "a.b.kubernetes.io/app", false}, // and never spans a dot
		{"*.dkr.ecr.*.amazonaws.com", "123.dkr.ecr.eu-west-1.amazonaws.com/team/app", true},
		{"*.dkr.ecr.*.amazonaws.com", "123.dkr.ecr.cn-north-1.amazonaws.com.cn/app", false},
		{"*.dkr.ecr.*.amazonaws.com", "evil.com/123.dkr.ecr.eu-west-1.amazonaws.com", false},
		{"registry.io:5000", "registry.io:5000/app", true},
		{"registry.io", "registry.io:5000/app", false}, // ports must be equal,
		{"registry.io:5000", "registry.io/app", false}, // none matches only none
		{"registry.io/team", "registry.io/team/app", true},
		{"registry.io/team", "registry.io/other/app", false},
		{"registry.io/team", "registry.io/teamx/app", true}, // kubelet's path rule is a string prefix
		{"registry.io/team/app", "registry.io/team", false},
		{"docker.io", "docker.io/library/nginx", true},
		{"docker.io", "index.docker.io/library/nginx", false},
		{"*", "localhost/app", true},
		{"*", "registry.io/app", false},
		{"*.*", "registry.io/app", true},
		{"REGISTRY.io", "registry.io/app", false},
	} {
		got, err := Match(tc.pattern, tc.image)
		if err != nil || got != tc.want {
			t.Errorf("Match(%q, %q) = %v, %v; want %v", tc.pattern, tc.image, got, err, tc.want)
		}
	}
	for _, bad := range []string{"[.io", "registry.io:*"} { // no wildcards in ports
		if _, err := Match(bad, "registry.io:5000/app"); err == nil {
			t.Errorf("Match(%q): no error", bad)
		}
	}
}

func TestPick(t *testing.T) {
	cred := func(key string, provider int, user string) credential {
		return credential{key: key, provider: provider, auth: authn.AuthConfig{Username: user}}
	}
	creds := []credential{
		cred("*.example.com", 0, "wildcard"),
		cred("registry.example.com", 0, "host"),
		cred("registry.example.com/team", 0, "team"),
		cred("registry.example.com/team/app", 1, "app"),
		cred("registry.example.com/team/app", 0, "app-first-provider"),
		cred("registry.example.com:5000", 0, "port"),
		cred(legacyDockerHubKey, 0, "hub"),
		cred("docker.io/myorg", 0, "hub-org"),
	}
	for _, tc := range []struct {
		image, want string
	}{
		{"registry.example.com/team/app", "app-first-provider"}, // a tie goes to the earlier provider
		{"registry.example.com/team/other", "team"},
		{"registry.example.com/other", "host"},
		{"mirror.example.com/team/app", "wildcard"},
		{"registry.example.com:5000/team/app", "port"},
		{"docker.io/myorg/app", "hub-org"},
		{"docker.io/library/nginx", "hub"}, // docker's config.json key, kubelet's fallback
		{"quay.io/team/app", ""},
	} {
		got, ok := pick(creds, tc.image)
		if tc.want == "" {
			if ok {
				t.Errorf("pick(%q) = %q, want none", tc.image, got.auth.Username)
			}
			continue
		}
		if !ok || got.auth.Username != tc.want {
			t.Errorf("pick(%q) = %q, %v; want %q", tc.image, got.auth.Username, ok, tc.want)
		}
	}
}

func TestAuthKey(t *testing.T) {
	for in, want := range map[string]string{
		"registry.io":                 "registry.io",
		"https://registry.io/":        "registry.io",
		"http://registry.io:5000/a":   "registry.io:5000/a",
		"https://index.docker.io/v1/": legacyDockerHubKey,
		"*.dkr.ecr.*.amazonaws.com":   "*.dkr.ecr.*.amazonaws.com",
	} {
		if got, err := authKey(in); err != nil || got != want {
			t.Errorf("authKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/path-only", "a b.io"} {
		if got, err := authKey(bad); err == nil {
			t.Errorf("authKey(%q) = %q, want an error", bad, got)
		}
	}
}

func TestImageOf(t *testing.T) {
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	reg, err := name.NewRegistry("index.docker.io")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    authn.Resource
		want string
	}{
		{ref("nginx").Context(), "docker.io/library/nginx"},
		{ref("nginx:1.27").(name.Tag), "docker.io/library/nginx"},
		{ref("index.docker.io/team/app:v3").(name.Tag), "docker.io/team/app"},
		{ref("localhost:5000/app@sha256:" + sha).(name.Digest), "localhost:5000/app"},
		{ref("123.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1").(name.Tag), "123.dkr.ecr.eu-west-1.amazonaws.com/team/app"},
		{reg, "docker.io"},
	} {
		if got := imageOf(tc.r); got != tc.want {
			t.Errorf("imageOf(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
