package pull

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// DefaultDockerConfigPaths are the docker config files kubelet reads, in
// order: <root>/config.json, then $HOME/.docker/config.json (and the legacy
// .dockercfg beside them).
//
// As kubelet's credentialprovider (config.go) searches them: config.json in
// <root>, $HOME/.docker and /.docker, then .dockercfg in <root>, $HOME and /.
// kubelet also looks in its working directory; agentd does not, a daemon's
// working directory being no place for credentials.
func DefaultDockerConfigPaths(root string) []string {
	home, _ := os.UserHomeDir()
	var out []string
	add := func(dir, file string) {
		if dir == "" {
			return
		}
		p := filepath.Join(dir, file)
		for _, q := range out {
			if q == p {
				return
			}
		}
		out = append(out, p)
	}
	add(root, "config.json")
	add(filepath.Join(home, ".docker"), "config.json")
	add("/.docker", "config.json")
	add(root, ".dockercfg")
	add(home, ".dockercfg")
	add("/", ".dockercfg")
	return out
}

// DockerConfigKeychain is a Keychain over docker config files (the first that
// has credentials for a registry wins). Missing files are skipped.
//
// A config.json is {"auths": {"<registry>": {...}}}, a .dockercfg (a file
// named so) the "auths" map itself. An entry has "auth" (base64 of
// user:password) or "username" and "password", and may have
// "identitytoken" (an OAuth2 refresh token, traded for a registry token
// through the bearer flow). Registry keys are matched as kubelet matches
// them: the scheme and "/v1/" suffixes are ignored ("https://index.docker.io/v1/"
// is docker.io), "*" globs one DNS label ("*.example.com"), a port must
// match, and a key with a path matches the repositories under it; the most
// specific key wins. The files are read at each Resolve, so edits apply to
// the next pull. A file that cannot be parsed fails Resolve with an error
// that names the file but none of its content.
func DockerConfigKeychain(paths ...string) authn.Keychain {
	return &dockerConfigKeychain{paths: append([]string(nil), paths...)}
}

type dockerConfigKeychain struct {
	paths []string
}

// dockerConfigEntry is one registry's credentials.
type dockerConfigEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	Email         string `json:"email,omitempty"`
}

func (k *dockerConfigKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	reg := r.RegistryStr()
	repo := strings.TrimPrefix(r.String(), reg+"/")
	if repo == r.String() {
		repo = ""
	}
	for _, p := range k.paths {
		auths, err := readDockerConfig(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		best, bestScore := "", -1
		for key := range auths {
			if score := matchRegistryKey(key, reg, repo); score > bestScore {
				best, bestScore = key, score
			}
		}
		if bestScore < 0 {
			continue
		}
		cfg, err := auths[best].authConfig()
		if err != nil {
			return nil, fmt.Errorf("docker config %s, entry %q: %w", p, best, err)
		}
		return authn.FromConfig(cfg), nil
	}
	return authn.Anonymous, nil
}

// readDockerConfig reads the auths of a config.json or .dockercfg file.
func readDockerConfig(p string) (map[string]dockerConfigEntry, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if filepath.Base(p) == ".dockercfg" {
		var auths map[string]dockerConfigEntry
		if err := json.Unmarshal(data, &auths); err != nil {
			return nil, fmt.Errorf("parsing docker config %s: %s", p, jsonProblem(err))
		}
		return auths, nil
	}
	var f struct {
		Auths map[string]dockerConfigEntry `json:"auths"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing docker config %s: %s", p, jsonProblem(err))
	}
	return f.Auths, nil
}

// jsonProblem describes a JSON error by where it is, never by what is
// there: encoding/json quotes numbers ("cannot unmarshal number 1234…") and
// characters of the input, which may be a password's.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s is not a %s (at byte %d)", te.Field, te.Type, te.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || err.Error() == "unexpected end of JSON input":
		return "not valid JSON (it ends early)"
	}
	return "not valid JSON"
}

func (e dockerConfigEntry) authConfig() (authn.AuthConfig, error) {
	cfg := authn.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return authn.AuthConfig{}, errors.New(`"auth" is not base64`)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return authn.AuthConfig{}, errors.New(`"auth" is not base64 of user:password`)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return cfg, nil
}

// dockerHubHosts are the names Docker Hub goes by in config files.
var dockerHubHosts = map[string]bool{"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true}

// matchRegistryKey scores how well a config key matches the registry reg
// and repository repo: -1 no match, more for a more specific key.
func matchRegistryKey(key, reg, repo string) int {
	k := key
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	k = strings.TrimSuffix(k, "/")
	k = strings.TrimSuffix(k, "/v1")
	k = strings.TrimSuffix(k, "/v2")
	khost, kpath, _ := strings.Cut(k, "/")
	if dockerHubHosts[khost] && dockerHubHosts[reg] {
		khost = reg
	}
	if !hostMatches(khost, reg) {
		return -1
	}
	score := 1
	if !strings.Contains(khost, "*") {
		score = 2
	}
	if kpath != "" {
		if repo != kpath && !strings.HasPrefix(repo, kpath+"/") {
			return -1
		}
		score += 2 * (strings.Count(kpath, "/") + 1)
	}
	return score
}

// hostMatches matches host[:port] against a pattern whose labels may be "*".
func hostMatches(pattern, host string) bool {
	pHost, pPort, _ := strings.Cut(pattern, ":")
	hHost, hPort, _ := strings.Cut(host, ":")
	if pPort != hPort {
		return false
	}
	pl, hl := strings.Split(pHost, "."), strings.Split(hHost, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, _ := path.Match(pl[i], hl[i]); !ok {
			return false
		}
	}
	return true
}
