// Command testimage writes a small busybox container image, built from
// Debian's busybox-static binary, as an OCI image archive for agentd's tests:
//
//	go run ./hack/testimage -o OUT.tar [-busybox /bin/busybox] [-name localhost/busybox:latest]
//	    [-cmd '["httpd","-f","-p","80","-h","/var/www"]'] [-user 1002] [-add DEST=SRC]... [-push REF]...
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
//
// The variants critest needs (hack/test-cri.sh, docs/cri-critest.md) come from
// the same image: -cmd replaces its CMD (a JSON array), -user sets its USER, -add
// puts a host file at DEST in the layer (mode 0755 when SRC is executable, else
// 0644; its directory must be one the image has), and -push writes the image to
// a registry on loopback over plain HTTP instead of, or besides, the -o archive.
// Without them the image is byte for byte what it always was.
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
	"net"
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
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the mtime of every file and the image's creation time.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type options struct {
	out     string    // path of the archive to write; "" with push only
	busybox string    // busybox binary to put in the image
	name    string    // image name, e.g. localhost/busybox:latest
	arch    string    // image architecture; runtime.GOARCH if empty
	cmd     []string  // image CMD; nil for ["sh"]
	user    string    // image USER; "" for none
	adds    []addFile // host files added to the layer
	push    []string  // references on loopback registries to push the image to
	log     io.Writer // where to report what was written; nil for silence
}

// addFile is a host file (src) put at dest, a path relative to the image's root.
type addFile struct{ dest, src string }

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseAdds parses -add values, DEST=SRC.
func parseAdds(vals []string) ([]addFile, error) {
	var out []addFile
	for _, v := range vals {
		dest, src, ok := strings.Cut(v, "=")
		if !ok || dest == "" || src == "" {
			return nil, fmt.Errorf("-add %q: want DEST=SRC, e.g. usr/bin/pgrep=hack/critest/pgrep", v)
		}
		out = append(out, addFile{dest: dest, src: src})
	}
	return out, nil
}

func main() {
	o := options{log: os.Stderr}
	flag.StringVar(&o.out, "o", "", "output OCI image archive (required)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "statically linked busybox binary")
	flag.StringVar(&o.name, "name", "localhost/busybox:latest", "image name (registry/repository:tag)")
	cmd := flag.String("cmd", "", `image CMD as a JSON array, e.g. '["httpd","-f","-p","80","-h","/var/www"]' (default ["sh"])`)
	flag.StringVar(&o.user, "user", "", "image USER, e.g. 1002 or www-data:1004")
	var adds, push listFlag
	flag.Var(&adds, "add", "DEST=SRC: put host file SRC at DEST in the image (repeatable)")
	flag.Var(&push, "push", "push the image to REF on a loopback registry over plain HTTP, e.g. 127.0.0.1:5000/team/app:v1 (repeatable)")
	flag.Parse()
	usage := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "testimage:", err)
		}
		fmt.Fprintln(os.Stderr, "usage: testimage -o OUT.tar [-busybox /bin/busybox] [-name localhost/busybox:latest] [-cmd JSON] [-user USER] [-add DEST=SRC]... [-push REF]...")
		os.Exit(2)
	}
	if (o.out == "" && len(push) == 0) || flag.NArg() != 0 {
		usage(nil)
	}
	if *cmd != "" {
		if err := json.Unmarshal([]byte(*cmd), &o.cmd); err != nil || len(o.cmd) == 0 {
			usage(fmt.Errorf("-cmd %q: want a non-empty JSON array of strings", *cmd))
		}
	}
	var err error
	if o.adds, err = parseAdds(adds); err != nil {
		usage(err)
	}
	o.push = push
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
	for _, ref := range o.push {
		if err := push(img, ref); err != nil {
			return err
		}
		if o.log != nil {
			fmt.Fprintf(o.log, "pushed %s\n", ref)
		}
	}
	if o.out == "" {
		return nil
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
	extra := map[string]extraFile{}
	for _, a := range o.adds {
		data, err := os.ReadFile(a.src)
		if err != nil {
			return nil, fmt.Errorf("-add %s=%s: %w", a.dest, a.src, err)
		}
		st, err := os.Stat(a.src)
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if st.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		extra[a.dest] = extraFile{data: data, mode: mode}
	}
	rootfs, err := rootfsTar(bin, strings.Fields(string(list)), extra)
	if err != nil {
		return nil, err
	}
	cmd := o.cmd
	if cmd == nil {
		cmd = []string{"sh"}
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
			Cmd:        cmd,
			User:       o.user,
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

// extraFile is a file -add puts in the layer.
type extraFile struct {
	data []byte
	mode int64
}

// rootfsTar returns the uncompressed layer: busybox, its applet links,
// a skeleton of directories and etc/passwd, etc/group, and the extra files
// (keyed by their path in the image), which may replace none of those.
func rootfsTar(busybox []byte, applets []string, extra map[string]extraFile) ([]byte, error) {
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
	for dest, f := range extra {
		d := strings.TrimPrefix(dest, "/")
		if !filepath.IsLocal(d) || d != path.Clean(d) {
			return nil, fmt.Errorf("-add %q: want a clean path inside the image, e.g. usr/bin/pgrep", dest)
		}
		if _, ok := entries[d]; ok {
			return nil, fmt.Errorf("-add %q: the image already has %s", dest, d)
		}
		if dir := path.Dir(d); dir != "." {
			if h, ok := entries[dir]; !ok || h.Typeflag != tar.TypeDir {
				return nil, fmt.Errorf("-add %q: the image has no directory %s", dest, dir)
			}
		}
		file(d, f.mode, len(f.data))
		contents[d] = f.data
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

// push writes img to ref, which must name a registry on loopback: it is spoken
// to over plain HTTP (after trying HTTPS), which is only safe there.
func push(img v1.Image, ref string) error {
	r, err := name.ParseReference(ref, name.StrictValidation, name.Insecure)
	if err != nil {
		return fmt.Errorf("-push %q: %w", ref, err)
	}
	host := r.Context().RegistryStr()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-push %q: registry %s is not on loopback (127.0.0.1, ::1 or localhost); plain HTTP is refused elsewhere", ref, r.Context().RegistryStr())
	}
	if err := remote.Write(r, img); err != nil {
		return fmt.Errorf("pushing to %s: %w", ref, err)
	}
	return nil
}

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
