package layerfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The vfs copy of a layer keeps its holes: a 1 GiB file with a few blocks of
// data takes a few blocks in every container's rootfs too, not 1 GiB, and
// reads the same everywhere. Both a file that ends in data and one that ends
// in a hole keep their length.
func TestCopyFileKeepsHoles(t *testing.T) {
	const size = 1 << 30
	for _, tc := range []struct {
		name    string
		offsets []int64 // where a 4 KiB block of data is
	}{
		{"ends in data", []int64{0, 100 << 20, 512<<20 + 4096, size - 4096}},
		{"ends in a hole", []int64{4096, 300 << 20}},
		{"only a hole", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "sparse")
			f, err := os.Create(src)
			if err != nil {
				t.Fatal(err)
			}
			blocks := map[int64][]byte{}
			for i, off := range tc.offsets {
				b := bytes.Repeat([]byte{byte('a' + i)}, 4096)
				if _, err := f.WriteAt(b, off); err != nil {
					t.Fatal(err)
				}
				blocks[off] = b
			}
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			srcBlocks := stBlocks(t, src)

			dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(dirfd)
			if err := copyFile(src, dirfd, "copy"); err != nil {
				t.Fatalf("copyFile: %v", err)
			}
			dst := filepath.Join(dir, "copy")

			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != size {
				t.Errorf("copy is %d bytes, want %d", fi.Size(), size)
			}
			// The data blocks, and whatever metadata blocks the filesystem adds:
			// far below 1 MiB, where a copy that filled the holes takes 1 GiB.
			got := stBlocks(t, dst) * 512
			t.Logf("source takes %d bytes on disk, the copy %d", srcBlocks*512, got)
			if limit := int64(len(tc.offsets))*4096 + 256<<10; got > limit {
				t.Errorf("copy takes %d bytes on disk, want at most %d: its holes were filled", got, limit)
			}
			out, err := os.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			buf := make([]byte, 4096)
			for off, want := range blocks {
				if _, err := out.ReadAt(buf, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, want) {
					t.Errorf("copy at %d: %q..., want %q...", off, buf[:8], want[:8])
				}
			}
			// And a hole reads as zeros.
			if _, err := out.ReadAt(buf, 200<<20); err != nil {
				t.Fatal(err)
			}
			if !isZero(buf) {
				t.Errorf("copy at %d is not zeros: %q...", 200<<20, buf[:8])
			}
		})
	}
}

func stBlocks(t *testing.T, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}
