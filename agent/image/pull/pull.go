// Package pull brings images from OCI/Docker registries into agentd's image
// store (package image) with go-containerregistry: the node's platform out of
// an index, credentials from docker config files and kubelet's credential
// providers (a Keychain), mirrors and per-registry TLS from a registries file
// in k3s's registries.yaml format, layers in parallel, each verified against
// its digest and size before it enters the store, resumed with Range after an
// interruption, and cancelled when no byte arrives for the progress timeout.
// Two pulls of the same reference at once share one transfer.
//
// What changes it: Options.Hosts (agentd's registries file, LoadHosts and
// docs/registries.md), Options.Keychain (docker config files,
// DockerConfigKeychain, and credential provider plugins), Options.Parallel
// and Options.ProgressTimeout, and the store's Limits (image-max-size,
// image-store-max-size), which pulled images are held to as imported ones
// are: a pull goes through the store's import path (image.Store.ImportImage),
// unpacking layers as they download. Blobs are downloaded into a staging
// directory under the store's tmp/ that the store removes, with whatever a
// killed pull left, at its next write or start.
package pull

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/singleflight"

	"github.com/agentd-project/agentd/agent/image"
)

// Options configure a Puller.
type Options struct {
	// Hosts is the registries configuration (LoadHosts); the zero value means
	// every registry over HTTPS with the system's CAs and no mirror.
	Hosts Hosts
	// Keychain finds credentials for a registry (nil: anonymous). Pull's auth
	// argument, when set, wins over it.
	Keychain authn.Keychain
	// Parallel is how many layers download at once (0: 3).
	Parallel int
	// ProgressTimeout cancels a pull that has received no byte for this long
	// (0: 1 minute).
	ProgressTimeout time.Duration
	// Platform is the platform chosen out of an index (nil: the node's).
	Platform *v1.Platform
	Log      logr.Logger
}

// Hosts is the parsed registries configuration: mirrors per registry, and
// plain HTTP, a CA, client certificates or skipped verification per host.
type Hosts struct {
	// filled by LoadHosts
	Mirrors map[string]Mirror
	Configs map[string]HostConfig
}

// Mirror lists the endpoints tried, in order, before the registry itself.
type Mirror struct {
	Endpoints []string
}

// HostConfig is the TLS and auth configuration of one registry host.
type HostConfig struct {
	CAFile             string
	CertFile, KeyFile  string
	InsecureSkipVerify bool
	Username, Password string
	// Auth is base64 of "username:password", as in docker's config.json;
	// IdentityToken an OAuth2 refresh token. Either may stand for
	// Username and Password.
	Auth, IdentityToken string
}

// Progress is one report on a running pull. Layer is a layer's digest
// (empty for the manifest and config); Done and Total are bytes (Total -1 when
// not known yet).
type Progress struct {
	Ref   string
	Layer string
	// Status is one of "Waiting", "Downloading", "Verifying",
	// "Download complete", "Extracting", "Already exists", "Pull complete"
	// (Docker's words).
	Status string
	Done   int64
	Total  int64
}

// Result describes a pulled image.
type Result struct {
	// ImageID is the image's config digest, the store's ID ("sha256:…").
	ImageID string
	// Digest is the repo digest of the manifest that was pulled ("sha256:…").
	Digest string
	// Names are the names the image got in the store (the normalised
	// reference, and name@digest).
	Names []string
	// Size is the image's size in bytes (compressed layers and config).
	Size int64
	// Duration is how long the pull took; Waited includes the time spent
	// waiting for a pull of the same image already running.
	Duration, Waited time.Duration
}

// Errors a pull can fail with besides the registry's own (Reason names them).
var (
	// ErrNoProgress: no byte arrived for Options.ProgressTimeout.
	ErrNoProgress = errors.New("no progress")
	// ErrNoPlatform: the image index has no manifest for the node's platform.
	ErrNoPlatform = errors.New("no matching platform")
)

// Puller pulls images into one store. Its methods are safe for concurrent
// use.
type Puller struct {
	store *image.Store
	opts  Options

	group singleflight.Group

	mu sync.Mutex
	// flights are the running transfers by key (guarded by mu).
	flights map[string]*flight
	// transports are the HTTP transports by endpoint, kept so that
	// connections are reused from one pull to the next (guarded by mu).
	transports map[string]*http.Transport
}

// New returns a Puller that writes into store.
func New(store *image.Store, opts Options) *Puller {
	if opts.Parallel <= 0 {
		opts.Parallel = 3
	}
	if opts.ProgressTimeout <= 0 {
		opts.ProgressTimeout = time.Minute
	}
	if opts.Platform == nil {
		opts.Platform = nodePlatform()
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	return &Puller{store: store, opts: opts, flights: map[string]*flight{}, transports: map[string]*http.Transport{}}
}

// flight is one transfer and the Pull calls that wait for it. It runs on
// its own context, cancelled when the last of them gives up.
type flight struct {
	ctx    context.Context
	cancel context.CancelCauseFunc

	waiters int // guarded by Puller.mu

	progMu   sync.Mutex
	progress map[int]func(Progress) // by waiter, guarded by progMu
	next     int                    // guarded by progMu
}

// report passes pr on to every waiter's callback, one call at a time.
func (f *flight) report(pr Progress) {
	f.progMu.Lock()
	defer f.progMu.Unlock()
	for _, fn := range f.progress {
		fn(pr)
	}
}

func (f *flight) addProgress(fn func(Progress)) int {
	f.progMu.Lock()
	defer f.progMu.Unlock()
	f.next++
	if fn != nil {
		f.progress[f.next] = fn
	}
	return f.next
}

func (f *flight) removeProgress(id int) {
	f.progMu.Lock()
	defer f.progMu.Unlock()
	delete(f.progress, id)
}

// Pull brings ref (any reference Docker accepts: "nginx",
// "registry:5000/team/app:v3", "app@sha256:…") into the store and returns the
// image. auth, when not nil, is used instead of the Keychain (the CRI's
// per-request credentials). progress, when not nil, is called from the pull's
// goroutines, never concurrently.
//
// Pulls of the same reference with the same credentials share one transfer;
// a Pull whose ctx ends stops waiting at once, and the transfer stops when no
// Pull waits for it any more.
func (p *Puller) Pull(ctx context.Context, ref string, auth authn.Authenticator, progress func(Progress)) (Result, error) {
	start := time.Now()
	norm, err := image.NormalizeName(ref)
	if err != nil {
		return Result{}, err
	}
	key := norm
	if auth != nil {
		// Another Pull's credentials must not get a caller an image it
		// could not have pulled itself: different credentials, different
		// transfers. The key holds a hash of them, never them.
		k, err := authKey(auth)
		if err != nil {
			return Result{}, fmt.Errorf("pulling %s: reading the credentials given: %w", norm, err)
		}
		key += "\x00" + k
	}

	for attempt := 0; ; attempt++ {
		res, again, err := p.join(ctx, key, norm, auth, progress)
		if again && attempt < 3 {
			continue
		}
		if err != nil {
			return Result{}, err
		}
		res.Waited = time.Since(start)
		return res, nil
	}
}

// outcome is what a transfer gives the Pulls that wait for it: its result
// and the flight it ran for.
type outcome struct {
	f   *flight
	res Result
}

// join waits for the transfer of key, starting it if none runs. again says
// that it joined a transfer that failed because all its own waiters had
// given up on it: the caller should try again.
func (p *Puller) join(ctx context.Context, key, norm string, auth authn.Authenticator, progress func(Progress)) (_ Result, again bool, _ error) {
	p.mu.Lock()
	f := p.flights[key]
	if f == nil {
		fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		f = &flight{ctx: fctx, cancel: cancel, progress: map[int]func(Progress){}}
		p.flights[key] = f
	}
	f.waiters++
	p.mu.Unlock()
	pid := f.addProgress(progress)
	defer f.removeProgress(pid)
	defer p.leave(ctx, key, f)

	ch := p.group.DoChan(key, func() (any, error) {
		res, err := p.pull(f.ctx, norm, auth, f.report)
		return outcome{f: f, res: res}, err
	})
	select {
	case r := <-ch:
		o := r.Val.(outcome)
		if r.Err != nil {
			return Result{}, o.f != f && o.f.ctx.Err() != nil && ctx.Err() == nil, r.Err
		}
		res := o.res
		res.Names = append([]string(nil), res.Names...)
		return res, false, nil
	case <-ctx.Done():
		return Result{}, false, fmt.Errorf("pulling %s: %w", norm, context.Cause(ctx))
	}
}

// leave takes a waiter off f. The last one ends the flight: it cancels a
// transfer still running (nobody waits for it any more; the cause is the
// waiter's), and the next Pull of key starts a new flight.
func (p *Puller) leave(ctx context.Context, key string, f *flight) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	if p.flights[key] == f {
		delete(p.flights, key)
	}
	cause := context.Cause(ctx)
	if cause == nil {
		cause = errors.New("pull finished")
	}
	f.cancel(cause)
}

// authKey identifies credentials by a hash.
func authKey(a authn.Authenticator) (string, error) {
	cfg, err := a.Authorization()
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// nodePlatform is the platform images are chosen for: this machine's.
func nodePlatform() *v1.Platform {
	p := &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7" // GOARM's default
	}
	return p
}

// pull is one transfer: it finds the image on the first endpoint that has
// it and brings it into the store.
func (p *Puller) pull(ctx context.Context, norm string, auth authn.Authenticator, report func(Progress)) (Result, error) {
	start := time.Now()
	ref, err := name.ParseReference(norm)
	if err != nil {
		return Result{}, fmt.Errorf("invalid image reference %q: %w", norm, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := newWatchdog(p.opts.ProgressTimeout)
	defer wd.stop()
	go wd.run(ctx)

	regName := strings.SplitN(norm, "/", 2)[0] // as the reference writes it: "docker.io"
	upstream := ref.Context().RegistryStr()
	log := p.opts.Log.WithValues("image", norm)
	var errs []error
	for _, ep := range p.opts.Hosts.endpoints(regName, upstream) {
		src, err := p.resolve(ctx, wd, ep, regName, ref, auth)
		if err != nil {
			if ctx.Err() != nil {
				return Result{}, pullError(norm, context.Cause(ctx))
			}
			if ep.mirror {
				log.Info("Mirror failed, trying the next endpoint", "endpoint", ep.String(), "err", err.Error())
				errs = append(errs, fmt.Errorf("mirror %s: %w", ep, err))
				continue
			}
			if len(errs) > 0 {
				return Result{}, fmt.Errorf("pulling %s: %w (after mirrors failed: %v)", norm, err, errors.Join(errs...))
			}
			return Result{}, pullError(norm, err)
		}
		log.V(1).Info("Pulling", "endpoint", ep.String(), "mirror", ep.mirror, "digest", src.digest.String())
		res, err := p.transfer(ctx, src, norm, report)
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrNoProgress) {
				err = cause
			}
			return Result{}, pullError(norm, err)
		}
		res.Duration = time.Since(start)
		// Which endpoint served it matters when there are mirrors; the
		// pull itself is the caller's to report (events).
		l := log.V(1)
		if ep.mirror || len(errs) > 0 {
			l = log
		}
		l.Info("Pulled image", "endpoint", ep.String(), "mirror", ep.mirror, "imageID", res.ImageID, "digest", res.Digest, "size", res.Size, "duration", res.Duration)
		return res, nil
	}
	return Result{}, fmt.Errorf("pulling %s: no endpoint to pull from", norm) // endpoints always ends with the registry
}

func pullError(norm string, err error) error {
	return fmt.Errorf("pulling %s: %w", norm, err)
}

// maxConfigSize bounds the image config a registry may make the pull read
// into memory (real ones are kilobytes; a manifest is bounded by
// go-containerregistry, at 100 MiB).
const maxConfigSize = 16 << 20

// source is an image found on an endpoint: its manifest and config, and
// what its blobs are fetched with.
type source struct {
	ep      endpoint
	repo    name.Repository // on the endpoint
	client  *http.Client    // authenticated for repo
	digest  v1.Hash         // of what the reference names (an index, or the image)
	img     v1.Image        // the platform's image, from the registry
	rawMan  []byte
	rawCfg  []byte
	mtype   types.MediaType
	manifst *v1.Manifest
}

// resolve fetches the manifest (choosing the platform's out of an index)
// and the config of ref from ep. A stall of the endpoint fails only this
// endpoint, so the next can be tried.
func (p *Puller) resolve(pullCtx context.Context, wd *watchdog, ep endpoint, regName string, ref name.Reference, auth authn.Authenticator) (*source, error) {
	ctx, cancel := context.WithCancelCause(pullCtx)
	defer cancel(nil)
	act := wd.start("the manifest from "+ep.String(), cancel)
	defer wd.end(act)
	ctx = withActivity(ctx, act)
	wrap := func(err error) error {
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrNoProgress) {
			return cause
		}
		return err
	}

	cfg := p.opts.Hosts.config(ep, regName)
	base, err := p.baseTransport(ep, cfg)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", ep.host, err)
	}
	guard := &schemeGuard{host: ep.host, https: !ep.http, plain: ep.http || !ep.mirror && isLoopback(ep.host), inner: &activityTransport{inner: base}}
	var nopts []name.Option
	if guard.plain {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(ep.host, nopts...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", ep.host, err)
	}
	repo := reg.Repo(ref.Context().RepositoryStr())

	a, err := p.authFor(ep, cfg, repo, auth)
	if err != nil {
		return nil, err
	}
	tr, err := transport.NewWithContext(ctx, reg, a, guard, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, wrap(err)
	}
	var target name.Reference = repo.Tag(ref.Identifier())
	if d, ok := ref.(name.Digest); ok {
		target = repo.Digest(d.DigestStr())
	}
	ropts := []remote.Option{remote.WithTransport(tr), remote.WithContext(ctx)}
	desc, err := remote.Get(target, ropts...)
	if err != nil {
		return nil, wrap(err)
	}
	src := &source{ep: ep, repo: repo, client: &http.Client{Transport: tr}, digest: desc.Digest}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, wrap(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, wrap(err)
		}
		child, err := choosePlatform(im, *p.opts.Platform)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		if src.img, err = idx.Image(child.Digest); err != nil {
			return nil, wrap(fmt.Errorf("manifest %s for %s: %w", child.Digest, platformString(child.Platform), err))
		}
	case desc.MediaType.IsImage():
		if src.img, err = desc.Image(); err != nil {
			return nil, wrap(err)
		}
	default:
		return nil, fmt.Errorf("%s is a %s, not an image or an image index", desc.Digest, desc.MediaType)
	}
	if src.rawMan, err = src.img.RawManifest(); err != nil {
		return nil, wrap(err)
	}
	if src.manifst, err = src.img.Manifest(); err != nil {
		return nil, wrap(err)
	}
	if src.mtype, err = src.img.MediaType(); err != nil {
		return nil, wrap(err)
	}
	if n := src.manifst.Config.Size; n < 0 || n > maxConfigSize {
		return nil, fmt.Errorf("config %s: its size, %d bytes, is not between 0 and %d", src.manifst.Config.Digest, n, maxConfigSize)
	}
	// The config blob: go-containerregistry checks it against its digest
	// and size.
	if src.rawCfg, err = src.img.RawConfigFile(); err != nil {
		return nil, wrap(fmt.Errorf("config %s: %w", src.manifst.Config.Digest, err))
	}
	return src, nil
}

// authFor chooses the credentials for an endpoint: a Pull's own (for the
// registry itself only: a mirror is another party), then the registries
// file's, then the Keychain's.
func (p *Puller) authFor(ep endpoint, cfg HostConfig, repo name.Repository, auth authn.Authenticator) (authn.Authenticator, error) {
	switch {
	case auth != nil && !ep.mirror:
		return auth, nil
	case cfg.Username != "" || cfg.Password != "" || cfg.Auth != "" || cfg.IdentityToken != "":
		return authn.FromConfig(authn.AuthConfig{Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth, IdentityToken: cfg.IdentityToken}), nil
	case p.opts.Keychain != nil:
		a, err := p.opts.Keychain.Resolve(repo)
		if err != nil {
			return nil, fmt.Errorf("finding credentials for %s: %w", repo.RegistryStr(), err)
		}
		return a, nil
	}
	return authn.Anonymous, nil
}

// baseTransport is the HTTP transport of an endpoint, made once.
func (p *Puller) baseTransport(ep endpoint, cfg HostConfig) (*http.Transport, error) {
	key := ep.String() + fmt.Sprintf(" mirror=%v", ep.mirror) // the configuration differs
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.transports[key]; t != nil {
		return t, nil
	}
	t, err := newHTTPTransport(cfg, p.opts.Parallel)
	if err != nil {
		return nil, err
	}
	p.transports[key] = t
	return t, nil
}

// choosePlatform picks want's manifest out of an index, or fails with an
// error wrapping ErrNoPlatform that lists the index's platforms.
func choosePlatform(im *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var have []string
	var fallback *v1.Descriptor
	for i, d := range im.Manifests {
		if d.Platform == nil || !d.MediaType.IsImage() {
			continue
		}
		pl := *d.Platform
		if pl.OS == "unknown" { // attestations (buildkit)
			continue
		}
		have = append(have, platformString(d.Platform))
		if pl.OS != want.OS || pl.Architecture != want.Architecture {
			continue
		}
		if pl.Variant == want.Variant {
			return d, nil
		}
		// An entry without a variant serves any variant, as containerd's
		// matcher takes it.
		if pl.Variant == "" && fallback == nil {
			fallback = &im.Manifests[i]
		}
	}
	if fallback != nil {
		return *fallback, nil
	}
	return v1.Descriptor{}, fmt.Errorf("%w: no manifest for %s; the index has %s", ErrNoPlatform, platformString(&want), strings.Join(orNone(have), ", "))
}

func orNone(s []string) []string {
	if len(s) == 0 {
		return []string{"no platform manifest"}
	}
	return s
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return "(no platform)"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Reason gives a short cause of a pull's error for events and status:
// "unauthorized", "not found", "manifest unknown", "TLS", "timeout",
// "no progress", "no matching platform", or "" when none fits.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	switch {
	case errors.Is(err, ErrNoProgress):
		return "no progress"
	case errors.Is(err, ErrNoPlatform):
		return "no matching platform"
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return "unauthorized"
			case transport.NameUnknownErrorCode:
				return "not found"
			case transport.ManifestUnknownErrorCode:
				return "manifest unknown"
			}
		}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return "unauthorized"
		case http.StatusNotFound:
			return "not found"
		}
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
		record           tls.RecordHeaderError
		alert            tls.AlertError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert) {
		return "TLS"
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return ""
}
