package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// crashHelper runs the test binary as an import (or remove) helper with the
// crash point armed, and fails the test unless the helper died of SIGKILL
// there: a crash point that is never reached proves nothing.
func crashHelper(t *testing.T, point, helperEnv, spec string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+spec, crashpoint.Env+"="+point)
	out, err := cmd.CombinedOutput()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the helper was to be killed at %s: %v\n%s", point, err, out)
	}
}

// storeFiles is what is on disk in a store, by kind.
type storeFiles struct {
	layers, blobs, tmp, temps []string
}

func readStoreFiles(t *testing.T, dir string) storeFiles {
	t.Helper()
	var f storeFiles
	for _, n := range dirEntries(t, filepath.Join(dir, "layers", "sha256")) {
		f.layers = append(f.layers, "sha256:"+n)
	}
	for _, n := range dirEntries(t, filepath.Join(dir, "blobs", "sha256")) {
		f.blobs = append(f.blobs, "sha256:"+n)
	}
	f.tmp = dirEntries(t, filepath.Join(dir, "tmp"))
	for _, n := range dirEntries(t, dir) {
		if atomicfile.IsTemp(n) {
			f.temps = append(f.temps, n)
		}
	}
	return f
}

// referenced lists the layers and blobs the store's index names.
func referenced(t *testing.T, s *Store) (layers, blobs []string) {
	t.Helper()
	idx, err := s.loadIndex()
	if err != nil {
		t.Fatal(err)
	}
	for id, rec := range idx.Images {
		blobs = append(blobs, id, rec.Digest)
		layers = append(layers, rec.Layers...)
	}
	slices.Sort(layers)
	slices.Sort(blobs)
	return slices.Compact(layers), slices.Compact(blobs)
}

// peek is the store as a reader that did not open it finds it (agentd's
// open store while agentctl --root crashed), before any clean-up.
func peek(dir string) *Store {
	return &Store{dir: dir, limits: DefaultLimits, statfs: unix.Statfs}
}

// imageNames lists the names of the images a reader of the store sees, and fails
// the test if any of them misses a layer or its config.
func imageNames(t *testing.T, s *Store) []string {
	t.Helper()
	list, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, img := range list {
		names = append(names, img.Names...)
		for _, l := range img.Layers {
			if _, err := os.Stat(l); err != nil {
				t.Errorf("image %v is listed but misses its layer: %v", img.Names, err)
			}
		}
	}
	return names
}

// assertClean checks that the store holds what its index names and nothing
// more: no layer or blob of an unfinished import, nothing in tmp/, no
// temporary index.
func assertClean(t *testing.T, s *Store) {
	t.Helper()
	layers, blobs := referenced(t, s)
	f := readStoreFiles(t, s.Dir())
	if !slices.Equal(f.layers, layers) {
		t.Errorf("layers/ holds %q, the index names %q", f.layers, layers)
	}
	if !slices.Equal(f.blobs, blobs) {
		t.Errorf("blobs/ holds %q, the index names %q", f.blobs, blobs)
	}
	if len(f.tmp) > 0 {
		t.Errorf("tmp/ holds %q", f.tmp)
	}
	if len(f.temps) > 0 {
		t.Errorf("the store holds temporary files %q", f.temps)
	}
}

// crashImages is a base image in the store, and an archive of an image that
// shares its layer and adds two.
type crashImages struct {
	base, app   string    // archives
	appLayers   []v1.Hash // the two new ones
	appFiles    []string  // a file of each new layer
	baseN, appN string    // names
	appID       string
}

func newCrashImages(t *testing.T) *crashImages {
	t.Helper()
	shared := gzLayer(t, dir("etc"), file("etc/os-release", "ID=test"))
	one := gzLayer(t, file("one", strings.Repeat("1", 64<<10)))
	two := gzLayer(t, file("two", strings.Repeat("2", 64<<10)))
	c := &crashImages{baseN: "localhost/base:1", appN: "localhost/app:1", appFiles: []string{"one", "two"}}
	base := newImage(t, runtime.GOARCH, []string{"sh"}, shared)
	app := newImage(t, runtime.GOARCH, []string{"app"}, shared, one, two)
	c.base = writeOCIArchive(t, ociItem{img: base, annotations: map[string]string{annotationRefName: c.baseN}})
	c.app = writeOCIArchive(t, ociItem{img: app, annotations: map[string]string{annotationRefName: c.appN}})
	c.appID = configID(t, app)
	for _, l := range []v1.Layer{one, two} {
		h, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		c.appLayers = append(c.appLayers, h)
	}
	return c
}

// assertAppWhole checks that app is in s, whole: its layers hold their files.
func (c *crashImages) assertAppWhole(t *testing.T, s *Store) {
	t.Helper()
	img, err := s.Get(c.appN)
	if err != nil {
		t.Fatalf("Get %s: %v", c.appN, err)
	}
	if img.ID != c.appID || len(img.Layers) != 3 {
		t.Fatalf("Get %s = %s with %d layers, want %s with 3", c.appN, img.ID, len(img.Layers), c.appID)
	}
	for i, f := range c.appFiles {
		fi, err := os.Stat(filepath.Join(img.Layers[i+1], f))
		if err != nil || fi.Size() != 64<<10 {
			t.Errorf("layer %d of %s: %s is %v, %v; want 64 KiB", i+2, c.appN, f, fi, err)
		}
	}
}

// An import killed at any of its steps leaves no image a reader would list or
// use half made, and Open removes what it left; the import then works.
func TestImportKilledAtEachStep(t *testing.T) {
	for _, tc := range []struct {
		point string
		// left says what the killed import must have left, so that the
		// test shows Open removing something.
		left      func(f storeFiles, c *crashImages) bool
		committed bool // the import is done: the image is there
	}{
		{"image-layer-unpacked", func(f storeFiles, c *crashImages) bool { return len(f.tmp) > 0 }, false},
		{"image-layer-unpacked@2", func(f storeFiles, c *crashImages) bool { return len(f.tmp) > 0 }, false},
		{"image-layer-committed", func(f storeFiles, c *crashImages) bool { return len(f.layers) == 2 }, false},
		{"image-layer-committed@2", func(f storeFiles, c *crashImages) bool { return len(f.layers) == 3 }, false},
		{"image-blobs-written", func(f storeFiles, c *crashImages) bool { return len(f.layers) == 3 && len(f.blobs) == 4 }, false},
		{"image-index-synced", func(f storeFiles, c *crashImages) bool { return len(f.temps) == 1 }, false},
		{"image-index-written", func(f storeFiles, c *crashImages) bool { return len(f.tmp) > 0 }, true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			c := newCrashImages(t)
			s := openStore(t)
			if _, err := s.Import(context.Background(), c.base); err != nil {
				t.Fatal(err)
			}
			crashHelper(t, tc.point, importHelperEnv, s.Dir()+"\n"+c.app)

			// What a reader sees before anyone cleans up.
			want := []string{c.baseN}
			if tc.committed {
				want = []string{c.appN, c.baseN}
			}
			if got := imageNames(t, peek(s.Dir())); !slices.Equal(got, want) {
				t.Errorf("images after the kill: %q, want %q", got, want)
			}
			if _, err := peek(s.Dir()).Get(c.appID); tc.committed == (err != nil) {
				t.Errorf("Get %s after the kill: %v", c.appID, err)
			}
			if f := readStoreFiles(t, s.Dir()); !tc.left(f, c) {
				t.Errorf("the killed import did not leave what %s should: %+v", tc.point, f)
			}

			s2 := reopenAfterKill(t, s.Dir(), want)

			if _, err := s2.Import(context.Background(), c.app); err != nil {
				t.Fatalf("import after the kill: %v", err)
			}
			c.assertAppWhole(t, s2)
			assertClean(t, s2)
		})
	}
}

// A remove killed while it deletes layers, or before its index is in place,
// leaves the store as after the remove, or as before it: never an image with
// half its layers, nor half a layer where an import would take it for whole.
func TestRemoveKilledAtEachStep(t *testing.T) {
	for _, tc := range []struct {
		point   string
		removed bool
	}{
		{"image-index-synced", false},
		{"image-gc-layer-moved", true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			c := newCrashImages(t)
			s := openStore(t)
			for _, a := range []string{c.base, c.app} {
				if _, err := s.Import(context.Background(), a); err != nil {
					t.Fatal(err)
				}
			}
			crashHelper(t, tc.point, removeHelperEnv, s.Dir()+"\n"+c.appN)

			want := []string{c.appN, c.baseN}
			if tc.removed {
				want = []string{c.baseN}
			}
			if got := imageNames(t, peek(s.Dir())); !slices.Equal(got, want) {
				t.Errorf("images after the kill: %q, want %q", got, want)
			}
			f := readStoreFiles(t, s.Dir())
			for _, l := range c.appLayers {
				if has := slices.Contains(f.layers, l.String()); has == tc.removed {
					t.Errorf("layer %s of the removed image in layers/: %v", l, has)
				}
			}

			s2 := reopenAfterKill(t, s.Dir(), want)
			if !tc.removed {
				c.assertAppWhole(t, s2)
			}
			if _, err := s2.Import(context.Background(), c.app); err != nil {
				t.Fatalf("import after the kill: %v", err)
			}
			c.assertAppWhole(t, s2)
			assertClean(t, s2)
		})
	}
}

// reopenAfterKill opens the store a killed writer left, as the next agentd or
// agentctl does, and checks that it then holds exactly the images want and
// nothing else.
func reopenAfterKill(t *testing.T, dir string, want []string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after the kill: %v", err)
	}
	assertClean(t, s)
	if got := imageNames(t, s); !slices.Equal(got, want) {
		t.Errorf("images after Open: %q, want %q", got, want)
	}
	return s
}
