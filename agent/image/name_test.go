package image

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1"},
		{in: "user/app", want: "docker.io/user/app:latest"},
		{in: "localhost/busybox", want: "localhost/busybox:latest"},
		{in: "localhost:5000/x:1", want: "localhost:5000/x:1"},
		{in: "quay.io/org/app:v2", want: "quay.io/org/app:v2"},
		{in: "busybox@" + digest, want: "docker.io/library/busybox@" + digest},
		{in: "busybox:1.36@" + digest, want: "docker.io/library/busybox@" + digest},
		{in: "Busybox", wantErr: true},
		{in: "", wantErr: true},
		{in: "busybox:", wantErr: true},
		{in: "a b", wantErr: true},
		{in: "a/../b", wantErr: true},
		{in: "localhost/../x:1", wantErr: true},
		{in: "x//y", wantErr: true},
		{in: "../x", wantErr: true},
	} {
		got, err := NormalizeName(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("NormalizeName(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestAnnotationNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]string
		want []string
	}{
		{"none", nil, nil},
		{"full ref.name", map[string]string{annotationRefName: "localhost/busybox:latest"}, []string{"localhost/busybox:latest"}},
		{"both full (hack/build-test-image.sh)", map[string]string{
			annotationRefName: "localhost/busybox:latest", annotationContainerdName: "localhost/busybox:latest",
		}, []string{"localhost/busybox:latest"}},
		{"docker 25: ref.name is the tag", map[string]string{
			annotationRefName: "1.36", annotationContainerdName: "docker.io/library/busybox:1.36",
		}, []string{"docker.io/library/busybox:1.36"}},
		{"tag ref.name tags the containerd name's repository", map[string]string{
			annotationRefName: "stable", annotationContainerdName: "busybox:1.36",
		}, []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:stable"}},
		{"a tag alone names nothing", map[string]string{annotationRefName: "latest"}, nil},
		{"containerd name only", map[string]string{annotationContainerdName: "quay.io/a/b:c"}, []string{"quay.io/a/b:c"}},
	} {
		got, err := annotationNames(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: annotationNames = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := annotationNames(map[string]string{annotationContainerdName: "Bad Name"}); err == nil {
		t.Errorf("an invalid io.containerd.image.name was accepted")
	}
}

func TestResolve(t *testing.T) {
	id1 := "sha256:aaaa1111" + strings.Repeat("0", 56)
	id2 := "sha256:aaaa2222" + strings.Repeat("0", 56)
	id3 := "sha256:beef" + strings.Repeat("0", 60)
	man1 := "sha256:" + strings.Repeat("1", 64)
	idx := &index{
		Images: map[string]*record{id1: {Digest: man1}, id2: {}, id3: {}},
		Names: map[string]string{
			"docker.io/library/busybox:latest": id1,
			"localhost/app:1":                  id2,
			"docker.io/library/beef:latest":    id2, // a name that is also an ID prefix
		},
	}
	for _, tc := range []struct {
		ref      string
		want     match
		notFound bool
		errHas   string
	}{
		{ref: "busybox", want: match{id: id1, name: "docker.io/library/busybox:latest"}},
		{ref: "docker.io/library/busybox:latest", want: match{id: id1, name: "docker.io/library/busybox:latest"}},
		{ref: "localhost/app:1", want: match{id: id2, name: "localhost/app:1"}},
		{ref: id1, want: match{id: id1}},
		{ref: "aaaa1", want: match{id: id1}},
		{ref: "sha256:aaaa2", want: match{id: id2}},
		{ref: "busybox@" + man1, want: match{id: id1}},
		{ref: "beef", want: match{id: id2, name: "docker.io/library/beef:latest"}}, // the name wins
		{ref: "sha256:beef", want: match{id: id3}},
		{ref: "aaaa", errHas: "ambiguous"},
		{ref: "aaa", notFound: true},
		{ref: "localhost/app@" + man1, notFound: true}, // right digest, other repository
		{ref: "sha256:" + strings.Repeat("c", 64), notFound: true},
		{ref: "nope", notFound: true},
		{ref: "UPPER", errHas: "invalid image reference"},
	} {
		got, err := idx.resolve(tc.ref)
		switch {
		case tc.notFound:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("resolve(%q) = %+v, %v; want ErrNotFound", tc.ref, got, err)
			}
		case tc.errHas != "":
			if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("resolve(%q) = %+v, %v; want an error with %q", tc.ref, got, err, tc.errHas)
			}
		default:
			if err != nil || got != tc.want {
				t.Errorf("resolve(%q) = %+v, %v; want %+v", tc.ref, got, err, tc.want)
			}
		}
	}
}
