package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/image/layerfs"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// archiveIndexDigest reads the manifest digest from the archive's index.json.
func archiveIndexDigest(t *testing.T, archive string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("no index.json in %s: %v", archive, err)
		}
		if hdr.Name != "index.json" {
			continue
		}
		var idx v1.IndexManifest
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		return idx.Manifests[0].Digest.String()
	}
}

func TestImportTestImage(t *testing.T) {
	archive := testutil.TestImage(t) // make image; AGENTD_TEST_IMAGE
	s := openStore(t)

	// What the archive says, read independently through its manifest.json.
	src, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantID := configID(t, src)
	wantDigest := archiveIndexDigest(t, archive)

	imgs, err := s.Import(context.Background(), archive)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if len(imgs) != 1 {
		t.Fatalf("Import returned %d images, want 1", len(imgs))
	}
	img := imgs[0]
	if !reflect.DeepEqual(img.Names, []string{"localhost/busybox:latest"}) {
		t.Errorf("Names = %q, want [localhost/busybox:latest]", img.Names)
	}
	if img.ID != wantID {
		t.Errorf("ID = %s, want the config digest %s", img.ID, wantID)
	}
	if img.Digest != wantDigest {
		t.Errorf("Digest = %s, want the manifest digest of index.json %s", img.Digest, wantDigest)
	}
	if !reflect.DeepEqual(img.Config.Cmd, []string{"sh"}) {
		t.Errorf("Config.Cmd = %q, want [sh]", img.Config.Cmd)
	}
	if img.Config.WorkingDir != "/" || len(img.Config.Env) == 0 {
		t.Errorf("Config = %+v, want WorkingDir / and PATH", img.Config)
	}
	if img.Size <= 0 || img.Created.IsZero() {
		t.Errorf("Size %d, Created %v: want both set", img.Size, img.Created)
	}
	if len(img.Layers) != 1 {
		t.Fatalf("Layers = %q, want 1", img.Layers)
	}
	fi, err := os.Stat(filepath.Join(img.Layers[0], "bin", "busybox"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		t.Errorf("bin/busybox in the layer: %v, %v; want an executable file", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(img.Layers[0], "bin", "sh")); err != nil || target != "/bin/busybox" {
		t.Errorf("bin/sh -> %q (%v), want /bin/busybox", target, err)
	}
	if !strings.HasPrefix(img.Layers[0], filepath.Join(s.Dir(), "layers", "sha256")+"/") {
		t.Errorf("layer %s is not under the store's layers/sha256", img.Layers[0])
	}

	for _, ref := range []string{
		"localhost/busybox", "localhost/busybox:latest", img.ID,
		strings.TrimPrefix(img.ID, "sha256:")[:12], img.ID[:len("sha256:")+4],
		"localhost/busybox@" + img.Digest,
	} {
		got, err := s.Get(ref)
		if err != nil {
			t.Errorf("Get(%q): %v", ref, err)
			continue
		}
		if !reflect.DeepEqual(*got, img) {
			t.Errorf("Get(%q) = %+v, want %+v", ref, *got, img)
		}
	}
	list, err := s.List()
	if err != nil || !reflect.DeepEqual(list, []Image{img}) {
		t.Errorf("List = %+v, %v; want [%+v]", list, err, img)
	}

	// Re-importing is a no-op: the index is not rewritten, the layer not
	// unpacked again.
	indexIno, layerIno := inode(t, filepath.Join(s.Dir(), "images.json")), inode(t, img.Layers[0])
	again, err := s.Import(context.Background(), archive)
	if err != nil {
		t.Fatalf("second Import: %v", err)
	}
	if !reflect.DeepEqual(again, imgs) {
		t.Errorf("second Import = %+v, want %+v", again, imgs)
	}
	if inode(t, filepath.Join(s.Dir(), "images.json")) != indexIno || inode(t, img.Layers[0]) != layerIno {
		t.Errorf("re-import rewrote the index or the layer")
	}

	if err := s.Remove("localhost/busybox"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Get(img.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v, want ErrNotFound", err)
	}
	if names := dirEntries(t, filepath.Join(s.Dir(), "layers", "sha256")); len(names) != 0 {
		t.Errorf("layers left after Remove: %q", names)
	}
	if names := dirEntries(t, filepath.Join(s.Dir(), "blobs", "sha256")); len(names) != 0 {
		t.Errorf("blobs left after Remove: %q", names)
	}
}

func TestImportDockerArchive(t *testing.T) {
	shared := gzLayer(t, dir("bin"), file("bin/tool", "tool v1"))
	app := newImage(t, runtime.GOARCH, []string{"/bin/tool"}, shared, gzLayer(t, file("app.conf", "x=1")))
	// Uncompressed layers, as `docker save` before docker 25 writes them.
	other := newImage(t, runtime.GOARCH, []string{"other"}, rawLayer(t, types.DockerUncompressedLayer, file("other", "o")))
	archive := writeDockerArchive(t, map[string]v1.Image{
		"example.com/team/app:v1": app,
		"other":                   other,
	})

	s := openStore(t)
	imgs, err := s.Import(context.Background(), archive)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if len(imgs) != 2 {
		t.Fatalf("Import returned %d images, want 2: %+v", len(imgs), imgs)
	}

	got, err := s.Get("example.com/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configID(t, app) {
		t.Errorf("app ID = %s, want %s", got.ID, configID(t, app))
	}
	wantCfg := Config{Cmd: []string{"/bin/tool"}, Env: []string{"PATH=/bin"}, WorkingDir: "/work", User: "1000:1000", ExposedPorts: map[string]struct{}{"8080/tcp": {}}}
	if !reflect.DeepEqual(got.Config, wantCfg) {
		t.Errorf("app Config = %+v, want %+v", got.Config, wantCfg)
	}
	if len(got.Layers) != 2 {
		t.Fatalf("app Layers = %q", got.Layers)
	}
	if b, err := os.ReadFile(filepath.Join(got.Layers[0], "bin/tool")); err != nil || string(b) != "tool v1" {
		t.Errorf("bottom layer bin/tool = %q, %v", b, err)
	}
	if got.Digest == "" {
		t.Errorf("app has no manifest digest")
	}
	if byDigest, err := s.Get("example.com/team/app@" + got.Digest); err != nil || byDigest.ID != got.ID {
		t.Errorf("Get by digest reference: %v, %v", byDigest, err)
	}
	if _, err := s.Get("example.com/team/other@" + got.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("a digest reference in another repository resolved: %v", err)
	}

	o, err := s.Get("docker.io/library/other:latest")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != configID(t, other) || !reflect.DeepEqual(o.Names, []string{"docker.io/library/other:latest"}) {
		t.Errorf("other = %+v", o)
	}
	// An uncompressed layer's size is its tar size.
	if sz, _ := rawLayerSize(t, other); o.Size != sz {
		t.Errorf("other Size = %d, want %d", o.Size, sz)
	}

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range list {
		names = append(names, img.Names...)
	}
	if want := []string{"docker.io/library/other:latest", "example.com/team/app:v1"}; !reflect.DeepEqual(names, want) {
		t.Errorf("List names = %q, want %q (sorted)", names, want)
	}
}

func rawLayerSize(t *testing.T, img v1.Image) (int64, error) {
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls[0].Size()
}

func TestImportOCIArchive(t *testing.T) {
	base := gzLayer(t, dir("etc"), file("etc/os-release", "ID=test"))
	named := newImage(t, runtime.GOARCH, []string{"named"}, base)
	mine := newImage(t, runtime.GOARCH, []string{"mine"}, base, gzLayer(t, file("arch", runtime.GOARCH)))
	foreign := newImage(t, "other", []string{"foreign"}, base, gzLayer(t, file("arch", "other")))
	unnamed := newImage(t, runtime.GOARCH, []string{"unnamed"}, rawLayer(t, types.OCIUncompressedLayer, file("u", "u")))

	archive := writeOCIArchive(t,
		// docker ≥ 25: ref.name is just the tag.
		ociItem{img: named, annotations: map[string]string{
			annotationRefName:        "1.36",
			annotationContainerdName: "docker.io/library/busybox:1.36",
		}},
		ociItem{idx: platformIndex(t, mine, foreign), annotations: map[string]string{
			annotationRefName: "localhost:5000/multi:2",
		}},
		ociItem{img: unnamed, annotations: map[string]string{annotationRefName: "latest"}},
	)
	s := openStore(t)
	imgs, err := s.Import(context.Background(), archive)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if len(imgs) != 3 {
		t.Fatalf("Import returned %d images, want 3", len(imgs))
	}
	for _, tc := range []struct {
		ref    string
		img    v1.Image
		names  []string
		layers int
	}{
		{"busybox:1.36", named, []string{"docker.io/library/busybox:1.36"}, 1},
		{"localhost:5000/multi:2", mine, []string{"localhost:5000/multi:2"}, 2},
		{configID(t, unnamed), unnamed, nil, 1},
	} {
		got, err := s.Get(tc.ref)
		if err != nil {
			t.Errorf("Get(%q): %v", tc.ref, err)
			continue
		}
		if got.ID != configID(t, tc.img) || got.Digest != manifestDigest(t, tc.img) {
			t.Errorf("Get(%q) = %s (manifest %s), want %s (manifest %s)", tc.ref, got.ID, got.Digest, configID(t, tc.img), manifestDigest(t, tc.img))
		}
		if !reflect.DeepEqual(got.Names, tc.names) || len(got.Layers) != tc.layers {
			t.Errorf("Get(%q): names %q, %d layers; want %q, %d", tc.ref, got.Names, len(got.Layers), tc.names, tc.layers)
		}
	}
	if got, err := s.Get("localhost:5000/multi:2"); err == nil {
		if b, err := os.ReadFile(filepath.Join(got.Layers[1], "arch")); err != nil || string(b) != runtime.GOARCH {
			t.Errorf("multi-platform import took the wrong image: arch = %q, %v", b, err)
		}
	}
	// The shared base layer is unpacked once: 1 + 1 (mine) + 1 (unnamed).
	if n := dirEntries(t, filepath.Join(s.Dir(), "layers", "sha256")); len(n) != 3 {
		t.Errorf("%d layer directories, want 3: %q", len(n), n)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || len(list[2].Names) != 0 {
		t.Errorf("List: want the unnamed image last, got %+v", list)
	}
}

// The combined form docker ≥ 25 writes: an OCI layout whose index.json and
// manifest.json both name the image.
func TestImportCombinedArchiveMergesNames(t *testing.T) {
	img := newImage(t, runtime.GOARCH, []string{"sh"}, rawLayer(t, types.OCIUncompressedLayer, file("f", "f")))
	d := writeOCILayout(t, []ociItem{{img: img, annotations: map[string]string{
		annotationRefName:        "latest",
		annotationContainerdName: "docker.io/library/app:latest",
	}}}, [][]string{{"app:latest", "app:v2"}})
	s := openStore(t)
	imgs, err := s.Import(context.Background(), tarDir(t, d))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	want := []string{"docker.io/library/app:latest", "docker.io/library/app:v2"}
	if len(imgs) != 1 || !reflect.DeepEqual(imgs[0].Names, want) {
		t.Fatalf("Import = %+v, want one image named %q", imgs, want)
	}
	if imgs[0].Digest != manifestDigest(t, img) {
		t.Errorf("Digest = %s, want the OCI manifest's %s", imgs[0].Digest, manifestDigest(t, img))
	}
}

// TestImportRefusesNamesThatReadAsPaths: an archive cannot give an image a name
// no manifest could use (spec's image grammar), through RepoTags or its
// annotations, and a refused import stores nothing.
func TestImportRefusesNamesThatReadAsPaths(t *testing.T) {
	img := newImage(t, runtime.GOARCH, []string{"sh"}, rawLayer(t, types.OCIUncompressedLayer, file("f", "f")))
	for _, tc := range []struct {
		what     string
		ann      map[string]string
		repoTags [][]string
	}{
		{"RepoTags", map[string]string{annotationRefName: "latest"}, [][]string{{"../x:latest"}}},
		{"containerd annotation", map[string]string{annotationContainerdName: "localhost/../x:1"}, nil},
	} {
		t.Run(tc.what, func(t *testing.T) {
			d := writeOCILayout(t, []ociItem{{img: img, annotations: tc.ann}}, tc.repoTags)
			s := openStore(t)
			if imgs, err := s.Import(context.Background(), tarDir(t, d)); err == nil {
				t.Fatalf("Import = %+v, want an error", imgs)
			} else if !strings.Contains(err.Error(), "..") {
				t.Errorf("Import error %q does not name the reference", err)
			}
			if imgs, err := s.List(); err != nil || len(imgs) != 0 {
				t.Errorf("List = %+v, %v after a refused import, want nothing", imgs, err)
			}
		})
	}
}

// twoLayerImage's upper layer deletes a file, deletes a symlink and makes a
// directory opaque.
func twoLayerImage(t *testing.T) v1.Image {
	lower := gzLayer(t,
		dir("etc"), file("etc/passwd", "root"), file("etc/hosts", "127.0.0.1"),
		dir("data"), file("data/a", "a"), dir("data/sub"), file("data/sub/b", "b"),
		dir("usr"), dir("usr/lib"), file("usr/lib/libc.so", "libc"), symlink("lib", "usr/lib"),
	)
	upper := gzLayer(t,
		dir("etc"), whiteout("etc/hosts"),
		dir("data"), opaque("data"), file("data/new", "new"),
		whiteout("lib"),
		file("etc/passwd", "root v2"),
	)
	return newImage(t, runtime.GOARCH, []string{"sh"}, lower, upper)
}

var twoLayerTree = map[string]string{
	".":               "dir 755 0:0",
	"etc":             "dir 755 0:0",
	"etc/passwd":      "file 644 0:0 root v2",
	"data":            "dir 755 0:0",
	"data/new":        "file 644 0:0 new",
	"usr":             "dir 755 0:0",
	"usr/lib":         "dir 755 0:0",
	"usr/lib/libc.so": "file 644 0:0 libc",
}

func TestRootImportedLayersMerge(t *testing.T) {
	testutil.RequiresRoot(t)
	img := twoLayerImage(t)
	for _, tc := range []struct {
		format  string
		archive string
	}{
		{"docker", writeDockerArchive(t, map[string]v1.Image{"localhost/two:1": img})},
		{"oci", writeOCIArchive(t, ociItem{img: img, annotations: map[string]string{annotationRefName: "localhost/two:1"}})},
	} {
		t.Run(tc.format, func(t *testing.T) {
			s := openStore(t)
			if _, err := s.Import(context.Background(), tc.archive); err != nil {
				t.Fatalf("Import: %v", err)
			}
			got, err := s.Get("localhost/two:1")
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Layers) != 2 {
				t.Fatalf("Layers = %q", got.Layers)
			}

			dest := filepath.Join(t.TempDir(), "rootfs")
			if err := layerfs.Apply(dest, got.Layers); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			compareTree(t, "Apply", tree(t, dest), twoLayerTree)

			base := t.TempDir()
			merged, upper, work := filepath.Join(base, "merged"), filepath.Join(base, "upper"), filepath.Join(base, "work")
			for _, d := range []string{merged, upper, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			lower := slices.Clone(got.Layers)
			slices.Reverse(lower) // overlayfs wants the top layer first
			opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
			if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				t.Fatalf("mount overlay (%s): %v", opts, err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(merged, 0); err != nil {
					t.Errorf("unmount %s: %v", merged, err)
				}
			})
			compareTree(t, "overlay mount", tree(t, merged), twoLayerTree)
		})
	}
}

func TestImportCorruptArchive(t *testing.T) {
	good := gzLayer(t, file("good", "good"))
	other := gzLayer(t, file("other", "other"))
	img := newImage(t, runtime.GOARCH, []string{"sh"}, good)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layerBlob := "blobs/sha256/" + m.Layers[0].Digest.Hex
	otherBytes := func() []byte {
		rc, err := other.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()

	for _, tc := range []struct {
		name    string
		blob    string
		corrupt func(b []byte) []byte
	}{
		{"flipped byte in a layer", layerBlob, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }},
		{"layer replaced by another valid layer", layerBlob, func([]byte) []byte { return otherBytes }},
		{"truncated layer", layerBlob, func(b []byte) []byte { return b[:len(b)-10] }},
		{"edited config", "blobs/sha256/" + m.Config.Digest.Hex, func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"sh"`, `"rm"`, 1))
		}},
		{"edited manifest", "blobs/sha256/" + manifestDigest(t, img)[len("sha256:"):], func(b []byte) []byte {
			return append(b, ' ')
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := writeOCILayout(t, []ociItem{{img: img, annotations: map[string]string{annotationRefName: "localhost/bad:1"}}}, nil)
			p := filepath.Join(d, tc.blob)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.corrupt(b), 0o644); err != nil {
				t.Fatal(err)
			}
			s := openStore(t)
			_, err = s.Import(context.Background(), tarDir(t, d))
			if err == nil {
				t.Fatal("Import of a corrupt archive succeeded")
			}
			if !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("error %q does not wrap ErrDigestMismatch", err)
			}
			t.Logf("error: %v", err)
			if list, err := s.List(); err != nil || len(list) != 0 {
				t.Errorf("List after a failed import = %+v, %v; want nothing", list, err)
			}
			for _, sub := range []string{"layers/sha256", "blobs/sha256", "tmp"} {
				if n := dirEntries(t, filepath.Join(s.Dir(), sub)); len(n) != 0 {
					t.Errorf("%s left after a failed import: %q", sub, n)
				}
			}
		})
	}
}

func TestConcurrentImports(t *testing.T) {
	img := newImage(t, runtime.GOARCH, []string{"sh"},
		gzLayer(t, file("a", strings.Repeat("a", 1<<20))), gzLayer(t, file("b", strings.Repeat("b", 1<<20))))
	archive := writeDockerArchive(t, map[string]v1.Image{"localhost/race:1": img})
	dir := filepath.Join(t.TempDir(), "images")

	// Two Stores on one directory, as two agentctl processes would have.
	const n = 2
	var wg sync.WaitGroup
	results := make([][]Image, n)
	errs := make([]error, n)
	for i := range n {
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Import(context.Background(), archive)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Import %d: %v", i, errs[i])
		}
	}
	if !reflect.DeepEqual(results[0], results[1]) {
		t.Errorf("the imports disagree: %+v vs %+v", results[0], results[1])
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != configID(t, img) {
		t.Fatalf("List = %+v, %v; want the one image", list, err)
	}
	if got := dirEntries(t, filepath.Join(dir, "layers", "sha256")); len(got) != 2 {
		t.Errorf("layer directories %q, want 2", got)
	}
	if got := dirEntries(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp not empty: %q", got)
	}
	for _, l := range list[0].Layers {
		if _, err := os.Stat(l); err != nil {
			t.Errorf("layer: %v", err)
		}
	}
}

// importHelperEnv makes the test binary a helper process that imports one
// archive into one store and exits (see TestMain).
const importHelperEnv = "AGENTD_IMAGE_TEST_IMPORT"

// removeHelperEnv makes the test binary a helper process that removes one
// reference from one store and exits (see TestMain).
const removeHelperEnv = "AGENTD_IMAGE_TEST_REMOVE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(importHelperEnv); spec != "" {
		dir, archive, _ := strings.Cut(spec, "\n")
		s, err := Open(dir)
		if err == nil {
			_, err = s.Import(context.Background(), archive)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(removeHelperEnv); spec != "" {
		dir, ref, _ := strings.Cut(spec, "\n")
		s, err := Open(dir)
		if err == nil {
			err = s.Remove(ref)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Processes, not goroutines, as agentd and agentctl would be.
func TestConcurrentImportsAcrossProcesses(t *testing.T) {
	img := newImage(t, runtime.GOARCH, []string{"sh"},
		gzLayer(t, file("a", strings.Repeat("a", 1<<20))), gzLayer(t, file("b", strings.Repeat("b", 1<<20))))
	archive := writeDockerArchive(t, map[string]v1.Image{"localhost/race:2": img})
	dir := filepath.Join(t.TempDir(), "images")

	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), importHelperEnv+"="+dir+"\n"+archive)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("import process %d: %v: %s", i, err, outs[i])
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("localhost/race:2")
	if err != nil || got.ID != configID(t, img) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if n := dirEntries(t, filepath.Join(dir, "layers", "sha256")); len(n) != 2 {
		t.Errorf("layer directories %q, want 2", n)
	}
	if n := dirEntries(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("tmp not empty: %q", n)
	}
}

func TestImportWaitsForLockWithContext(t *testing.T) {
	s := openStore(t)
	unlock, err := s.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Import(ctx, "/nonexistent"); !errors.Is(err, context.Canceled) {
		t.Errorf("Import with the store locked and ctx cancelled: %v, want context.Canceled", err)
	}
}

func TestNameMovesAndRemoveCollects(t *testing.T) {
	shared := gzLayer(t, file("shared", "s"))
	a := newImage(t, runtime.GOARCH, []string{"a"}, shared, gzLayer(t, file("a", "a")))
	b := newImage(t, runtime.GOARCH, []string{"b"}, shared, gzLayer(t, file("b", "b")))
	s := openStore(t)
	ctx := context.Background()
	if _, err := s.Import(ctx, writeDockerArchive(t, map[string]v1.Image{"app:1": a, "app:keep": a})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, writeDockerArchive(t, map[string]v1.Image{"app:1": b})); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("app:1")
	if err != nil || got.ID != configID(t, b) {
		t.Fatalf("app:1 = %+v, %v; want image b", got, err)
	}
	ga, err := s.Get(configID(t, a))
	if err != nil || !reflect.DeepEqual(ga.Names, []string{"docker.io/library/app:keep"}) {
		t.Fatalf("image a = %+v, %v; want it to keep only app:keep", ga, err)
	}
	layers := filepath.Join(s.Dir(), "layers", "sha256")
	if n := dirEntries(t, layers); len(n) != 3 {
		t.Fatalf("layers %q, want 3 (one shared)", n)
	}

	// Removing b's only name removes b and its own layer, not the shared one.
	if err := s.Remove("app:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(configID(t, b)); !errors.Is(err, ErrNotFound) {
		t.Errorf("image b after removing its last name: %v", err)
	}
	if n := dirEntries(t, layers); len(n) != 2 {
		t.Errorf("layers after removing b: %q, want a's 2", n)
	}
	for _, l := range ga.Layers {
		if _, err := os.Stat(l); err != nil {
			t.Errorf("a's layer: %v", err)
		}
	}
	// By ID: the image goes with all its names.
	if err := s.Remove(configID(t, a)[:len("sha256:")+8]); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List = %+v, %v; want nothing", list, err)
	}
	for _, sub := range []string{"layers/sha256", "blobs/sha256"} {
		if n := dirEntries(t, filepath.Join(s.Dir(), sub)); len(n) != 0 {
			t.Errorf("%s left: %q", sub, n)
		}
	}
}

func TestGetNotFound(t *testing.T) {
	s := openStore(t)
	for _, ref := range []string{"nope", "sha256:" + strings.Repeat("ab", 32), "abcdef", "localhost/nope@sha256:" + strings.Repeat("0", 64)} {
		_, err := s.Get(ref)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", ref, err)
			continue
		}
		if !strings.Contains(err.Error(), ref) {
			t.Errorf("Get(%q): error %q does not name the reference", ref, err)
		}
	}
	if err := s.Remove("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Remove(nope) = %v, want ErrNotFound naming nope", err)
	}
	if _, err := s.Get("Not A Name"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an invalid reference = %v, want an invalid-reference error", err)
	}
}

// As `docker save | gzip` writes it; docker load reads those too.
func TestImportGzippedArchive(t *testing.T) {
	img := newImage(t, runtime.GOARCH, []string{"sh"}, gzLayer(t, file("f", "f")))
	plain, err := os.ReadFile(writeDockerArchive(t, map[string]v1.Image{"localhost/gz:1": img}))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(plain)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	imgs, err := s.Import(context.Background(), archive)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if len(imgs) != 1 || imgs[0].ID != configID(t, img) || !reflect.DeepEqual(imgs[0].Names, []string{"localhost/gz:1"}) {
		t.Errorf("Import = %+v", imgs)
	}
}

func TestImportRejectsNonArchives(t *testing.T) {
	s := openStore(t)
	empty := filepath.Join(t.TempDir(), "empty.tar")
	if err := os.WriteFile(empty, make([]byte, 1024), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{empty, "/nonexistent.tar"} {
		if _, err := s.Import(context.Background(), p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Import(%s) = %v, want an error naming the archive", p, err)
		}
	}
}
