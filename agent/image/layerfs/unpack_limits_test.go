package layerfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// recordingMeter records what Unpack tells it and fails once told more than it allows.
type recordingMeter struct {
	entries []string
	sizes   []int64
	wrote   int64
	// failAt fails the entry with this index (-1: never); maxWrote fails a
	// write past this many bytes (0: never).
	failAt   int
	maxWrote int64
}

var _ Meter = (*recordingMeter)(nil)

var errBudget = errors.New("over budget")

func (m *recordingMeter) Entry(name string, size int64) error {
	if len(m.entries) == m.failAt {
		return errBudget
	}
	m.entries = append(m.entries, name)
	m.sizes = append(m.sizes, size)
	return nil
}

func (m *recordingMeter) Wrote(n int64) error {
	m.wrote += n
	if m.maxWrote > 0 && m.wrote > m.maxWrote {
		return errBudget
	}
	return nil
}

// tarWith joins tar.Writer entries and raw entry bytes (testutil.SparseTarEntry) into one archive.
func tarWith(t *testing.T, parts ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range parts {
		switch p := p.(type) {
		case tarEntry:
			if err := tw.WriteHeader(p.hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(p.body)); err != nil {
				t.Fatal(err)
			}
		case []byte:
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			buf.Write(p)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackIgnoresRootEntryMetadata(t *testing.T) {
	for _, rootName := range []string{"./", "/", ".", "//"} {
		t.Run(rootName, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layer")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			before := lstat(t, dir)
			root := &tar.Header{Typeflag: tar.TypeDir, Name: rootName, Mode: 0o777 | 0o1000, Uid: 1234, Gid: 1234, ModTime: epoch,
				PAXRecords: map[string]string{"SCHILY.xattr.user.agentd-test": "root"}}
			data := makeTar(t, e(root, ""), e(hdrFile("etc/hostname", "h", 0o644)))
			if err := Unpack(bytes.NewReader(data), dir, nil); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			st := lstat(t, dir)
			if st.Mode != before.Mode || st.Uid != before.Uid || st.Gid != before.Gid {
				t.Errorf("layer directory is %o %d:%d after unpacking a %q entry of mode 1777 and owner 1234:1234; want it as it was: %o %d:%d",
					st.Mode, st.Uid, st.Gid, rootName, before.Mode, before.Uid, before.Gid)
			}
			if n, err := unix.Lgetxattr(dir, "user.agentd-test", make([]byte, 16)); err == nil {
				t.Errorf("layer directory got the root entry's xattr (%d bytes)", n)
			}
			if _, err := os.Stat(filepath.Join(dir, "etc/hostname")); err != nil {
				t.Errorf("the rest of the layer was not unpacked: %v", err)
			}
		})
	}
}

func TestUnpackRootEntryMustBeADirectory(t *testing.T) {
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeReg, Name: ".", Mode: 0o644},
		{Typeflag: tar.TypeSymlink, Name: ".", Linkname: "/"},
		{Typeflag: tar.TypeDir, Name: "/etc/", Mode: 0o755}, // an absolute name other than the root stays refused
	} {
		dir := filepath.Join(t.TempDir(), "layer")
		err := Unpack(bytes.NewReader(makeTar(t, e(h, ""))), dir, nil)
		if err == nil {
			t.Errorf("%s entry %q: Unpack succeeded, want an error", string(h.Typeflag), h.Name)
		}
	}
}

func TestUnpackWritesHolesAsHoles(t *testing.T) {
	const size = 64 << 20
	data := []byte(strings.Repeat("d", 5000))
	dense := append(make([]byte, 1<<20), 'x') // a megabyte of zeros, then data
	m := &recordingMeter{failAt: -1}
	dir := filepath.Join(t.TempDir(), "layer")
	err := Unpack(bytes.NewReader(tarWith(t,
		testutil.SparseTarEntry("sparse", 0o644, size, testutil.SparseChunk{Offset: 1 << 20, Data: data}, testutil.SparseChunk{Offset: size - 3, Data: []byte("end")}),
		e(hdrFile("dense-zeros", string(dense), 0o644)),
		e(hdrFile("small", "s", 0o644)),
	)), dir, m)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}

	got, err := os.ReadFile(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want[1<<20:], data)
	copy(want[size-3:], "end")
	if !bytes.Equal(got, want) {
		t.Errorf("sparse: content differs from the archive's (len %d, want %d)", len(got), len(want))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dense-zeros")); err != nil || !bytes.Equal(b, dense) {
		t.Errorf("dense-zeros: content differs from the archive's (%v)", err)
	}
	for name, maxDisk := range map[string]int64{"sparse": 64 << 10, "dense-zeros": 64 << 10} {
		st := lstat(t, filepath.Join(dir, name))
		if disk := st.Blocks * 512; disk > maxDisk {
			t.Errorf("%s: %d bytes of %d take %d bytes of disk, want at most %d (holes written as data)", name, st.Size, st.Size, disk, maxDisk)
		}
	}

	if want := []string{"sparse", "dense-zeros", "small"}; strings.Join(m.entries, ",") != strings.Join(want, ",") {
		t.Errorf("meter saw entries %q, want %q", m.entries, want)
	}
	if want := []int64{size, int64(len(dense)), 1}; len(m.sizes) != 3 || m.sizes[0] != want[0] || m.sizes[1] != want[1] || m.sizes[2] != want[2] {
		t.Errorf("meter saw sizes %v, want %v (a sparse file's logical size)", m.sizes, want)
	}
	if m.wrote > 64<<10 || m.wrote < int64(len(data)) {
		t.Errorf("meter saw %d bytes written, want the data blocks only (%d..%d)", m.wrote, len(data), 64<<10)
	}
}

func TestUnpackMetersTheDirectoriesItMakes(t *testing.T) {
	m := &recordingMeter{failAt: -1}
	dir := filepath.Join(t.TempDir(), "layer")
	if err := Unpack(bytes.NewReader(makeTar(t, e(hdrDir("a", 0o755)), e(hdrFile("a/b/c/f", "f", 0o644)))), dir, m); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(m.entries, " "), "a/ a/b/ a/b/c/ a/b/c/f"; got != want {
		t.Errorf("meter saw %q, want %q (the directories the archive does not list too)", got, want)
	}

	// A refusal stops before the directory is made.
	m = &recordingMeter{failAt: 2}
	dir = filepath.Join(t.TempDir(), "layer")
	err := Unpack(bytes.NewReader(makeTar(t, e(hdrFile("x/y/z/f", "f", 0o644)))), dir, m)
	if !errors.Is(err, errBudget) {
		t.Fatalf("Unpack = %v, want the meter's error", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "x/y/z")); err == nil {
		t.Errorf("x/y/z was made after the meter refused it")
	}
}

func TestUnpackStopsWhenTheMeterSaysSo(t *testing.T) {
	big := strings.Repeat("b", 1<<20)
	archive := makeTar(t,
		e(hdrFile("a", "a", 0o644)),
		e(hdrFile("big", big, 0o644)),
		e(hdrFile("c", "c", 0o644)),
	)
	for _, tc := range []struct {
		name  string
		meter *recordingMeter
		left  []string // files that must not exist
	}{
		{"before an entry", &recordingMeter{failAt: 1}, []string{"big", "c"}},
		{"in the middle of a file", &recordingMeter{failAt: -1, maxWrote: 256 << 10}, []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layer")
			err := Unpack(bytes.NewReader(archive), dir, tc.meter)
			if !errors.Is(err, errBudget) {
				t.Fatalf("Unpack = %v, want the meter's error", err)
			}
			if !strings.Contains(err.Error(), `"big"`) {
				t.Errorf("error %q does not name the entry", err)
			}
			for _, f := range tc.left {
				if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
					t.Errorf("%s was written after the meter refused", f)
				}
			}
			if tc.meter.wrote > 512<<10 {
				t.Errorf("%d bytes written after the meter refused at 256 KiB", tc.meter.wrote)
			}
		})
	}
}
