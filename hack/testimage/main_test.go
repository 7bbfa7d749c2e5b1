package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const testName = "localhost/busybox:latest"

// buildArchive builds the image archive into dir/name and returns its bytes.
func buildArchive(t *testing.T, dir, name string) []byte {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); errors.Is(err, os.ErrNotExist) {
		t.Skip("/bin/busybox not found: run hack/install-deps.sh (or apt-get install busybox-static)")
	}
	out := filepath.Join(dir, name)
	if err := build(options{out: out, busybox: "/bin/busybox", name: testName}); err != nil {
		t.Fatalf("build: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// untar extracts the regular files and directories of archive into dir.
func untar(t *testing.T, archive []byte, dir string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		if !filepath.IsLocal(hdr.Name) {
			t.Fatalf("archive entry %q is not a local path", hdr.Name)
		}
		p := filepath.Join(dir, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("archive entry %q has unexpected type %q", hdr.Name, hdr.Typeflag)
		}
	}
}

func TestBuild(t *testing.T) {
	tmp := t.TempDir()
	archive := buildArchive(t, tmp, "busybox.tar")
	dir := filepath.Join(tmp, "layout")
	untar(t, archive, dir)

	// OCI layout: find the image by its ref.name annotation.
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("layout.FromPath: %v", err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatalf("ImageIndex: %v", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var desc *v1.Descriptor
	for i, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == testName {
			desc = &im.Manifests[i]
		}
	}
	if desc == nil {
		t.Fatalf("no manifest with ref.name %q in index.json: %+v", testName, im.Manifests)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != testName {
		t.Errorf("io.containerd.image.name = %q, want %q", got, testName)
	}
	img, err := ii.Image(desc.Digest)
	if err != nil {
		t.Fatalf("Image(%s): %v", desc.Digest, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}

	// Config.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" {
		t.Errorf("OS = %q, want linux", cf.OS)
	}
	if !slices.Equal(cf.Config.Cmd, []string{"sh"}) {
		t.Errorf("Cmd = %q, want [sh]", cf.Config.Cmd)
	}
	if !slices.Contains(cf.Config.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
		t.Errorf("Env = %q, want the standard PATH", cf.Config.Env)
	}

	// Layer contents.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		files[hdr.Name] = hdr
	}
	if h := files["bin/busybox"]; h == nil || h.Typeflag != tar.TypeReg || h.Mode != 0o755 {
		t.Errorf("layer: bin/busybox = %+v, want a 0755 regular file", h)
	}
	if h := files["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/bin/busybox" {
		t.Errorf("layer: bin/sh = %+v, want a symlink to /bin/busybox", h)
	}

	// Docker-style manifest.json.
	mj, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dms []dockerManifest
	if err := json.Unmarshal(mj, &dms); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(dms) != 1 {
		t.Fatalf("manifest.json has %d entries, want 1", len(dms))
	}
	dm := dms[0]
	if !slices.Equal(dm.RepoTags, []string{testName}) {
		t.Errorf("manifest.json RepoTags = %q, want [%s]", dm.RepoTags, testName)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if dm.Config != blobPath(cfgName) {
		t.Errorf("manifest.json Config = %q, want %q", dm.Config, blobPath(cfgName))
	}
	layerDigest, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dm.Layers, []string{blobPath(layerDigest)}) {
		t.Errorf("manifest.json Layers = %q, want [%s]", dm.Layers, blobPath(layerDigest))
	}
	for _, f := range append([]string{dm.Config}, dm.Layers...) {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
			t.Errorf("manifest.json names %s: %v", f, err)
		}
	}
}

func TestBuildReproducible(t *testing.T) {
	tmp := t.TempDir()
	a := buildArchive(t, tmp, "a.tar")
	b := buildArchive(t, tmp, "b.tar")
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds differ (%d vs %d bytes)", len(a), len(b))
	}
}

func TestBuildMissingBusybox(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	err := build(options{out: out, busybox: "/nonexistent/busybox", name: testName})
	if err == nil || !strings.Contains(err.Error(), "apt-get install busybox-static") {
		t.Fatalf("build with a missing busybox: err = %v, want one that says to apt-get install busybox-static", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output written despite the error: %v", err)
	}
}

// layerFiles returns the headers and contents of the image's only layer.
func layerFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs[hdr.Name], data[hdr.Name] = hdr, b
	}
}

func TestImageVariant(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); errors.Is(err, os.ErrNotExist) {
		t.Skip("/bin/busybox not found: run hack/install-deps.sh (or apt-get install busybox-static)")
	}
	src := t.TempDir()
	script, page := filepath.Join(src, "pgrep"), filepath.Join(src, "index.html")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := image(options{
		busybox: "/bin/busybox", name: testName,
		cmd:  []string{"httpd", "-f", "-p", "80", "-h", "/var/www"},
		user: "www-data:1004",
		adds: []addFile{{dest: "usr/bin/pgrep", src: script}, {dest: "/var/www/index.html", src: page}},
	})
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"httpd", "-f", "-p", "80", "-h", "/var/www"}; !slices.Equal(cf.Config.Cmd, want) {
		t.Errorf("Cmd = %q, want %q", cf.Config.Cmd, want)
	}
	if cf.Config.User != "www-data:1004" {
		t.Errorf("User = %q, want www-data:1004", cf.Config.User)
	}
	hdrs, data := layerFiles(t, img)
	for name, want := range map[string]struct {
		mode int64
		data string
	}{"usr/bin/pgrep": {0o755, "#!/bin/sh\n"}, "var/www/index.html": {0o644, "hello\n"}} {
		h := hdrs[name]
		if h == nil || h.Typeflag != tar.TypeReg || h.Mode != want.mode || h.Uid != 0 || string(data[name]) != want.data {
			t.Errorf("layer: %s = %+v %q, want a %o regular file of root's with %q", name, h, data[name], want.mode, want.data)
		}
	}
}

func TestImageVariantRefused(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); errors.Is(err, os.ErrNotExist) {
		t.Skip("/bin/busybox not found: run hack/install-deps.sh (or apt-get install busybox-static)")
	}
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for dest, want := range map[string]string{
		"bin/sh":          "already has",
		"etc/passwd":      "already has",
		"nodir/file":      "no directory nodir",
		"../escape":       "clean path",
		"usr/../etc/file": "clean path",
	} {
		_, err := image(options{busybox: "/bin/busybox", name: testName, adds: []addFile{{dest: dest, src: src}}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-add %s: err = %v, want one that says %q", dest, err, want)
		}
	}
	if _, err := parseAdds([]string{"usr/bin/x"}); err == nil {
		t.Error("parseAdds without =: no error")
	}
}

func TestPush(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); errors.Is(err, os.ErrNotExist) {
		t.Skip("/bin/busybox not found: run hack/install-deps.sh (or apt-get install busybox-static)")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/k8s-staging-cri-tools/test-image-tag:test"
	if err := build(options{busybox: "/bin/busybox", name: testName, push: []string{ref}}); err != nil {
		t.Fatalf("build with -push: %v", err)
	}
	// build fills in the node's architecture; image alone does not.
	img, err := image(options{busybox: "/bin/busybox", name: testName, arch: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r)
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	if desc.Digest != want {
		t.Errorf("pushed digest %s, want %s", desc.Digest, want)
	}
}

func TestPushRefusesRemoteRegistry(t *testing.T) {
	img, err := mutate.AppendLayers(empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"registry.example/x:1", "10.0.0.1:5000/x:1", "gcr.io/k8s-staging-cri-tools/test-image-tag:test"} {
		if err := push(img, ref); err == nil || !strings.Contains(err.Error(), "not on loopback") {
			t.Errorf("push %s: err = %v, want a refusal", ref, err)
		}
	}
}
