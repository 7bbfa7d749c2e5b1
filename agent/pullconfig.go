package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/agentd-project/agentd/agent/image/credprovider"
	"github.com/agentd-project/agentd/agent/image/pull"
)

// PullOptions are the settings of image pulls (agentd's registries-config,
// image-pull-* and image-credential-provider-* keys).
type PullOptions struct {
	// RegistriesConfig is a registries file in k3s's registries.yaml format
	// (mirrors, plain HTTP, CAs, client certificates); a missing file is none.
	RegistriesConfig string
	// AuthFile is a docker config.json tried before kubelet's default
	// locations (pull.DefaultDockerConfigPaths of the agent's root); "" for none.
	AuthFile string
	// CredentialProviderConfig and CredentialProviderBinDir are kubelet's
	// --image-credential-provider-config and -bin-dir; "" for no plugins.
	CredentialProviderConfig string
	CredentialProviderBinDir string
	Parallel                 int           // layers downloaded at once per pull
	ProgressTimeout          time.Duration // a pull with no byte for this long fails
}

// pullerOptions reads the files of o and returns the puller's options: the
// registries configuration, and a keychain that asks the docker config files
// (AuthFile first, then kubelet's defaults under root) and then the credential
// providers. Any file that is there but bad is an error naming it.
func pullerOptions(root string, o PullOptions, log logr.Logger) (pull.Options, error) {
	var hosts pull.Hosts
	if o.RegistriesConfig != "" {
		// A missing file is no configuration (pull.LoadHosts says the same); the
		// default path need not exist.
		_, err := os.Stat(o.RegistriesConfig)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return pull.Options{}, fmt.Errorf("registries-config %s: %w", o.RegistriesConfig, err)
		default:
			if hosts, err = pull.LoadHosts(o.RegistriesConfig); err != nil {
				return pull.Options{}, fmt.Errorf("registries-config %s: %w", o.RegistriesConfig, err)
			}
		}
	}
	var paths []string
	if o.AuthFile != "" {
		paths = append(paths, o.AuthFile)
	}
	paths = append(paths, pull.DefaultDockerConfigPaths(root)...)
	keychains := []authn.Keychain{pull.DockerConfigKeychain(paths...)}
	if o.CredentialProviderConfig != "" {
		kc, err := credprovider.Load(o.CredentialProviderConfig, o.CredentialProviderBinDir, credprovider.Options{Log: log.WithName("credprovider")})
		if err != nil {
			return pull.Options{}, fmt.Errorf("image-credential-provider-config %s: %w", o.CredentialProviderConfig, err)
		}
		keychains = append(keychains, kc)
	}
	return pull.Options{
		Hosts:           hosts,
		Keychain:        authn.NewMultiKeychain(keychains...),
		Parallel:        o.Parallel,
		ProgressTimeout: o.ProgressTimeout,
		Log:             log,
	}, nil
}

// SetPullOptions builds a new puller from o and uses it for the pulls that
// start from now on (at start and at SIGHUP). When a file of o is bad it
// returns the error and keeps the puller it had.
func (a *Agent) SetPullOptions(o PullOptions) error {
	po, err := pullerOptions(a.opts.Root, o, a.log.WithName("pull"))
	if err != nil {
		return err
	}
	a.imageMgr.setPuller(pull.New(a.store, po))
	return nil
}
