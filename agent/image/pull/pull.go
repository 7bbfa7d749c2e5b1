// Package pull brings images from OCI/Docker registries into agentd's image
// store (package image) with go-containerregistry: the node's platform out of
// an index, credentials from docker config files and kubelet's credential
// providers (a Keychain), mirrors and per-registry TLS from a registries file
// in k3s's registries.yaml format, layers in parallel, each verified against
// its digest and size before it enters the store, resumed with Range after an
// interruption, and cancelled when no byte arrives for the progress timeout.
// Two pulls of the same reference at once share one transfer.
package pull

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

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
}

// Progress is one report on a running pull. Layer is a layer's digest
// (empty for the manifest and config); Done and Total are bytes (Total -1 when
// not known yet).
type Progress struct {
	Ref    string
	Layer  string
	Status string // "Waiting", "Downloading", "Verifying", "Extracting", "Already exists", "Pull complete"
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

// Puller pulls images into one store.
type Puller struct {
	store *image.Store
	opts  Options
}

// New returns a Puller that writes into store.
func New(store *image.Store, opts Options) *Puller {
	return &Puller{store: store, opts: opts}
}

// Pull brings ref (any reference Docker accepts: "nginx",
// "registry:5000/team/app:v3", "app@sha256:…") into the store and returns the
// image. auth, when not nil, is used instead of the Keychain (the CRI's
// per-request credentials). progress, when not nil, is called from the pull's
// goroutines, never concurrently.
func (p *Puller) Pull(ctx context.Context, ref string, auth authn.Authenticator, progress func(Progress)) (Result, error) {
	return Result{}, errors.New("pull: not implemented yet")
}

// Reason gives a short cause of a pull's error for events and status:
// "unauthorized", "not found", "manifest unknown", "TLS", "timeout",
// "no progress", "no matching platform", or "" when none fits.
func Reason(err error) string {
	return ""
}

// LoadHosts reads a registries file in k3s's registries.yaml format. A missing
// file is an empty configuration.
func LoadHosts(path string) (Hosts, error) {
	return Hosts{}, errors.New("pull: not implemented yet")
}

// DefaultDockerConfigPaths are the docker config files kubelet reads, in
// order: <root>/config.json, then $HOME/.docker/config.json (and the legacy
// .dockercfg beside them).
func DefaultDockerConfigPaths(root string) []string {
	return nil
}

// DockerConfigKeychain is a Keychain over docker config files (the first that
// has credentials for a registry wins). Missing files are skipped.
func DockerConfigKeychain(paths ...string) authn.Keychain {
	return authn.NewMultiKeychain()
}
