// Command testimage writes a small busybox container image, built from
// Debian's busybox-static binary, as an OCI image archive for agentd's tests:
//
//	go run ./hack/testimage -o OUT.tar [-busybox /bin/busybox] [-name localhost/busybox:latest]
//
// OUT.tar is a tar of an OCI image layout (oci-layout, index.json,
// blobs/sha256/...) whose index.json names the image with the
// org.opencontainers.image.ref.name and io.containerd.image.name annotations.
// It also holds a docker-style manifest.json, as `docker save` (>= 25) writes,
// so docker-archive importers accept it too.
//
// The image has one layer: bin/busybox, a link for every applet at the path
// `busybox --list-full` reports, a few directories and a minimal
// etc/passwd and etc/group. Every file is owned by 0:0 and has a fixed mtime,
// so the same busybox binary always gives a byte-identical archive (and so the
// same image digest).
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the mtime of every file and the image's creation time.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type options struct {
	out     string    // path of the archive to write
	busybox string    // busybox binary to put in the image
	name    string    // image name, e.g. localhost/busybox:latest
	arch    string    // image architecture; runtime.GOARCH if empty
	log     io.Writer // where to report what was written; nil for silence
}

func main() {
	o := options{log: os.Stderr}
	flag.StringVar(&o.out, "o", "", "output OCI image archive (required)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "statically linked busybox binary")
	flag.StringVar(&o.name, "name", "localhost/busybox:latest", "image name (registry/repository:tag)")
	flag.Parse()
	if o.out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: testimage -o OUT.tar [-busybox /bin/busybox] [-name localhost/busybox:latest]")
		os.Exit(2)
	}
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "testimage:", err)
		os.Exit(1)
	}
}

// build writes the image archive described by o.
func build(o options) error {
	if _, err := name.NewTag(o.name, name.StrictValidation); err != nil {
		return fmt.Errorf("image name %q: %w (want registry/repository:tag, e.g. localhost/busybox:latest)", o.name, err)
	}
	if o.arch == "" {
		o.arch = runtime.GOARCH
	}

	img, err := image(o)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "testimage-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeLayout(dir, img, o); err != nil {
		return err
	}
	if err := writeTarAtomic(o.out, dir); err != nil {
		return err
	}

	if o.log != nil {
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(o.log, "wrote %s: %s@%s\n", o.out, o.name, digest)
	}
	return nil
}

// image builds the busybox image in memory.
func image(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.busybox)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("busybox binary %s not found: install it with `apt-get install busybox-static` (or run hack/install-deps.sh as root)", o.busybox)
	} else if err != nil {
		return nil, fmt.Errorf("reading busybox binary: %w", err)
	}
	list, err := exec.Command(o.busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w (is it Debian's busybox-static? `apt-get install busybox-static`)", o.busybox, err)
	}
	rootfs, err := rootfsTar(bin, strings.Fields(string(list)))
	if err != nil {
		return nil, err
	}

	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rootfs)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("creating layer: %w", err)
	}

	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{
		Created:      v1.Time{Time: epoch},
		OS:           "linux",
		Architecture: o.arch,
		Config: v1.Config{
			Cmd:        []string{"sh"},
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			WorkingDir: "/",
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "agentd hack/testimage: busybox-static and its applets",
			Comment:   "built from " + o.busybox,
		},
	})
}

// rootfsTar returns the uncompressed layer: busybox, its applet links,
// a skeleton of directories and etc/passwd, etc/group.
func rootfsTar(busybox []byte, applets []string) ([]byte, error) {
	entries := map[string]*tar.Header{}
	dir := func(name string, mode int64) {
		entries[name] = &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}
	}
	file := func(name string, mode int64, size int) {
		entries[name] = &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(size)}
	}

	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "var", "var/www", "proc", "sys", "dev", "home"} {
		dir(d, 0o755)
	}
	dir("root", 0o700)
	dir("tmp", 0o1777)

	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
	group := "root:x:0:\nnobody:x:65534:\n"
	contents := map[string][]byte{
		"bin/busybox": busybox,
		"etc/passwd":  []byte(passwd),
		"etc/group":   []byte(group),
	}
	file("bin/busybox", 0o755, len(busybox))
	file("etc/passwd", 0o644, len(passwd))
	file("etc/group", 0o644, len(group))

	for _, a := range applets {
		a = strings.TrimPrefix(a, "/")
		if a != path.Clean(a) || a == "." || strings.HasPrefix(a, "../") {
			return nil, fmt.Errorf("busybox --list-full: unexpected applet path %q", a)
		}
		if _, ok := entries[a]; ok {
			continue // bin/busybox itself, or a duplicate
		}
		if d := path.Dir(a); d != "." {
			if _, ok := entries[d]; !ok {
				return nil, fmt.Errorf("busybox applet %s is in a directory (%s) the image does not create", a, d)
			}
		}
		entries[a] = &tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777}
	}

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names) // a parent sorts before its children

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := entries[n]
		hdr.ModTime, hdr.Uid, hdr.Gid = epoch, 0, 0
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(contents[n]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// dockerManifest is one entry of a `docker save` manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeLayout writes img as an OCI image layout in dir, plus manifest.json.
func writeLayout(dir string, img v1.Image, o options) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing OCI layout: %w", err)
	}
	if err := p.AppendImage(img,
		layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": o.name,
			"io.containerd.image.name":          o.name,
		}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: o.arch}),
	); err != nil {
		return fmt.Errorf("writing image to OCI layout: %w", err)
	}

	m, err := img.Manifest()
	if err != nil {
		return err
	}
	dm := dockerManifest{Config: blobPath(m.Config.Digest), RepoTags: []string{o.name}}
	for _, l := range m.Layers {
		dm.Layers = append(dm.Layers, blobPath(l.Digest))
	}
	b, err := json.Marshal([]dockerManifest{dm})
	if err != nil {
		return err
	}
	return p.WriteFile("manifest.json", b, 0o644)
}

func blobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

// writeTarAtomic tars the tree at dir into out (sorted, 0:0, fixed mtimes),
// through a temporary file that is renamed into place.
func writeTarAtomic(out, dir string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	tw := tar.NewWriter(f)
	// WalkDir visits entries in lexical order, so the archive is deterministic.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("unexpected file type in layout: %s", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
