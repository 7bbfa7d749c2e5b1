package credprovider

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is the registry name Docker Hub images are matched against, as
// kubelet normalises them (go-containerregistry says index.docker.io).
const dockerHub = "docker.io"

// legacyDockerHubKey is the auth key docker's config.json uses for Docker Hub;
// kubelet applies it to every Docker Hub image when no other key matches.
const legacyDockerHubKey = "index.docker.io/v1/"

// Match reports whether image, a repository such as
// "123.dkr.ecr.eu-west-1.amazonaws.com/team/app", matches pattern by kubelet's
// rules (pkg/credentialprovider URLsMatch): the host names have the same
// number of dot-separated labels and each pattern label is a filepath.Match
// glob of the image's label ("*" never spans a dot); the ports are equal (none
// matches only none); the pattern's path is a string prefix of the image's.
// It returns an error only for a malformed pattern.
func Match(pattern, image string) (bool, error) {
	p, err := parseSchemeless(pattern)
	if err != nil {
		return false, err
	}
	t, err := parseSchemeless(image)
	if err != nil {
		return false, nil
	}
	pLabels, pPort := splitHost(p)
	tLabels, tPort := splitHost(t)
	if pPort != tPort || len(pLabels) != len(tLabels) || !strings.HasPrefix(t.Path, p.Path) {
		return false, nil
	}
	for i, glob := range pLabels {
		ok, err := filepath.Match(glob, tLabels[i])
		if err != nil {
			return false, fmt.Errorf("pattern %q: host label %q: %w", pattern, glob, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// checkPattern returns why pattern can never be used as a matchImages or auth
// key, or nil.
func checkPattern(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("must not be empty")
	}
	if strings.Contains(pattern, "://") {
		return fmt.Errorf("must not have a scheme")
	}
	u, err := parseSchemeless(pattern)
	if err != nil {
		return err
	}
	if u.Host == "" {
		return fmt.Errorf("has no host")
	}
	labels, _ := splitHost(u)
	for _, l := range labels {
		if _, err := filepath.Match(l, ""); err != nil {
			return fmt.Errorf("host label %q: %w", l, err)
		}
	}
	return nil
}

// parseSchemeless parses host[:port][/path] as kubelet does: as an https URL
// whose scheme is then dropped.
func parseSchemeless(s string) (*url.URL, error) {
	u, err := url.Parse("https://" + s)
	if err != nil {
		return nil, err
	}
	u.Scheme = ""
	return u, nil
}

func splitHost(u *url.URL) (labels []string, port string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

// authKey turns a key of a response's auth map into the pattern it is matched
// as: an http:// or https:// prefix is dropped and so is a path of "/", as in
// kubelet's keyring.
func authKey(loc string) (string, error) {
	loc = strings.TrimPrefix(strings.TrimPrefix(loc, "https://"), "http://")
	u, err := parseSchemeless(loc)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("has no host")
	}
	if u.Path == "" || u.Path == "/" {
		return u.Host, nil
	}
	return u.Host + u.Path, nil
}

// credential is one auth entry of one provider's response.
type credential struct {
	key      string // as authKey returns it
	provider int    // the provider's index in the config: earlier wins a tie
	auth     authn.AuthConfig
}

// pick returns the credential to use for image among creds: kubelet orders
// its keyring by key in reverse lexical order, so that "quay.io/team" comes
// before "quay.io", and uses the first key that matches; the Docker Hub
// legacy key is the fallback for Docker Hub images. Keys that are not valid
// patterns never match.
func pick(creds []credential, image string) (credential, bool) {
	sorted := slices.Clone(creds)
	slices.SortStableFunc(sorted, func(a, b credential) int {
		if c := cmp.Compare(b.key, a.key); c != 0 {
			return c
		}
		return cmp.Compare(a.provider, b.provider)
	})
	for _, c := range sorted {
		if ok, err := Match(c.key, image); err == nil && ok {
			return c, true
		}
	}
	if isDockerHub(image) {
		for _, c := range sorted {
			if c.key == legacyDockerHubKey {
				return c, true
			}
		}
	}
	return credential{}, false
}

// isDockerHub reports whether image (as imageOf returns it) is a Docker Hub one.
func isDockerHub(image string) bool {
	reg, _, _ := strings.Cut(image, "/")
	return reg == dockerHub
}

// imageOf returns the repository r names, without tag or digest and with
// Docker Hub called docker.io, as kubelet hands images to plugins
// ("docker.io/library/nginx"); for a bare registry, its name.
func imageOf(r authn.Resource) string {
	var repo name.Repository
	switch v := r.(type) {
	case name.Registry:
		return registryOf(v.RegistryStr())
	case name.Repository:
		repo = v
	case name.Tag:
		repo = v.Context()
	case name.Digest:
		repo = v.Context()
	default:
		parsed, err := name.NewRepository(r.String(), name.WeakValidation)
		if err != nil {
			return registryOf(r.RegistryStr())
		}
		repo = parsed
	}
	return registryOf(repo.RegistryStr()) + "/" + repo.RepositoryStr()
}

func registryOf(reg string) string {
	if reg == name.DefaultRegistry {
		return dockerHub
	}
	return reg
}
