package credprovider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/singleflight"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/agentd-project/agentd/spec"
)

// Options are the settings of a Keychain that do not come from the config file.
type Options struct {
	// Log receives one line per plugin failure and per credential chosen
	// (provider and key only, never a secret).
	Log logr.Logger
	// Timeout bounds one plugin run; 0 means DefaultTimeout, kubelet's.
	Timeout time.Duration
	// Now is the clock cache entries expire by; nil means time.Now.
	Now func() time.Time
}

// Keychain resolves registry credentials by running the configured plugins.
// It is safe for concurrent use; its cache lives as long as it does. Resolve
// may run a plugin and so take up to the timeout; ResolveContext returns when
// ctx ends, leaving the run to finish for the cache and for other callers.
type Keychain struct {
	providers []*provider
	log       logr.Logger
}

var (
	_ authn.Keychain        = (*Keychain)(nil)
	_ authn.ContextKeychain = (*Keychain)(nil)
)

// Load reads the config file and returns a Keychain running plugins from
// binDir; see LoadConfig and New.
func Load(configFile, binDir string, opts Options) (*Keychain, error) {
	cfg, err := LoadConfig(configFile)
	if err != nil {
		return nil, err
	}
	return New(cfg, binDir, opts)
}

// New returns a Keychain for cfg, which it validates again, whose plugins
// must be executables directly in binDir (see pluginPath). Like kubelet, it
// fails when a plugin is missing rather than at the first pull.
func New(cfg *kubeletconfigv1.CredentialProviderConfig, binDir string, opts Options) (*Keychain, error) {
	if errs := validateConfig(cfg); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, &spec.FieldErrors{List: errs})
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := &Keychain{log: opts.Log}
	for _, p := range cfg.Providers {
		path, err := pluginPath(binDir, p.Name)
		if err != nil {
			return nil, err
		}
		env := make([]string, 0, len(p.Env))
		for _, e := range p.Env {
			env = append(env, e.Name+"="+e.Value)
		}
		k.providers = append(k.providers, &provider{
			name:        p.Name,
			matchImages: p.MatchImages,
			defaultTTL:  p.DefaultCacheDuration.Duration,
			now:         opts.Now,
			log:         opts.Log.WithValues("provider", p.Name),
			plugin: &execPlugin{
				name:       p.Name,
				path:       path,
				args:       p.Args,
				env:        env,
				apiVersion: p.APIVersion,
				timeout:    opts.Timeout,
			},
			cache: map[string]cacheEntry{},
		})
	}
	return k, nil
}

// Resolve implements authn.Keychain; see ResolveContext.
func (k *Keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), r)
}

// ResolveContext returns the credentials for r's repository: of every auth
// entry that the providers whose matchImages match it return, the one whose
// key matches it most specifically (see pick). It returns authn.Anonymous when
// none matches, and an error wrapping ErrPlugin or ErrBadResponse only when
// none matches and a provider failed: then the failure is the likely reason,
// and better reported than the registry's "unauthorized".
func (k *Keychain) ResolveContext(ctx context.Context, r authn.Resource) (authn.Authenticator, error) {
	image := imageOf(r)
	var creds []credential
	var errs []error
	for i, p := range k.providers {
		c, err := p.credentials(ctx, image)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, cr := range c {
			cr.provider = i
			creds = append(creds, cr)
		}
	}
	c, ok := pick(creds, image)
	if !ok {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return authn.Anonymous, nil
	}
	for _, err := range errs {
		k.log.Error(err, "Credential provider failed; using another provider's credentials", "image", image)
	}
	k.log.V(1).Info("Using credentials from credential provider", "image", image,
		"provider", k.providers[c.provider].name, "key", c.key)
	if c.auth.Username == "" && c.auth.Password == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(c.auth), nil
}

// runner runs a plugin; execPlugin is the real one.
type runner interface {
	run(ctx context.Context, image string) (*credentialproviderv1.CredentialProviderResponse, error)
}

// provider is one configured plugin with its cache.
type provider struct {
	name        string
	matchImages []string
	defaultTTL  time.Duration
	now         func() time.Time
	log         logr.Logger
	plugin      runner

	group singleflight.Group
	// waiting counts callers waiting for a plugin run, for tests that need
	// every caller to have joined one run before it ends.
	waiting atomic.Int64

	mu    sync.Mutex
	cache map[string]cacheEntry // guarded by mu
}

type cacheEntry struct {
	creds   []credential
	expires time.Time
}

// credentials returns the provider's credentials for image: none when image
// matches none of its matchImages, else from the cache or from one plugin run
// shared by every concurrent caller for the same image.
func (p *provider) credentials(ctx context.Context, image string) ([]credential, error) {
	if !p.matches(image) {
		return nil, nil
	}
	if c, ok := p.cached(image); ok {
		return c, nil
	}
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	// The run is shared, so one caller giving up must not cancel it; the
	// plugin timeout bounds it.
	ch := p.group.DoChan(image, func() (any, error) {
		return p.fetch(context.WithoutCancel(ctx), image)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]credential), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: provider %q for image %q: %w", ErrPlugin, p.name, image, ctx.Err())
	}
}

func (p *provider) matches(image string) bool {
	for _, m := range p.matchImages {
		if ok, err := Match(m, image); err == nil && ok {
			return true
		}
	}
	return false
}

// fetch runs the plugin and caches its answer as the answer says.
func (p *provider) fetch(ctx context.Context, image string) ([]credential, error) {
	resp, err := p.plugin.run(ctx, image)
	if err != nil {
		return nil, err
	}
	creds := make([]credential, 0, len(resp.Auth))
	for loc, a := range resp.Auth {
		key, err := authKey(loc)
		if err != nil {
			p.log.Info("Ignoring invalid auth key in credential provider response", "image", image, "key", short(loc), "reason", err.Error())
			continue
		}
		creds = append(creds, credential{key: key, auth: authn.AuthConfig{Username: a.Username, Password: a.Password}})
	}
	ttl := p.defaultTTL
	if resp.CacheDuration != nil {
		ttl = resp.CacheDuration.Duration
	}
	if ttl > 0 {
		p.store(cacheKey(resp.CacheKeyType, image), creds, p.now().Add(ttl))
	}
	return creds, nil
}

// cacheKey is where a response of the given cacheKeyType is cached for image.
func cacheKey(t credentialproviderv1.PluginCacheKeyType, image string) string {
	switch t {
	case credentialproviderv1.ImagePluginCacheKeyType:
		return "image:" + image
	case credentialproviderv1.RegistryPluginCacheKeyType:
		return "registry:" + registryPart(image)
	default:
		return "global"
	}
}

// registryPart is image's registry host[:port], as kubelet's parseRegistry.
func registryPart(image string) string {
	reg, _, _ := strings.Cut(image, "/")
	return reg
}

// cached looks image up as kubelet does: per image, then per registry, then global.
func (p *provider) cached(image string) ([]credential, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for _, t := range []credentialproviderv1.PluginCacheKeyType{
		credentialproviderv1.ImagePluginCacheKeyType,
		credentialproviderv1.RegistryPluginCacheKeyType,
		credentialproviderv1.GlobalPluginCacheKeyType,
	} {
		key := cacheKey(t, image)
		e, ok := p.cache[key]
		if !ok {
			continue
		}
		if !now.Before(e.expires) {
			delete(p.cache, key)
			continue
		}
		return e.creds, true
	}
	return nil, false
}

// store caches creds under key and drops expired entries, so that the cache
// holds no more than the images pulled within the longest cache duration.
func (p *provider) store(key string, creds []credential, expires time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for k, e := range p.cache {
		if !now.Before(e.expires) {
			delete(p.cache, k)
		}
	}
	p.cache[key] = cacheEntry{creds: creds, expires: expires}
}
