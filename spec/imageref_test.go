package spec

import (
	"strings"
	"testing"

	"github.com/agentd-project/agentd/spec/imageref"
)

// TestIsImageReference: the references and image IDs users write are accepted; those
// that read as paths, or that the store could not parse, are refused with a reason.
func TestIsImageReference(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	good := []string{
		"busybox", "busybox:1.36", "library/busybox", "docker.io/library/busybox:latest", "localhost/busybox",
		"localhost:5000/team/app:v1.2_3-rc", "registry.example.com/a/b/c", "REGISTRY.example.com/x", "[::1]:5000/x:1",
		"x__y/a.b/c-d/e--f", "busybox@" + digest, "busybox:1.36@" + digest,
		digest,          // an image ID
		"sha256:0123ab", // an image ID prefix
		"0123ab",
		"x/" + strings.Repeat("a", imageref.MaxNameLength-2),
	}
	for _, ref := range good {
		if msgs := IsImageReference(ref); len(msgs) > 0 {
			t.Errorf("IsImageReference(%q) = %q, want it accepted", ref, msgs)
		}
	}
	bad := map[string]string{
		"../../x":                       "'..' path element",
		"a/../b:1":                      "'..' path element",
		"x/..@" + digest:                "'..' path element",
		"..":                            "'..' path element",
		"./x":                           "'..' path element",
		"x/.:1":                         "'..' path element",
		"/x":                            "empty",
		"x/":                            "empty",
		"a//b":                          "empty",
		"UPPER/x":                       "not a valid image reference",
		"x:tag with space":              "whitespace",
		"x\x00y":                        "control",
		"x\ny":                          "control",
		"bü/x":                          "non-ASCII",
		"x@sha256:short":                "not a valid image reference",
		"x:" + strings.Repeat("t", 129): "not a valid image reference",
		"x/-y":                          `path element "-y"`,
		"x/y.":                          `path element "y."`,
		"x/a..b":                        `path element "a..b"`,
		"-x.io/y":                       `registry "-x.io"`,
		"x/" + strings.Repeat("a", imageref.MaxNameLength-1): "no more than 255",
	}
	for ref, want := range bad {
		msgs := IsImageReference(ref)
		if len(msgs) != 1 || !strings.Contains(msgs[0], want) {
			t.Errorf("IsImageReference(%q) = %q, want one message with %q", ref, msgs, want)
		}
	}
}
