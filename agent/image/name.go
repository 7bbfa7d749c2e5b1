package image

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/agentd-project/agentd/spec/imageref"
)

// dockerHub is the canonical registry name for Docker Hub images, as Docker
// and containerd print it (go-containerregistry says index.docker.io).
const dockerHub = "docker.io"

// NormalizeName returns ref in the canonical form names have in the store,
// as Docker and containerd normalise them: `busybox` becomes
// `docker.io/library/busybox:latest`, `localhost/busybox` becomes
// `localhost/busybox:latest`, `localhost:5000/x:1` stays as it is, and a
// digest reference keeps its digest and drops its tag
// (`busybox:1.36@sha256:…` becomes `docker.io/library/busybox@sha256:…`).
// The first path component is a registry when it is `localhost` or contains
// a `.` or `:`; otherwise the name is a Docker Hub one.
func NormalizeName(ref string) (string, error) {
	r, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	return canonical(r), nil
}

// ErrInvalidReference is wrapped by the errors for a reference that is not a
// valid image name, ID or ID prefix (the caller's mistake, not the store's).
var ErrInvalidReference = errors.New("invalid image reference")

// parseRef parses ref as a name the store may hold: one that passes the
// grammar manifests are held to (imageref.Check), so an archive's RepoTags or
// annotations cannot store a name such as "../x" that no manifest could use.
func parseRef(ref string) (name.Reference, error) {
	if msgs := imageref.Check(ref); len(msgs) > 0 {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidReference, ref, msgs[0])
	}
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidReference, ref, err)
	}
	return r, nil
}

func canonical(r name.Reference) string {
	repo := repoName(r.Context())
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr()
	}
	return repo + ":" + r.Identifier()
}

// repoName is the canonical registry/repository of r, without tag or digest.
func repoName(r name.Repository) string {
	reg := r.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = dockerHub
	}
	return reg + "/" + r.RepositoryStr()
}

// tagOnly matches an org.opencontainers.image.ref.name that is just a tag, as
// the OCI image layout spec suggests and docker save (≥ 25) writes.
var tagOnly = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`) })

const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// annotationNames returns the normalised names an OCI index descriptor's
// annotations give its image. A ref.name that is only a tag names the image
// only together with io.containerd.image.name (whose repository it tags).
func annotationNames(a map[string]string) ([]string, error) {
	var names []string
	full := a[annotationContainerdName]
	if full != "" {
		n, err := NormalizeName(full)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", annotationContainerdName, err)
		}
		names = append(names, n)
	}
	ref := a[annotationRefName]
	switch {
	case ref == "":
	case tagOnly().MatchString(ref):
		if full == "" {
			break // a tag of no repository: the image stays unnamed
		}
		r, err := parseRef(full)
		if err != nil {
			return nil, err
		}
		n, err := NormalizeName(repoName(r.Context()) + ":" + ref)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", annotationRefName, err)
		}
		names = append(names, n)
	default:
		n, err := NormalizeName(ref)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", annotationRefName, err)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
