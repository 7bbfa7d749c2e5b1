package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

func TestChargedSize(t *testing.T) {
	for _, tc := range []struct{ size, want int64 }{
		{0, 4096}, {1, 4096}, {4096, 4096}, {4097, 8192}, {1 << 30, 1 << 30}, {1<<63 - 1, 1<<63 - 1},
	} {
		if got := chargedSize(tc.size); got != tc.want {
			t.Errorf("chargedSize(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestExceeded(t *testing.T) {
	for _, tc := range []struct {
		name         string
		l            Limits
		image, store int64
		want         string
	}{
		{"no limits", Limits{}, 1 << 62, 1 << 62, ""},
		{"image within", Limits{MaxImageSize: 100}, 100, 1 << 40, ""},
		{"image over", Limits{MaxImageSize: 100}, 101, 101, "image-max-size"},
		{"store within", Limits{MaxStoreSize: 100}, 100, 100, ""},
		{"store over", Limits{MaxStoreSize: 100}, 10, 101, "image-store-max-size"},
		{"both over: the image's limit is named", Limits{MaxImageSize: 10, MaxStoreSize: 10}, 11, 11, "image-max-size"},
	} {
		if got, _ := exceeded(tc.l, tc.image, tc.store); got != tc.want {
			t.Errorf("%s: exceeded = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBudgetDoesNotWrap(t *testing.T) {
	b := &budget{limits: Limits{MaxImageSize: 1 << 30, MaxStoreSize: 1 << 40}}
	if err := b.charge(chargedSize(100)); err != nil {
		t.Fatal(err)
	}
	// A sparse entry that claims the largest size a tar header can give.
	if err := b.charge(chargedSize(1<<63 - 1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("charging an exabyte-sized entry = %v, want ErrTooLarge", err)
	}
	if b.image < 0 || b.store < 0 {
		t.Errorf("counts wrapped: image %d, store %d", b.image, b.store)
	}
}

func TestBelowReserve(t *testing.T) {
	const gib = 1 << 30
	fs := func(sizeGiB, availMiB uint64, files, ffree uint64) *unix.Statfs_t {
		return &unix.Statfs_t{Bsize: 4096, Blocks: sizeGiB * gib / 4096, Bavail: availMiB << 20 / 4096, Files: files, Ffree: ffree}
	}
	for _, tc := range []struct {
		name   string
		st     *unix.Statfs_t
		refuse bool
	}{
		{"big disk, 2 GiB free", fs(500, 2048, 1e6, 5e5), false},
		{"big disk, 900 MiB free: below 1 GiB", fs(500, 900, 1e6, 5e5), true},
		{"10 GiB disk, 600 MiB free: 5% is 512 MiB", fs(10, 600, 1e6, 5e5), false},
		{"10 GiB disk, 500 MiB free", fs(10, 500, 1e6, 5e5), true},
		{"inodes: 6% free", fs(500, 4096, 1e6, 6e4), false},
		{"inodes: 4% free", fs(500, 4096, 1e6, 4e4), true},
		{"no inode count (btrfs)", fs(500, 4096, 0, 0), false},
	} {
		err := belowReserve(tc.st)
		if (err != nil) != tc.refuse {
			t.Errorf("%s: belowReserve = %v, want refused %v", tc.name, err, tc.refuse)
		}
		if err != nil && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v is not ErrTooLarge", tc.name, err)
		}
	}
}

// bombLayer is a gzip layer of files regular files of size bytes of 'A'
// each: a few KiB that unpack to files*size.
func bombLayer(t *testing.T, files int, size int64) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	chunk := bytes.Repeat([]byte{'A'}, 1<<20)
	for i := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("bomb/f%d", i), Mode: 0o644, Size: size, ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
		for left := size; left > 0; left -= int64(len(chunk)) {
			if _, err := tw.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gzipBytesLayer(t, buf.Bytes())
}

// gzipBytesLayer is the layer of gzip-compressed tar bytes.
func gzipBytesLayer(t *testing.T, gz []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// gzipped is l compressed with gzip.
func gzipped(t *testing.T, l v1.Layer) v1.Layer {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.Copy(zw, rc); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gzipBytesLayer(t, buf.Bytes())
}

// layerOf is an uncompressed layer of raw tar bytes (entries, testutil.SparseTarEntry output, trailing data).
func layerOf(t *testing.T, parts ...any) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var trailing []byte
	for _, p := range parts {
		switch p := p.(type) {
		case entry:
			if err := tw.WriteHeader(p.hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tw, p.body); err != nil {
				t.Fatal(err)
			}
		case []byte:
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			buf.Write(p)
		case trailer:
			trailing = p
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Write(trailing)
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// trailer is data after the end of a layer's tar archive.
type trailer []byte

func ociArchive(t *testing.T, name string, layers ...v1.Layer) string {
	t.Helper()
	img := newImage(t, runtime.GOARCH, []string{"sh"}, layers...)
	return writeOCIArchive(t, ociItem{img: img, annotations: map[string]string{annotationRefName: name}})
}

// assertNothingLeft checks that a failed import left the store as before:
// wantLayers layer directories, the images of wantImages, an empty tmp/.
func assertNothingLeft(t *testing.T, s *Store, wantLayers int, wantImages ...string) {
	t.Helper()
	if n := dirEntries(t, filepath.Join(s.Dir(), "layers", "sha256")); len(n) != wantLayers {
		t.Errorf("%d layer directories after the failed import, want %d: %q", len(n), wantLayers, n)
	}
	if n := dirEntries(t, s.tmpDir()); len(n) != 0 {
		t.Errorf("tmp/ holds %q after the failed import", n)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Names...)
	}
	if strings.Join(names, ",") != strings.Join(wantImages, ",") {
		t.Errorf("images after the failed import: %q, want %q", names, wantImages)
	}
	for _, i := range list {
		for _, l := range i.Layers {
			if _, err := os.Stat(l); err != nil {
				t.Errorf("image %v lost its layer: %v", i.Names, err)
			}
		}
	}
}

func wantLimitError(t *testing.T, err error, setting string, parts ...string) *LimitError {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Import = %v, want a *LimitError", err)
	}
	if le.Setting != setting {
		t.Errorf("error names setting %q, want %q: %v", le.Setting, setting, err)
	}
	for _, p := range append(parts, "nothing was imported") {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
	t.Logf("error: %v", err)
	return le
}

func TestImportCompressedBombStopsAtTheImageLimit(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 1 << 20})
	base := gzLayer(t, dir("etc"), file("etc/os-release", "ID=test"))
	if _, err := s.Import(context.Background(), ociArchive(t, "localhost/base:1", base)); err != nil {
		t.Fatal(err)
	}

	// 32 MiB in a few KiB; it shares base with the image in the store.
	bomb := ociArchive(t, "localhost/bomb:1", base, bombLayer(t, 8, 4<<20))
	if fi, err := os.Stat(bomb); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("the bomb archive should be small: %v, %v", fi.Size(), err)
	}
	_, err := s.Import(context.Background(), bomb)
	wantLimitError(t, err, "image-max-size", "localhost/bomb:1", "image-max-size (1MiB)", bomb, `entry "bomb/f0" of layer 2 of 2, sha256:`)
	assertNothingLeft(t, s, 1, "localhost/base:1")
}

func TestImportDockerArchiveBomb(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 1 << 20})
	img := newImage(t, runtime.GOARCH, []string{"sh"}, bombLayer(t, 8, 4<<20))
	_, err := s.Import(context.Background(), writeDockerArchive(t, map[string]v1.Image{"localhost/bomb:docker": img}))
	wantLimitError(t, err, "image-max-size", "localhost/bomb:docker", "layer 1 of 1")
	assertNothingLeft(t, s, 0)
}

func TestImportSparseFile(t *testing.T) {
	sparse := layerOf(t, testutil.SparseTarEntry("disk.img", 0o644, 1<<30,
		testutil.SparseChunk{Offset: 512 << 20, Data: []byte("middle")}))

	t.Run("its logical size counts", func(t *testing.T) {
		s := openStore(t)
		s.SetLimits(Limits{MaxImageSize: 512 << 20})
		start := time.Now()
		_, err := s.Import(context.Background(), ociArchive(t, "localhost/sparse:1", sparse))
		wantLimitError(t, err, "image-max-size", "localhost/sparse:1", `entry "disk.img"`)
		// Refused from its header, before writing it.
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("refusing a 1 GiB sparse file took %v", d)
		}
		assertNothingLeft(t, s, 0)
	})
	t.Run("its holes stay holes", func(t *testing.T) {
		s := openStore(t)
		s.SetLimits(Limits{MaxImageSize: 2 << 30})
		imgs, err := s.Import(context.Background(), ociArchive(t, "localhost/sparse:1", sparse))
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(imgs[0].Layers[0], "disk.img"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != 1<<30 || st.Blocks*512 > 1<<20 {
			t.Errorf("disk.img: %d bytes taking %d on disk; want 1 GiB taking almost nothing", st.Size, st.Blocks*512)
		}
		idx, err := s.loadIndex()
		if err != nil {
			t.Fatal(err)
		}
		if got := idx.LayerSizes[idx.Images[imgs[0].ID].Layers[0]]; got != 1<<30 {
			t.Errorf("recorded layer size %d, want its logical size %d", got, 1<<30)
		}
	})
}

func TestImportManyEmptyFiles(t *testing.T) {
	var entries []any
	for i := range 5000 {
		entries = append(entries, file(fmt.Sprintf("d/%d", i), ""))
	}
	many := layerOf(t, entries...)
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 16 << 20}) // 4096 entries: d/ (not listed, but made) and d/0 to d/4094
	_, err := s.Import(context.Background(), ociArchive(t, "localhost/many:1", many))
	wantLimitError(t, err, "image-max-size", "localhost/many:1", `entry "d/4095"`)
	assertNothingLeft(t, s, 0)

	s.SetLimits(Limits{MaxImageSize: 32 << 20})
	if _, err := s.Import(context.Background(), ociArchive(t, "localhost/many:1", many)); err != nil {
		t.Errorf("5000 entries within 32 MiB: %v", err)
	}
}

// One entry whose name has 3000 directories makes 3000 inodes: they count.
func TestImportDeepPathsAreCharged(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 1 << 20}) // 256 entries
	deep := strings.Repeat("d/", 3000) + "f"
	_, err := s.Import(context.Background(), ociArchive(t, "localhost/deep:1", gzipped(t, layerOf(t, file(deep, "f")))))
	le := wantLimitError(t, err, "image-max-size", "localhost/deep:1")
	if want := strings.Repeat("d/", 257); le.Entry != want {
		t.Errorf("stopped at %q, want the 257th directory", le.Entry)
	}
	if len(err.Error()) > 1000 {
		t.Errorf("the error is %d bytes long: an entry's name is not shortened", len(err.Error()))
	}
	assertNothingLeft(t, s, 0)
}

func TestImportDataAfterTheTarIsCharged(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 1 << 20})
	l := gzipped(t, layerOf(t, file("f", "f"), trailer(make([]byte, 4<<20))))
	_, err := s.Import(context.Background(), ociArchive(t, "localhost/trailer:1", l))
	wantLimitError(t, err, "image-max-size", "after the end of the tar archive")
	assertNothingLeft(t, s, 0)

	// A few blocks of padding, as tar writers leave, are fine.
	l = layerOf(t, file("f", "f"), trailer(make([]byte, 10240)))
	if _, err := s.Import(context.Background(), ociArchive(t, "localhost/padded:1", l)); err != nil {
		t.Errorf("a layer with 10 KiB of padding: %v", err)
	}
}

func TestImportArchiveBlobsAreCharged(t *testing.T) {
	noise := make([]byte, 2<<20)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 1 << 20})
	archive := ociArchive(t, "localhost/noise:1", gzLayer(t, file("noise", string(noise))))
	_, err := s.Import(context.Background(), archive)
	le := wantLimitError(t, err, "image-max-size", "the image archive "+archive, "of blobs")
	if le.Image != "" {
		t.Errorf("Image = %q, want none: the archive's blobs were being copied", le.Image)
	}
	assertNothingLeft(t, s, 0)
}

func TestImportStopsAtTheStoreLimit(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{MaxStoreSize: 6 << 20})
	if _, err := s.Import(context.Background(), ociArchive(t, "localhost/a:1", bombLayer(t, 1, 4<<20))); err != nil {
		t.Fatal(err)
	}
	b := ociArchive(t, "localhost/b:1", bombLayer(t, 2, 2<<20))
	_, err := s.Import(context.Background(), b)
	le := wantLimitError(t, err, "image-store-max-size", "localhost/b:1", "image-store-max-size (6MiB)", "agentctl image rm")
	if want := int64(4<<20 + 4096); le.InUse != want {
		t.Errorf("InUse = %d, want %d (a's layer: bomb/ and bomb/f0)", le.InUse, want)
	}
	assertNothingLeft(t, s, 1, "localhost/a:1")

	// A store written before sizes were kept has its layers measured.
	idx, err := s.loadIndex()
	if err != nil {
		t.Fatal(err)
	}
	idx.LayerSizes = nil
	raw, _ := json.Marshal(idx)
	if err := os.WriteFile(s.indexPath(), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.Import(context.Background(), b)
	if le := wantLimitError(t, err, "image-store-max-size"); le.InUse != int64(4<<20+4096) {
		t.Errorf("InUse of a measured store = %d, want %d", le.InUse, 4<<20+4096)
	}

	if err := s.Remove("localhost/a:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(context.Background(), b); err != nil {
		t.Errorf("b once a is gone: %v", err)
	}
}

func TestImportKeepsTheFilesystemsReserve(t *testing.T) {
	for _, tc := range []struct {
		name   string
		avail  uint64 // bytes free before the import, on a 100 GiB filesystem (reserve: 1 GiB)
		inodes bool   // 2% of the inodes free
		says   string
	}{
		// Stops within 16 MiB of entering the reserve, while unpacking.
		{"space", 1<<30 + 3<<20, false, `localhost/fill:1 from`},
		// Stops before writing anything.
		{"inodes", 10 << 30, true, "the image archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			s.SetLimits(Limits{})
			var written uint64
			s.statfs = func(path string, st *unix.Statfs_t) error {
				if err := unix.Statfs(path, st); err != nil {
					return err
				}
				written = max(written, diskUse(s.tmpDir()))
				st.Bsize, st.Blocks = 4096, 100<<30/4096
				st.Bavail = (tc.avail - min(written, tc.avail)) / 4096
				st.Files, st.Ffree = 1<<20, 1<<19
				if tc.inodes {
					st.Ffree = 1 << 20 / 50
				}
				return nil
			}
			_, err := s.Import(context.Background(), ociArchive(t, "localhost/fill:1", bombLayer(t, 16, 4<<20)))
			le := wantLimitError(t, err, "", tc.says, "free on the filesystem of the image store "+s.Dir())
			if le.Inodes != tc.inodes {
				t.Errorf("Inodes = %v, want %v", le.Inodes, tc.inodes)
			}
			if written > 24<<20 {
				t.Errorf("%d MiB written before the import stopped, want it to stop within 16 MiB of the reserve", written>>20)
			}
			assertNothingLeft(t, s, 0)
		})
	}
}

// diskUse is the disk the regular files under dir take.
func diskUse(dir string) uint64 {
	var n uint64
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			n += uint64(st.Blocks) * 512
		}
		return nil
	})
	return n
}

func TestImportIgnoresTheLayersRootEntry(t *testing.T) {
	root := &tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o777, Uid: 1234, Gid: 1234, ModTime: epoch}
	s := openStore(t)
	imgs, err := s.Import(context.Background(), ociArchive(t, "localhost/root:1", layerOf(t, entry{root, ""}, file("f", "f"))))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(imgs[0].Layers[0], &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o755 || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("layer directory %o %d:%d, want 755 %d:%d whatever its \"./\" entry says (777 1234:1234)",
			st.Mode&0o7777, st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
}

func TestOpenForcesDirectoryModes(t *testing.T) {
	s := openStore(t)
	imgs, err := s.Import(context.Background(), ociArchive(t, "localhost/a:1", gzLayer(t, file("f", "f"))))
	if err != nil {
		t.Fatal(err)
	}
	layer := imgs[0].Layers[0]
	dirs := []string{s.Dir(), filepath.Join(s.Dir(), "blobs"), filepath.Join(s.Dir(), "blobs", "sha256"),
		filepath.Join(s.Dir(), "layers"), filepath.Join(s.Dir(), "layers", "sha256"), s.tmpDir()}
	for _, d := range append(dirs, layer) {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (%v), want 0700", d, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Lstat(layer); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("layer %s: mode %v (%v), want 0755", layer, fi.Mode().Perm(), err)
	}

	// A symlink where a directory of the store should be is not followed.
	elsewhere := t.TempDir()
	if err := os.Chmod(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, s.tmpDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Dir()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open with tmp/ a symlink = %v, want an error", err)
	}
	if fi, err := os.Stat(elsewhere); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the symlink's target was changed: %v %v", fi.Mode(), err)
	}
}

// TestOpenEmptiesWhatAnInterruptedImportLeft: staging in tmp/ and a layer no
// image names are removed by Open, but not while a writer holds the lock: they
// would be what it is putting in place.
func TestOpenEmptiesWhatAnInterruptedImportLeft(t *testing.T) {
	s := openStore(t)
	left := filepath.Join(s.tmpDir(), "layer-123", "usr")
	if err := os.MkdirAll(left, 0o755); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(s.Dir(), "layers", "sha256", strings.Repeat("ab", 32))
	if err := os.MkdirAll(orphan, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.tryLock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); err != nil {
		t.Errorf("Open emptied tmp/ while a writer held the lock: %v", err)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Errorf("Open removed a layer while a writer held the lock: %v", err)
	}
	unlock()
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if n := dirEntries(t, s.tmpDir()); len(n) != 0 {
		t.Errorf("tmp/ holds %q after Open", n)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Errorf("Open kept a layer no image names")
	}
}

func TestImportCanceledHalfWayLeavesNothing(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{})
	archive := ociArchive(t, "localhost/slow:1", bombLayer(t, 64, 4<<20))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Import(ctx, archive)
		done <- err
	}()
	// Cancel once a layer is being unpacked.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(s.tmpDir(), "layer-*", "bomb", "f1")); len(m) > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Import ended before it could be canceled: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no layer was being unpacked after 60s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Import = %v, want context.Canceled", err)
	}
	assertNothingLeft(t, s, 0)
}

func TestMeasureLayerMatchesTheUnpackCharge(t *testing.T) {
	s := openStore(t)
	link := &tar.Header{Typeflag: tar.TypeLink, Name: "bin/sh2", Linkname: "bin/sh", ModTime: epoch}
	imgs, err := s.Import(context.Background(), ociArchive(t, "localhost/m:1", layerOf(t,
		dir("bin"), file("bin/sh", strings.Repeat("x", 5000)), entry{link, ""}, symlink("sh", "bin/sh"),
		testutil.SparseTarEntry("sparse", 0o644, 1<<20, testutil.SparseChunk{Offset: 4096, Data: []byte("s")}),
	)))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := s.loadIndex()
	if err != nil {
		t.Fatal(err)
	}
	charged := idx.LayerSizes[idx.Images[imgs[0].ID].Layers[0]]
	measured, err := measureLayer(imgs[0].Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4096 + 8192 + 4096 + 4096 + 1<<20); charged != want || measured != want {
		t.Errorf("charged %d, measured %d; want both %d", charged, measured, want)
	}
}
