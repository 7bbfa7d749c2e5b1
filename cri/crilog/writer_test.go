package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"
)

var testTime = time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.UTC)

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

// requiresRoot skips a test that needs root (mounts) in a developer's non-root shell.
func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// openT opens the log file at path beneath its directory, which it creates.
func openT(t *testing.T, path string, opts Options) *Writer {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := Open(filepath.Dir(path), filepath.Base(path), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func copyT(t *testing.T, w *Writer, stream, data string) {
	t.Helper()
	if err := w.Copy(stream, strings.NewReader(data)); err != nil {
		t.Fatalf("Copy(%s): %v", stream, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// records parses every record of the file at path and fails on a malformed one, so a
// torn or interleaved record is caught.
func records(t *testing.T, path string) []Entry {
	t.Helper()
	data := readFile(t, path)
	if data != "" && !strings.HasSuffix(data, "\n") {
		t.Fatalf("%s does not end with a newline: ...%q", path, data[max(0, len(data)-60):])
	}
	var out []Entry
	for i, line := range strings.SplitAfter(data, "\n") {
		if line == "" {
			continue
		}
		e, err := ParseLine([]byte(line))
		if err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		out = append(out, e)
	}
	return out
}

// joinLines joins the records of one stream into lines, as a reader should.
func joinLines(entries []Entry, stream string) []string {
	var lines []string
	var cur []byte
	for _, e := range entries {
		if e.Stream != stream {
			continue
		}
		cur = append(cur, e.Content...)
		if !e.Partial {
			lines = append(lines, string(cur))
			cur = cur[:0]
		}
	}
	return lines
}

func TestRecordFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod", "c", "0.log")
	w := openT(t, path, Options{Now: fixedNow(testTime)})
	copyT(t, w, Stdout, "hello\n\nwindows\r\n")
	copyT(t, w, Stderr, "oops\n")
	w.now = fixedNow(time.Date(2026, 11, 27, 9, 0, 0, 500_000_000, time.FixedZone("CET", 3600)))
	copyT(t, w, Stdout, "zoned\n")

	want := "2026-11-27T08:00:00.123456789Z stdout F hello\n" +
		"2026-11-27T08:00:00.123456789Z stdout F \n" +
		"2026-11-27T08:00:00.123456789Z stdout F windows\r\n" + // "\r" kept, as CRI-O does
		"2026-11-27T08:00:00.123456789Z stderr F oops\n" +
		"2026-11-27T09:00:00.5+01:00 stdout F zoned\n"
	if got := readFile(t, path); got != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("file mode %v, want at most 0640", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&^0o755 != 0 {
		t.Errorf("directory mode %v, want at most 0755", perm)
	}
}

func TestFinalLineWithoutNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{Now: fixedNow(testTime)})
	copyT(t, w, Stdout, "first\nlast words")
	want := "2026-11-27T08:00:00.123456789Z stdout F first\n" +
		"2026-11-27T08:00:00.123456789Z stdout F last words\n"
	if got := readFile(t, path); got != want {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{})
	copyT(t, w, Stdout, "one\n")
	w.Close()
	w = openT(t, path, Options{})
	copyT(t, w, Stdout, "two\n")
	if got := joinLines(records(t, path), Stdout); fmt.Sprint(got) != "[one two]" {
		t.Errorf("lines %q, want [one two]", got)
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	const max = 10
	lines := []string{"", "a", "123456789", "1234567890", "12345678901", strings.Repeat("x", 20),
		strings.Repeat("y", 25), strings.Repeat("z", 100)}
	last := strings.Repeat("w", 23) // no "\n" at EOF
	input := strings.Join(lines, "\n") + "\n" + last
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(input) },
		"bytewise": func() io.Reader { return iotest.OneByteReader(strings.NewReader(input)) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0.log")
			w := openT(t, path, Options{MaxLineSize: max, Now: fixedNow(testTime)})
			if err := w.Copy(Stdout, r()); err != nil {
				t.Fatal(err)
			}
			var tags []string
			entries := records(t, path)
			for _, e := range entries {
				if len(e.Content) > max {
					t.Errorf("record of %d content bytes, want at most %d", len(e.Content), max)
				}
				tag := "F"
				if e.Partial {
					tag = "P"
				}
				tags = append(tags, fmt.Sprintf("%s%d", tag, len(e.Content)))
			}
			wantTags := "F0 F1 F9 F10 P10 F1 P10 F10 P10 P10 F5 " +
				"P10 P10 P10 P10 P10 P10 P10 P10 P10 F10 P10 P10 F3"
			if got := strings.Join(tags, " "); got != wantTags {
				t.Errorf("records %s\nwant    %s", got, wantTags)
			}
			var out bytes.Buffer
			if err := ReadAll(filepath.Dir(path), filepath.Base(path), ReadOptions{Tail: -1}, &out); err != nil {
				t.Fatal(err)
			}
			if want := strings.Join(append(lines, last), "\n") + "\n"; out.String() != want {
				t.Errorf("ReadAll:\n%q\nwant\n%q", out.String(), want)
			}
		})
	}
}

// chunkedReader returns its data in reads of random sizes, like a pipe.
type chunkedReader struct {
	data []byte
	rnd  *rand.Rand
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rnd.IntN(5000))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// seqLines makes n lines "<stream> <seq> <filler>", some longer than maxLine.
func seqLines(rnd *rand.Rand, stream string, n, maxLine int) []string {
	lines := make([]string, n)
	for i := range lines {
		size := rnd.IntN(100)
		if rnd.IntN(10) == 0 {
			size = rnd.IntN(4 * maxLine)
		}
		lines[i] = fmt.Sprintf("%s %06d %s", stream, i, strings.Repeat(string(rune('a'+i%26)), size))
	}
	return lines
}

func TestConcurrentCopyKeepsRecordsWhole(t *testing.T) {
	const maxLine = 1000
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{MaxLineSize: maxLine})
	want := map[string][]string{}
	var wg sync.WaitGroup
	for i, stream := range []string{Stdout, Stderr} {
		rnd := rand.New(rand.NewPCG(uint64(i), 42))
		want[stream] = seqLines(rnd, stream, 3000, maxLine)
		r := &chunkedReader{data: []byte(strings.Join(want[stream], "\n") + "\n"), rnd: rnd}
		wg.Go(func() {
			if err := w.Copy(stream, r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	entries := records(t, path) // fails on a torn or interleaved record
	for _, stream := range []string{Stdout, Stderr} {
		got := joinLines(entries, stream)
		if len(got) != len(want[stream]) {
			t.Fatalf("%s: %d lines, want %d", stream, len(got), len(want[stream]))
		}
		for i := range got {
			if got[i] != want[stream][i] {
				t.Fatalf("%s line %d:\n%.80q\nwant\n%.80q", stream, i, got[i], want[stream][i])
			}
		}
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Time.Before(entries[i-1].Time) {
			t.Fatalf("record %d stamped %v, before record %d (%v)", i, entries[i].Time, i-1, entries[i-1].Time)
		}
	}
	if d := w.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
}

// rotatedFiles returns path.N … path.1, path that exist, oldest first.
func rotatedFiles(t *testing.T, path string) []string {
	t.Helper()
	var files []string
	for i := 1; ; i++ {
		name := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(name); err != nil {
			break
		}
		files = append([]string{name}, files...)
	}
	return append(files, path)
}

func TestRotationKeepsEveryRecordWhole(t *testing.T) {
	const maxSize = 4096
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{MaxSize: maxSize, MaxFiles: 1000, MaxLineSize: 300})
	rnd := rand.New(rand.NewPCG(1, 2))
	lines := seqLines(rnd, Stdout, 2000, 300)
	if err := w.Copy(Stdout, &chunkedReader{data: []byte(strings.Join(lines, "\n") + "\n"), rnd: rnd}); err != nil {
		t.Fatal(err)
	}
	files := rotatedFiles(t, path)
	if len(files) < 20 {
		t.Fatalf("%d files, expected many rotations", len(files))
	}
	var all []Entry
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxSize {
			t.Errorf("%s is %d bytes, more than MaxSize %d", f, fi.Size(), maxSize)
		}
		all = append(all, records(t, f)...)
	}
	got := joinLines(all, Stdout)
	if len(got) != len(lines) {
		t.Fatalf("%d lines across %d files, want %d", len(got), len(files), len(lines))
	}
	for i := range got {
		if got[i] != lines[i] {
			t.Fatalf("line %d: %.60q, want %.60q", i, got[i], lines[i])
		}
	}
}

func TestRotationRemovesOldest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{MaxSize: 1000, MaxFiles: 2})
	var lines []string
	for i := range 500 {
		lines = append(lines, fmt.Sprintf("line %04d", i))
	}
	copyT(t, w, Stdout, strings.Join(lines, "\n")+"\n")
	files := rotatedFiles(t, path)
	if fmt.Sprint(files) != fmt.Sprint([]string{path + ".2", path + ".1", path}) {
		t.Fatalf("files %q, want path.2 path.1 path", files)
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.3 exists: %v", path, err)
	}
	var all []Entry
	for _, f := range files {
		all = append(all, records(t, f)...)
	}
	got := joinLines(all, Stdout)
	if len(got) < 20 {
		t.Fatalf("only %d lines left", len(got))
	}
	// What is left is the newest lines, without a gap.
	if tail := lines[len(lines)-len(got):]; fmt.Sprint(got) != fmt.Sprint(tail) {
		t.Errorf("kept lines %q…%q, want the last %d lines", got[0], got[len(got)-1], len(got))
	}
	if d := w.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
}

func TestRecordLargerThanMaxSizeGetsItsOwnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{MaxSize: 100, MaxFiles: 5})
	big := strings.Repeat("b", 500)
	copyT(t, w, Stdout, "small\n"+big+"\nafter\n")
	for name, want := range map[string]string{path + ".2": "small", path + ".1": big, path: "after"} {
		if got := joinLines(records(t, name), Stdout); len(got) != 1 || got[0] != want {
			t.Errorf("%s holds %.20q, want [%.20q]", name, got, want)
		}
	}
}

func TestReopenAfterExternalRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{})
	copyT(t, w, Stdout, "one\n")
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "two\n") // still goes to the renamed file
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "three\n")
	if got := joinLines(records(t, path+".old"), Stdout); fmt.Sprint(got) != "[one two]" {
		t.Errorf("renamed file holds %q, want [one two]", got)
	}
	if got := joinLines(records(t, path), Stdout); fmt.Sprint(got) != "[three]" {
		t.Errorf("new file holds %q, want [three]", got)
	}
}

func TestDeletedFileIsRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{})
	w.linkCheckEvery = 0
	copyT(t, w, Stdout, "before\n")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "after\n")
	if got := joinLines(records(t, path), Stdout); fmt.Sprint(got) != "[after]" {
		t.Errorf("file holds %q, want [after]", got)
	}
}

func TestCopyAfterCloseDrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{})
	w.Close()
	copyT(t, w, Stdout, "lost\nlines\n")
	if d := w.Dropped(); d != int64(len("lost")+len("lines")) {
		t.Errorf("Dropped() = %d, want 9", d)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Reopen after Close: %v, want os.ErrClosed", err)
	}
}

func TestCopyRejectsBadStream(t *testing.T) {
	w := openT(t, filepath.Join(t.TempDir(), "0.log"), Options{})
	if err := w.Copy("stdin", strings.NewReader("x\n")); !errors.Is(err, ErrBadStream) {
		t.Errorf("Copy(stdin): %v, want ErrBadStream", err)
	}
}

func TestReadErrorEndsCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{})
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("done\nhalf"), iotest.ErrReader(boom))
	if err := w.Copy(Stdout, r); !errors.Is(err, boom) {
		t.Errorf("Copy: %v, want boom", err)
	}
	if got := joinLines(records(t, path), Stdout); fmt.Sprint(got) != "[done half]" {
		t.Errorf("lines %q, want [done half]: what was read is written", got)
	}
}

// failingWrites makes the writer's writev fail with err while on is set; with
// partial, it first writes the first iovec (a header), so the record is cut.
type failingWrites struct {
	mu      sync.Mutex
	on      bool
	partial bool
	err     error
}

func (f *failingWrites) writev(fd int, iov []unix.Iovec) (int, error) {
	f.mu.Lock()
	on, partial, err := f.on, f.partial, f.err
	f.mu.Unlock()
	if !on {
		return writev(fd, iov)
	}
	if partial {
		n, werr := writev(fd, iov[:1])
		if werr != nil {
			return 0, werr
		}
		return n, err
	}
	return 0, err
}

func (f *failingWrites) set(on bool) {
	f.mu.Lock()
	f.on = on
	f.mu.Unlock()
}

func TestWriteFailureDropsAndCounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		partial bool
	}{
		{"ENOSPC", unix.ENOSPC, false},
		{"ENOSPC after a partial write", unix.ENOSPC, true},
		{"EDQUOT", unix.EDQUOT, true},
		{"EIO", unix.EIO, false},
		{"EIO after a partial write", unix.EIO, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "0.log")
			w := openT(t, path, Options{})
			fail := &failingWrites{partial: tc.partial, err: tc.err}
			w.writev = fail.writev
			copyT(t, w, Stdout, "kept\n")
			fail.set(true)
			copyT(t, w, Stdout, "lost one\nlost two\n")
			copyT(t, w, Stderr, "lost three\n")
			if d, want := w.Dropped(), int64(len("lost one")+len("lost two")+len("lost three")); d != want {
				t.Errorf("Dropped() = %d, want %d", d, want)
			}
			fail.set(false)
			copyT(t, w, Stdout, "resumed\n")
			entries := records(t, path) // the cut record must be gone
			if got := joinLines(entries, Stdout); fmt.Sprint(got) != "[kept resumed]" {
				t.Errorf("lines %q, want [kept resumed]", got)
			}
			if got := joinLines(entries, Stderr); len(got) != 0 {
				t.Errorf("stderr lines %q, want none", got)
			}
		})
	}
}

// TestFullDiskDropsAndResumes fills a real 64 KiB tmpfs: Copy must go on reading,
// drop exactly what did not fit, leave only whole records, and log again once space
// is freed.
func TestFullDiskDropsAndResumes(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 32<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pod", "0.log")
	w, err := Open(dir, "pod/0.log", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	var lines []string
	var total int64
	for i := range 2000 { // ~100 KiB of records: more than fits
		lines = append(lines, fmt.Sprintf("line %04d %s", i, strings.Repeat("x", i%40)))
		total += int64(len(lines[i]))
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	if err := w.Copy(Stdout, &chunkedReader{data: []byte(strings.Join(lines, "\n") + "\n"), rnd: rnd}); err != nil {
		t.Fatal(err)
	}
	dropped := w.Dropped()
	if dropped == 0 {
		t.Fatal("nothing dropped on a full disk")
	}
	got := joinLines(records(t, path), Stdout)
	var written int64
	next := 0
	for _, l := range got {
		written += int64(len(l))
		for next < len(lines) && lines[next] != l {
			next++
		}
		if next == len(lines) {
			t.Fatalf("line %q is not one of the input lines, or out of order", l)
		}
	}
	if written+dropped != total {
		t.Errorf("written %d + dropped %d = %d content bytes, want %d", written, dropped, written+dropped, total)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stderr, "space again\n")
	after := joinLines(records(t, path), Stderr)
	if fmt.Sprint(after) != "[space again]" {
		t.Errorf("after freeing space, stderr lines %q, want [space again]", after)
	}
	if w.Dropped() != dropped {
		t.Errorf("Dropped() went from %d to %d after space was freed", dropped, w.Dropped())
	}
}
