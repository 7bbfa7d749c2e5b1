package crilog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBeneath(t *testing.T) {
	for _, tc := range []struct {
		root, path, want string
		ok               bool
	}{
		{"/var/log/pods", "/var/log/pods/ns_p_u/c/0.log", "ns_p_u/c/0.log", true},
		{"/var/log/pods/", "/var/log/pods/ns_p_u/c/0.log", "ns_p_u/c/0.log", true},
		{"/var/log/pods", "/var/log/pods/a/../b/0.log", "b/0.log", true},
		{"/var/log/pods", "/var/log/pods", "", false},
		{"/var/log/pods", "/var/log/pods/../x/0.log", "", false},
		{"/var/log/pods", "/var/log/podsx/0.log", "", false},
		{"/var/log/pods", "/etc/passwd", "", false},
		{"/var/log/pods", "relative/0.log", "", false},
	} {
		got, err := Beneath(tc.root, tc.path)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("Beneath(%q, %q) = %q, %v; want %q", tc.root, tc.path, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, ErrNotBeneath) {
			t.Errorf("Beneath(%q, %q) = %q, %v; want ErrNotBeneath", tc.root, tc.path, got, err)
		}
	}
}

// canary is a host file or directory a pod would like the monitor to write to. check
// fails the test if anything changed it.
type canary struct {
	t    *testing.T
	file string
	dir  string
}

const canaryContent = "canary: host file\n"

func newCanary(t *testing.T) *canary {
	d := t.TempDir()
	c := &canary{t: t, file: filepath.Join(d, "canary-file"), dir: filepath.Join(d, "canary-dir")}
	if err := os.WriteFile(c.file, []byte(canaryContent), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *canary) check() {
	c.t.Helper()
	if got := readFile(c.t, c.file); got != canaryContent {
		c.t.Errorf("the canary file was written to: %q", got)
	}
	if ents, err := os.ReadDir(c.dir); err != nil || len(ents) > 0 {
		c.t.Errorf("the canary directory was written to: %v %v", ents, err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesPlantedPaths: whatever a pod plants at a component of
// <root>/<pod dir>/<container>/0.log, Open and ReadAll refuse it, without following
// or opening it, and without blocking.
func TestOpenRefusesPlantedPaths(t *testing.T) {
	const name = "ns_pod_uid/c/0.log"
	for _, tc := range []struct {
		what  string
		plant func(t *testing.T, root string, c *canary)
		want  error // a symlink opened with O_NOFOLLOW|O_DIRECTORY is ELOOP or ENOTDIR
	}{
		{"symlink as the pod dir", func(t *testing.T, root string, c *canary) {
			symlink(t, c.dir, filepath.Join(root, "ns_pod_uid"))
		}, unix.ELOOP},
		{"symlink as the container dir", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid"))
			symlink(t, c.dir, filepath.Join(root, "ns_pod_uid", "c"))
		}, unix.ELOOP},
		{"relative symlink as the container dir", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid"))
			rel, _ := filepath.Rel(filepath.Join(root, "ns_pod_uid"), c.dir)
			symlink(t, rel, filepath.Join(root, "ns_pod_uid", "c"))
		}, unix.ELOOP},
		{"file as the container dir", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid"))
			if err := os.WriteFile(filepath.Join(root, "ns_pod_uid", "c"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, unix.ENOTDIR},
		{"symlink as the log file", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid", "c"))
			symlink(t, c.file, filepath.Join(root, name))
		}, ErrUnsafeFile},
		{"dangling symlink as the log file", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid", "c"))
			symlink(t, filepath.Join(c.dir, "new"), filepath.Join(root, name))
		}, ErrUnsafeFile},
		{"hard link as the log file", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid", "c"))
			if err := os.Link(c.file, filepath.Join(root, name)); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafeFile},
		{"FIFO as the log file", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, "ns_pod_uid", "c"))
			if err := unix.Mkfifo(filepath.Join(root, name), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafeFile},
		{"directory as the log file", func(t *testing.T, root string, c *canary) {
			mkdirAll(t, filepath.Join(root, name))
		}, ErrUnsafeFile},
	} {
		t.Run(tc.what, func(t *testing.T) {
			root := t.TempDir()
			c := newCanary(t)
			tc.plant(t, root, c)
			done := make(chan error, 3)
			go func() {
				w, err := Open(root, name, Options{})
				if err == nil {
					w.Close()
				}
				done <- err
				var out bytes.Buffer
				done <- ReadAll(root, name, ReadOptions{Tail: -1}, &out)
				done <- MkdirAll(root, filepath.Dir(name))
			}()
			for i, op := range []string{"Open", "ReadAll", "MkdirAll"} {
				select {
				case err := <-done:
					want := tc.want
					if op == "MkdirAll" && want == ErrUnsafeFile {
						want = nil // only the directories matter
					}
					if !errors.Is(err, want) && !(want == unix.ELOOP && errors.Is(err, unix.ENOTDIR)) {
						t.Errorf("%s: %v, want %v", op, err, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s (step %d) blocked", op, i)
				}
			}
			c.check()
		})
	}
}

func TestOpenRefusesDeviceNode(t *testing.T) {
	requiresRoot(t)
	root := t.TempDir()
	// /dev/null's numbers: opening it would write nowhere, and show the open happened.
	if err := unix.Mknod(filepath.Join(root, "0.log"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod: %v", err)
	}
	if _, err := Open(root, "0.log", Options{}); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("Open of a device node: %v, want ErrUnsafeFile", err)
	}
	if err := ReadAll(root, "0.log", ReadOptions{Tail: -1}, &bytes.Buffer{}); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("ReadAll of a device node: %v, want ErrUnsafeFile", err)
	}
}

func TestOpenRefusesPathsNotBeneath(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"../x/0.log", "/tmp/0.log", "", ".", "c/.."} {
		if w, err := Open(root, name, Options{}); !errors.Is(err, ErrNotBeneath) {
			if err == nil {
				w.Close()
			}
			t.Errorf("Open(%q): %v, want ErrNotBeneath", name, err)
		}
		if err := ReadAll(root, name, ReadOptions{Tail: -1}, &bytes.Buffer{}); !errors.Is(err, ErrNotBeneath) {
			t.Errorf("ReadAll(%q): %v, want ErrNotBeneath", name, err)
		}
	}
}

func TestOpenCreatesTheDirectoryChain(t *testing.T) {
	root := t.TempDir()
	w, err := Open(root, "ns_pod_uid/c/0.log", Options{})
	if err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "hello\n")
	w.Close()
	var out bytes.Buffer
	if err := ReadAll(root, "ns_pod_uid/c/0.log", ReadOptions{Tail: -1}, &out); err != nil || out.String() != "hello\n" {
		t.Errorf("ReadAll = %q, %v; want hello", out.String(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, "ns_pod_uid", "c")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("container dir: %v %v", fi, err)
	}
}

// TestRotationMovesPlantedSymlinks: rotation renames what it finds, a symlink
// included, and never writes through one.
func TestRotationMovesPlantedSymlinks(t *testing.T) {
	dir := t.TempDir()
	c := newCanary(t)
	path := filepath.Join(dir, "0.log")
	w := openT(t, path, Options{MaxSize: 100, MaxFiles: 2, Now: fixedNow(testTime)})
	symlink(t, c.file, path+".1")
	line := strings.Repeat("x", 40) + "\n" // a 76-byte record: each one rotates
	copyT(t, w, Stdout, line)
	copyT(t, w, Stdout, line)
	for _, name := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		want := name == path+".2" // the symlink moved along
		if got := fi.Mode()&os.ModeSymlink != 0; got != want {
			t.Errorf("%s is a symlink: %v, want %v", name, got, want)
		}
	}
	// The live file replaced by a symlink: the next rotation moves the symlink away
	// and creates a new file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	symlink(t, c.file, path)
	copyT(t, w, Stdout, line)
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("after rotation %s is %v, %v; want a new regular file", path, fi, err)
	}
	if got := len(records(t, path)); got != 1 {
		t.Errorf("%s holds %d records, want 1", path, got)
	}
	c.check()
}

// TestDeletedFileReplacedBySymlinkIsRefused: the writer notices its file was deleted,
// and refuses the symlink a pod put in its place; what it cannot write it counts.
func TestDeletedFileReplacedBySymlinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	c := newCanary(t)
	path := filepath.Join(dir, "0.log")
	w := openT(t, path, Options{})
	w.linkCheckEvery = 0
	copyT(t, w, Stdout, "before\n")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	symlink(t, c.file, path)
	copyT(t, w, Stdout, "after\n")
	if err := w.Reopen(); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("Reopen: %v, want ErrUnsafeFile", err)
	}
	if d := w.Dropped(); d != int64(len("after")) {
		t.Errorf("Dropped() = %d, want %d", d, len("after"))
	}
	c.check()
}

// TestWriterKeepsItsDirectory: a container directory swapped for a symlink after
// Open does not redirect a reopen; the writer stays in the directory it opened.
func TestWriterKeepsItsDirectory(t *testing.T) {
	root := t.TempDir()
	c := newCanary(t)
	w, err := Open(root, "p/c/0.log", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	copyT(t, w, Stdout, "one\n")
	if err := os.Rename(filepath.Join(root, "p", "c"), filepath.Join(root, "p", "moved")); err != nil {
		t.Fatal(err)
	}
	symlink(t, c.dir, filepath.Join(root, "p", "c"))
	if err := os.Rename(filepath.Join(root, "p", "moved", "0.log"), filepath.Join(root, "p", "moved", "0.log.old")); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "two\n")
	if got := joinLines(records(t, filepath.Join(root, "p", "moved", "0.log")), Stdout); strings.Join(got, ",") != "two" {
		t.Errorf("the reopened file in the moved directory holds %q, want [two]", got)
	}
	c.check()
}

// TestFollowRefusesSymlinkedRotation: Follow does not switch to a symlink put in the
// place of a rotated file, and does switch to the regular file that replaces it.
func TestFollowRefusesSymlinkedRotation(t *testing.T) {
	dir := t.TempDir()
	c := newCanary(t)
	if err := os.WriteFile(c.file, []byte("2026-11-27T08:00:00Z stdout F host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "0.log")
	if err := os.WriteFile(path, []byte("2026-11-27T08:00:00Z stdout F one\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	refused := make(chan struct{}, 100)
	followRefused = func() { refused <- struct{}{} }
	t.Cleanup(func() { followRefused = nil })
	out := startFollow(t, path, ReadOptions{Tail: -1})
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	symlink(t, c.file, path)
	select {
	case <-refused:
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not look at the symlink")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("2026-11-27T08:00:00Z stdout F two\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "one\ntwo\n")
}
