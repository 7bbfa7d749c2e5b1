package credprovider

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"

	"github.com/agentd-project/agentd/spec"
)

const (
	// ConfigKind and ConfigAPIVersion are what a config file must declare.
	ConfigKind       = "CredentialProviderConfig"
	ConfigAPIVersion = "kubelet.config.k8s.io/v1"
	// PluginAPIVersion is the one plugin API spoken: a provider's apiVersion
	// and every response's.
	PluginAPIVersion = "credentialprovider.kubelet.k8s.io/v1"
)

// maxConfigSize bounds the config file read, as spec bounds a manifest.
const maxConfigSize = spec.MaxManifestSize

// ErrInvalidConfig is wrapped by every error about the config file or the bin dir.
var ErrInvalidConfig = errors.New("invalid credential provider config")

// LoadConfig reads the CredentialProviderConfig at path: YAML or JSON, decoded
// strictly (an unknown or duplicate field is an error naming its path) and
// validated as kubelet does, with agentd's additions (see validateConfig).
func LoadConfig(path string) (*kubeletconfigv1.CredentialProviderConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrInvalidConfig, path, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a CredentialProviderConfig; see LoadConfig.
func ParseConfig(data []byte) (*kubeletconfigv1.CredentialProviderConfig, error) {
	cfg := &kubeletconfigv1.CredentialProviderConfig{}
	if _, err := spec.DecodeStrict(data, ConfigKind, ConfigAPIVersion, cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if errs := validateConfig(cfg); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, &spec.FieldErrors{List: errs})
	}
	return cfg, nil
}

// validateConfig applies kubelet's rules (at least one provider; names unique;
// matchImages, defaultCacheDuration and apiVersion required) and agentd's:
// a name is a plain file name, patterns are well formed, env names are
// usable, only the v1 plugin API, and no tokenAttributes.
func validateConfig(cfg *kubeletconfigv1.CredentialProviderConfig) field.ErrorList {
	var errs field.ErrorList
	root := field.NewPath("providers")
	if len(cfg.Providers) == 0 {
		errs = append(errs, field.Required(root, "at least one provider is required"))
	}
	seen := sets.New[string]()
	for i, p := range cfg.Providers {
		path := root.Index(i)
		if err := checkPluginName(p.Name); err != nil {
			errs = append(errs, field.Invalid(path.Child("name"), p.Name, err.Error()))
		} else if seen.Has(p.Name) {
			errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
		}
		seen.Insert(p.Name)

		if len(p.MatchImages) == 0 {
			errs = append(errs, field.Required(path.Child("matchImages"), "at least one pattern is required"))
		}
		for j, m := range p.MatchImages {
			if err := checkPattern(m); err != nil {
				errs = append(errs, field.Invalid(path.Child("matchImages").Index(j), m, err.Error()))
			}
		}

		switch {
		case p.DefaultCacheDuration == nil:
			errs = append(errs, field.Required(path.Child("defaultCacheDuration"), "0s turns caching off"))
		case p.DefaultCacheDuration.Duration < 0:
			errs = append(errs, field.Invalid(path.Child("defaultCacheDuration"), p.DefaultCacheDuration.Duration.String(), "must not be negative"))
		}

		switch p.APIVersion {
		case PluginAPIVersion:
		case "":
			errs = append(errs, field.Required(path.Child("apiVersion"), "must be "+PluginAPIVersion))
		default:
			errs = append(errs, field.NotSupported(path.Child("apiVersion"), p.APIVersion, []string{PluginAPIVersion}))
		}

		for j, e := range p.Env {
			if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") {
				errs = append(errs, field.Invalid(path.Child("env").Index(j).Child("name"), e.Name, "must be non-empty and have no '=' or NUL"))
			}
			if strings.ContainsRune(e.Value, 0) {
				errs = append(errs, field.Invalid(path.Child("env").Index(j).Child("value"), field.OmitValueType{}, "must not contain NUL"))
			}
		}
		for j, a := range p.Args {
			if strings.ContainsRune(a, 0) {
				errs = append(errs, field.Invalid(path.Child("args").Index(j), a, "must not contain NUL"))
			}
		}

		if p.TokenAttributes != nil {
			errs = append(errs, field.Forbidden(path.Child("tokenAttributes"), "service account tokens are not supported: static pods have no service accounts"))
		}
	}
	return errs
}

// checkPluginName returns why name is not a plain file name that can only
// refer to a file directly inside the bin dir.
func checkPluginName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case strings.ContainsAny(name, `/\`):
		return errors.New("must be a file name in the bin dir, without path separators")
	case strings.Contains(name, ".."), name == ".":
		return errors.New(`must not be "." or contain ".."`)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("must not contain spaces or control characters")
	case filepath.Base(name) != name:
		return errors.New("must be a plain file name")
	}
	return nil
}

// pluginPath returns the executable for the provider name in binDir after
// checking that binDir is an absolute directory and the plugin a regular,
// executable file, neither of them writable by everyone (agentd runs it as
// root). Symlinks are followed, as kubelet does: the bin dir is the
// operator's.
func pluginPath(binDir, name string) (string, error) {
	if err := checkPluginName(name); err != nil {
		return "", fmt.Errorf("%w: provider name %q: %w", ErrInvalidConfig, name, err)
	}
	if !filepath.IsAbs(binDir) {
		return "", fmt.Errorf("%w: bin dir %q: must be an absolute path", ErrInvalidConfig, binDir)
	}
	di, err := os.Stat(binDir)
	if err != nil {
		return "", fmt.Errorf("%w: bin dir: %w", ErrInvalidConfig, err)
	}
	if !di.IsDir() {
		return "", fmt.Errorf("%w: bin dir %s: not a directory", ErrInvalidConfig, binDir)
	}
	if di.Mode().Perm()&0o002 != 0 {
		return "", fmt.Errorf("%w: bin dir %s is writable by everyone; chmod o-w it", ErrInvalidConfig, binDir)
	}
	p := filepath.Join(binDir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%w: plugin of provider %q: %w", ErrInvalidConfig, name, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%w: plugin %s: not a regular file", ErrInvalidConfig, p)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%w: plugin %s: not executable", ErrInvalidConfig, p)
	case fi.Mode().Perm()&0o002 != 0:
		return "", fmt.Errorf("%w: plugin %s is writable by everyone; chmod o-w it", ErrInvalidConfig, p)
	}
	return p, nil
}
