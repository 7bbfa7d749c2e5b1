// Package imageref holds the grammar of image references agentd accepts, for
// the manifest's edge (spec) and the image store's names alike. It links
// nothing heavier than go-containerregistry's name package.
package imageref

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
)

// MaxNameLength bounds the name of an image reference, its registry and
// repository without tag or digest, as distribution's reference grammar does
// (NameTotalLengthMax).
const MaxNameLength = 255

// The path components of a repository and the registry, as distribution's
// reference grammar (github.com/distribution/reference, regexp.go) has them.
// go-containerregistry's name package, which the image store parses references
// with, checks only the characters of a repository: "a/../b" and a registry ".."
// pass it. Compiled on first use: agentctl links this package and starts once per
// command, most of which check no reference.
var (
	repoComponent = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`) })
	registryName  = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	})
)

const imageRefForm = "[registry[:port]/]name[:tag][@sha256:<digest>], e.g. 'localhost/busybox:1.36'"

// Check returns why ref cannot be a container's image, or nothing when
// it can. An image is named by a reference, parsed as the image store parses it
// (go-containerregistry's name.ParseReference with weak validation, so
// `busybox` means docker.io/library/busybox:latest), or by an image ID, which
// parses as one too (`sha256:<hex>`, or a prefix of the hex). On top of that the
// registry and every path element of the repository must follow distribution's
// grammar: no empty, '.' or '..' element, no upper case, no whitespace or control
// character. The image store keeps names in its index, not as file names, but a
// reference is also shown in events and logs and handed to the monitor; one that
// reads as a path stays refused wherever it might end up.
func Check(ref string) []string {
	for _, r := range ref {
		if r <= ' ' || r >= 0x7f {
			return []string{fmt.Sprintf("must not contain whitespace, control or non-ASCII characters (%q): an image reference is %s", r, imageRefForm)}
		}
	}
	named, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(named, "/"); strings.Contains(named[i+1:], ":") {
		named = named[:i+1+strings.Index(named[i+1:], ":")]
	}
	for _, elem := range strings.Split(named, "/") {
		if host, _, _ := strings.Cut(elem, ":"); host == "" || host == "." || host == ".." {
			return []string{fmt.Sprintf("must not have an empty, '.' or '..' path element: an image reference is %s", imageRefForm)}
		}
	}
	if len(named) > MaxNameLength {
		return []string{fmt.Sprintf("must have a name (the part before its tag and digest) of no more than %d characters", MaxNameLength)}
	}
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return []string{fmt.Sprintf("is not a valid image reference (names are in lower case; a tag is at most 128 letters, digits, '_', '.' and '-'; a digest is sha256: and 64 hex digits): an image reference is %s", imageRefForm)}
	}
	if reg := r.Context().RegistryStr(); !registryName().MatchString(reg) {
		return []string{fmt.Sprintf("registry %q is not a host name or IP address with an optional port: an image reference is %s", reg, imageRefForm)}
	}
	for _, elem := range strings.Split(r.Context().RepositoryStr(), "/") {
		if !repoComponent().MatchString(elem) {
			return []string{fmt.Sprintf("path element %q must be lower-case letters and digits, separated by one '.' or '_', two '_' or any number of '-': an image reference is %s", elem, imageRefForm)}
		}
	}
	return nil
}
