package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/image/pull"
)

// PullBackend is the part of Backend that pulls images (slice 7 of
// docs/cri-design.md).
type PullBackend interface {
	// PullImage brings ref into the image store and returns its image ID
	// (the ID Image and ListImages report). auth, when not nil, is the
	// request's credentials: they are used for ref's registry instead of the
	// node's (never for a mirror, which is another party), and must never be
	// logged. Pulls of the same ref with the same credentials share one
	// transfer. Errors wrap the puller's, so that pull.Reason and the
	// sentinels of package pull classify them.
	PullImage(ctx context.Context, ref string, auth authn.Authenticator) (imageID string, err error)
}

// ErrUnauthenticated: the registry refused the credentials (or their
// absence).
var ErrUnauthenticated = errors.New("unauthenticated")

// PullImage pulls the image the request names and returns its image ID as
// image_ref (the same value Image.id, ContainerStatus.image_id and
// Container.image_id carry). The request's AuthConfig, when it holds any
// credentials, is used for this pull instead of the node's keychain; an
// AuthConfig whose server_address names another registry than the image's is
// ignored, as containerd does, so that credentials never go to a registry
// they were not given for. The sandbox config is ignored: agentd pulls the
// same way for every pod (no per-runtime-handler snapshotter, no
// namespace-scoped credentials).
//
// Failures keep their cause in the gRPC code (pullCode): the registry's
// "unauthorized" is Unauthenticated, a repository or tag it does not know is
// NotFound, a stalled transfer DeadlineExceeded. kubelet does not branch on the
// code (every failure is its ErrImagePull), so the code is for other clients
// and tests.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("%w: PullImage names no image", ErrInvalidArgument)
	}
	norm, err := image.NormalizeName(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: PullImage of %q: %v", ErrInvalidArgument, ref, err)
	}
	auth, err := requestAuth(req.GetAuth(), norm)
	if err != nil {
		return nil, fmt.Errorf("%w: PullImage of %s: %v", ErrInvalidArgument, norm, err)
	}
	id, err := s.b.PullImage(ctx, ref, auth)
	if err != nil {
		return nil, pullFailure(err)
	}
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

// requestAuth is the authenticator of a PullImage request's AuthConfig for an
// image named norm (normalised), or nil to use the node's credentials: when the
// request has none, or gives them for another registry (server_address).
func requestAuth(a *runtimeapi.AuthConfig, norm string) (authn.Authenticator, error) {
	if a == nil || (a.GetUsername() == "" && a.GetPassword() == "" && a.GetAuth() == "" &&
		a.GetIdentityToken() == "" && a.GetRegistryToken() == "") {
		return nil, nil
	}
	if addr := a.GetServerAddress(); addr != "" {
		ref, err := name.ParseReference(norm)
		if err != nil {
			return nil, err
		}
		if !sameRegistry(addr, ref.Context().RegistryStr()) {
			return nil, nil
		}
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}), nil
}

// sameRegistry says whether a server address as docker's config writes it
// ("registry:5000", "https://registry:5000/v1/", "index.docker.io") names the
// registry host reg (as go-containerregistry's RegistryStr gives it:
// "index.docker.io" for Docker Hub).
func sameRegistry(addr, reg string) bool {
	host := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return false
		}
		host = u.Host
	} else if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	dockerHub := func(h string) bool {
		return h == name.DefaultRegistry || h == "docker.io" || h == "registry-1.docker.io"
	}
	return strings.EqualFold(host, reg) || (dockerHub(host) && dockerHub(reg))
}

// pullFailure wraps a pull's error in the class its cause belongs to, for
// toStatus: pull.Reason's "unauthorized" → ErrUnauthenticated, "not found" and
// "manifest unknown" → ErrNotFound, pull.ErrNoProgress → DeadlineExceeded.
// The message stays the puller's, which names the image and never holds the
// credentials.
func pullFailure(err error) error {
	if errors.Is(err, pull.ErrNoProgress) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
	}
	switch pull.Reason(err) {
	case "unauthorized":
		return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	case "not found", "manifest unknown":
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
