package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
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
