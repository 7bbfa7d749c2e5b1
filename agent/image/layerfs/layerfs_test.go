package layerfs

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

var epoch = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func hdrFile(name, body string, mode int64) (*tar.Header, string) {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: epoch}, body
}

func hdrDir(name string, mode int64) (*tar.Header, string) {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: epoch}, ""
}

func hdrSymlink(name, target string) (*tar.Header, string) {
	return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}, ""
}

func hdrLink(name, target string) (*tar.Header, string) {
	return &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: epoch}, ""
}

type tarEntry struct {
	hdr  *tar.Header
	body string
}

func e(h *tar.Header, body string) tarEntry { return tarEntry{h, body} }

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range entries {
		if err := tw.WriteHeader(en.hdr); err != nil {
			t.Fatalf("tar header %s: %v", en.hdr.Name, err)
		}
		if _, err := tw.Write([]byte(en.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unpack(t *testing.T, data []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layer")
	if err := Unpack(bytes.NewReader(data), dir, nil); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	return dir
}

func TestUnpackPreservesFiles(t *testing.T) {
	fifo := &tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, ModTime: epoch}
	suid, suidBody := hdrFile("bin/su", "su", 0o4755)
	suid.Uid, suid.Gid = 0, 0
	owned, ownedBody := hdrFile("home/u/file", "data", 0o640)
	owned.Uid, owned.Gid = 1234, 5678
	withXattr, xbody := hdrFile("etc/x", "x", 0o644)
	withXattr.PAXRecords = map[string]string{"SCHILY.xattr.user.agentd-test": "v1"}
	ro, _ := hdrDir("ro", 0o555)

	dir := unpack(t, makeTar(t,
		e(hdrDir("bin", 0o755)),
		e(suid, suidBody),
		e(hdrFile("bin/sh", "shell", 0o755)),
		e(hdrLink("bin/sh-link", "bin/sh")),
		e(hdrSymlink("bin/ash", "/bin/sh")),
		e(owned, ownedBody), // parent directories are implicit
		e(withXattr, xbody),
		e(fifo, ""),
		e(ro, ""),
		e(hdrFile("ro/inside", "in", 0o444)),
		e(hdrFile("./dot/slash", "ok", 0o644)),
	))
	// Without root, TempDir's cleanup could not empty the read-only "ro".
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "ro"), 0o755) })

	st := lstat(t, filepath.Join(dir, "bin/su"))
	if st.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/su mode %o, want 4755 (setuid kept)", st.Mode&0o7777)
	}
	if got := mtime(st); !got.Equal(epoch) {
		t.Errorf("bin/su mtime %v, want %v", got, epoch)
	}
	a, b := lstat(t, filepath.Join(dir, "bin/sh")), lstat(t, filepath.Join(dir, "bin/sh-link"))
	if a.Ino != b.Ino {
		t.Errorf("bin/sh-link is not a hard link of bin/sh")
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/ash")); err != nil || target != "/bin/sh" {
		t.Errorf("bin/ash -> %q (%v), want /bin/sh", target, err)
	}
	if got := mtime(lstat(t, filepath.Join(dir, "bin/ash"))); !got.Equal(epoch) {
		t.Errorf("symlink mtime %v, want %v (lutimes)", got, epoch)
	}
	if st := lstat(t, filepath.Join(dir, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o620 {
		t.Errorf("run/fifo mode %o, want fifo 0620", st.Mode)
	}
	if st := lstat(t, filepath.Join(dir, "ro")); st.Mode&0o777 != 0o555 || !mtime(st).Equal(epoch) {
		t.Errorf("ro: mode %o mtime %v, want 0555 and %v (set after its contents)", st.Mode&0o777, mtime(st), epoch)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dot/slash")); err != nil || string(b) != "ok" {
		t.Errorf("dot/slash: %q, %v", b, err)
	}
	if os.Geteuid() == 0 {
		if st := lstat(t, filepath.Join(dir, "home/u/file")); st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("home/u/file owner %d:%d, want 1234:5678", st.Uid, st.Gid)
		}
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "etc/x"), "user.agentd-test", buf); err == nil {
		if string(buf[:n]) != "v1" {
			t.Errorf("etc/x xattr user.agentd-test = %q, want v1", buf[:n])
		}
	} else if !errors.Is(err, unix.ENOTSUP) {
		t.Errorf("etc/x xattr: %v", err)
	}
}

func TestRootUnpackWhiteouts(t *testing.T) {
	testutil.RequiresRoot(t)
	dev := &tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}
	dir := unpack(t, makeTar(t,
		e(hdrDir("etc", 0o755)),
		e(hdrFile("etc/.wh.hosts", "", 0o644)),
		e(hdrDir("data", 0o755)),
		e(hdrFile("data/.wh..wh..opq", "", 0o644)),
		e(hdrFile("data/new", "new", 0o644)),
		e(hdrFile(".wh..wh.plnk", "", 0o644)),
		e(dev, ""),
	))
	st := lstat(t, filepath.Join(dir, "etc/hosts"))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/hosts: mode %o rdev %d, want a 0:0 character device (whiteout)", st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(dir, "etc/.wh.hosts")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("etc/.wh.hosts should not exist: %v", err)
	}
	if !isOpaque(filepath.Join(dir, "data")) {
		t.Errorf("data is not marked opaque")
	}
	if _, err := os.Lstat(filepath.Join(dir, "data/.wh..wh..opq")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("data/.wh..wh..opq should not exist: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, ".wh..wh.plnk")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf(".wh..wh.plnk should be dropped: %v", err)
	}
	if st := lstat(t, filepath.Join(dir, "dev/null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null: mode %o rdev %d:%d, want char 1:3", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

func TestUnpackHostile(t *testing.T) {
	passwd, err := os.Stat("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	passwdLinks := passwd.Sys().(*syscall.Stat_t).Nlink

	for _, tc := range []struct {
		name    string
		entries func(outside string) []tarEntry
	}{
		{"dot-dot", func(string) []tarEntry {
			return []tarEntry{e(hdrFile("../escape", "pwned", 0o644))}
		}},
		{"dot-dot inside a path", func(string) []tarEntry {
			return []tarEntry{e(hdrFile("a/../../escape", "pwned", 0o644))}
		}},
		{"absolute path", func(outside string) []tarEntry {
			return []tarEntry{e(hdrFile(filepath.Join(outside, "escape"), "pwned", 0o644))}
		}},
		{"write through a symlink", func(outside string) []tarEntry {
			return []tarEntry{
				e(hdrSymlink("evil", outside)),
				e(hdrFile("evil/escape", "pwned", 0o644)),
			}
		}},
		{"write through a relative symlink", func(string) []tarEntry {
			return []tarEntry{
				e(hdrSymlink("evil", "..")),
				e(hdrFile("evil/escape", "pwned", 0o644)),
			}
		}},
		{"directory through a symlink", func(outside string) []tarEntry {
			return []tarEntry{
				e(hdrSymlink("evil", outside)),
				e(hdrDir("evil/escape", 0o755)),
			}
		}},
		{"hard link to /etc/passwd", func(string) []tarEntry {
			return []tarEntry{e(hdrLink("passwd", "/etc/passwd"))}
		}},
		{"hard link climbing out", func(string) []tarEntry {
			return []tarEntry{e(hdrLink("passwd", "../../../../../../etc/passwd"))}
		}},
		{"hard link through a symlink", func(outside string) []tarEntry {
			return []tarEntry{
				e(hdrSymlink("evil", outside)),
				e(hdrLink("sentinel", "evil/sentinel")),
			}
		}},
		{"whiteout through a symlink", func(outside string) []tarEntry {
			return []tarEntry{
				e(hdrSymlink("evil", outside)),
				e(hdrFile("evil/.wh.sentinel", "", 0o644)),
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			sentinel := filepath.Join(outside, "sentinel")
			if err := os.WriteFile(sentinel, []byte("untouched"), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(outside, "deep", "er", "layer")
			if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, outside)

			err := Unpack(bytes.NewReader(makeTar(t, tc.entries(outside)...)), dir, nil)
			if err == nil {
				t.Fatal("Unpack succeeded, want an error")
			}
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("error %q does not wrap ErrUnsafePath", err)
			}
			after := snapshot(t, outside)
			for p, d := range after {
				if strings.HasPrefix(p, "deep/er/layer/") || p == "deep/er/layer" {
					continue
				}
				if before[p] != d {
					t.Errorf("outside the layer: %s changed: %q -> %q", p, before[p], d)
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("outside the layer: %s removed", p)
				}
			}
			if st, err := os.Stat("/etc/passwd"); err != nil || st.Sys().(*syscall.Stat_t).Nlink != passwdLinks {
				t.Errorf("/etc/passwd gained a link")
			}
		})
	}
}

// A symlink replaced by a file later in the same layer is replaced, not
// written through.
func TestUnpackReplacesSymlinkInsteadOfFollowing(t *testing.T) {
	outside := t.TempDir()
	sentinel := filepath.Join(outside, "sentinel")
	if err := os.WriteFile(sentinel, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := unpack(t, makeTar(t,
		e(hdrSymlink("x", sentinel)),
		e(hdrFile("x", "new", 0o644)),
		e(hdrSymlink("d", outside)),
		e(hdrDir("d", 0o755)),
		e(hdrFile("d/f", "in", 0o644)),
	))
	if b, _ := os.ReadFile(sentinel); string(b) != "untouched" {
		t.Errorf("sentinel outside the layer = %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "x")); err != nil || string(b) != "new" {
		t.Errorf("x = %q, %v; want the regular file", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "d")); err != nil || !fi.IsDir() {
		t.Errorf("d: %v, %v; want a directory", fi, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "f")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("f was written outside the layer")
	}
}

// twoLayers unpacks a bottom and a top layer; the top one deletes files
// (whiteouts), makes a directory opaque, modifies a hard-linked file and
// replaces a directory by a file.
func twoLayers(t *testing.T) (lower, upper string) {
	testutil.RequiresRoot(t)
	sudo, sudoBody := hdrFile("bin/sudo", "sudo", 0o4755)
	owned, ownedBody := hdrFile("home/user/.profile", "export A=1", 0o600)
	owned.Uid, owned.Gid = 1000, 1000
	lower = unpack(t, makeTar(t,
		e(hdrDir("bin", 0o755)),
		e(hdrFile("bin/sh", "shell v1", 0o755)),
		e(hdrLink("bin/sh-link", "bin/sh")),
		e(sudo, sudoBody),
		e(hdrDir("etc", 0o755)),
		e(hdrFile("etc/passwd", "root:x:0:0", 0o644)),
		e(hdrFile("etc/hosts", "127.0.0.1 localhost", 0o644)),
		e(hdrDir("usr/lib", 0o755)),
		e(hdrFile("usr/lib/libc.so", "libc", 0o755)),
		e(hdrSymlink("lib", "usr/lib")),
		e(hdrDir("data", 0o750)),
		e(hdrFile("data/a", "a", 0o644)),
		e(hdrDir("data/sub", 0o755)),
		e(hdrFile("data/sub/c", "c", 0o644)),
		e(hdrDir("keep", 0o755)),
		e(hdrFile("keep/x", "x", 0o644)),
		e(hdrDir("gone", 0o755)),
		e(hdrFile("gone/y", "y", 0o644)),
		e(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: epoch}, ""),
		e(owned, ownedBody),
	))
	upper = unpack(t, makeTar(t,
		e(hdrDir("etc", 0o755)),
		e(hdrFile("etc/.wh.hosts", "", 0o644)),
		e(hdrDir("data", 0o700)),
		e(hdrFile("data/.wh..wh..opq", "", 0o644)),
		e(hdrFile("data/new", "new", 0o644)),
		e(hdrDir("bin", 0o755)),
		e(hdrFile("bin/sh", "shell v2", 0o755)),
		e(hdrDir("keep", 0o755)),
		e(hdrFile("keep/y", "y", 0o644)),
		e(hdrFile(".wh.lib", "", 0o644)),
		e(hdrFile("gone", "now a file", 0o644)),
		e(hdrFile("newdir/f", "f", 0o644)),
	))
	return lower, upper
}

// wantMerged is the tree the two layers of twoLayers make.
var wantMerged = map[string]string{
	".":                  "dir 755 0:0",
	"bin":                "dir 755 0:0",
	"bin/sh":             "file 755 0:0 shell v2",
	"bin/sh-link":        "file 755 0:0 shell v1",
	"bin/sudo":           "file 4755 0:0 sudo",
	"data":               "dir 700 0:0",
	"data/new":           "file 644 0:0 new",
	"etc":                "dir 755 0:0",
	"etc/passwd":         "file 644 0:0 root:x:0:0",
	"gone":               "file 644 0:0 now a file",
	"home":               "dir 755 0:0",
	"home/user":          "dir 755 0:0",
	"home/user/.profile": "file 600 1000:1000 export A=1",
	"keep":               "dir 755 0:0",
	"keep/x":             "file 644 0:0 x",
	"keep/y":             "file 644 0:0 y",
	"newdir":             "dir 755 0:0",
	"newdir/f":           "file 644 0:0 f",
	"run":                "dir 755 0:0",
	"run/fifo":           "fifo 600 0:0",
	"usr":                "dir 755 0:0",
	"usr/lib":            "dir 755 0:0",
	"usr/lib/libc.so":    "file 755 0:0 libc",
}

func TestRootApplyMergesLayers(t *testing.T) {
	lower, upper := twoLayers(t)
	dest := filepath.Join(t.TempDir(), "rootfs")
	if err := Apply(dest, []string{lower, upper}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	compareTrees(t, "Apply", snapshot(t, dest), wantMerged)
	if st := lstat(t, filepath.Join(dest, "data")); !mtime(st).Equal(epoch) {
		t.Errorf("data mtime %v, want %v", mtime(st), epoch)
	}
	if isOpaque(filepath.Join(dest, "data")) {
		t.Errorf("the opaque xattr was copied into the merged tree")
	}
}

// A symlink a lower layer leaves in dest must not redirect an upper layer's
// directory out of dest.
func TestRootApplyDoesNotFollowSymlinksInDest(t *testing.T) {
	testutil.RequiresRoot(t)
	outside := t.TempDir()
	lower := unpack(t, makeTar(t, e(hdrSymlink("etc", outside))))
	upper := unpack(t, makeTar(t, e(hdrDir("etc", 0o755)), e(hdrFile("etc/passwd", "x", 0o644))))
	dest := filepath.Join(t.TempDir(), "rootfs")
	if err := Apply(dest, []string{lower, upper}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "passwd")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Apply wrote through the lower layer's symlink")
	}
	if fi, err := os.Lstat(filepath.Join(dest, "etc")); err != nil || !fi.IsDir() {
		t.Errorf("dest/etc: %v %v, want a directory", fi, err)
	}
}

// The same layers mounted with overlayfs show the tree Apply makes.
func TestRootOverlayMountMatchesApply(t *testing.T) {
	lower, upper := twoLayers(t)
	compareTrees(t, "overlay mount", snapshot(t, mountOverlay(t, lower, upper)), wantMerged)
}

// A layer that deletes a directory and makes one of the same name (`.wh.etc`
// and `etc/...`, as a layer differ writes `rm -rf /etc; mkdir /etc`) hides
// every lower file in it, in whichever order the archive lists the two:
// the whiteout applies to lower layers only, never to the layer's own files.
// Under overlayfs and Apply alike, a lower /etc/passwd must not show through.
func TestRootWhiteoutAndDirectoryInOneLayer(t *testing.T) {
	testutil.RequiresRoot(t)
	lower := unpack(t, makeTar(t,
		e(hdrDir("etc", 0o755)),
		e(hdrFile("etc/passwd", "app:x:1234:1234::/:/bin/sh", 0o644)),
		e(hdrFile("etc/group", "app:x:1234:", 0o644)),
		e(hdrDir("opt", 0o755)),
		e(hdrFile("opt/a", "a", 0o644)),
		e(hdrFile("f", "lower f", 0o644)),
		e(hdrDir("srv", 0o700)),
		e(hdrFile("srv/old", "old", 0o644)),
	))
	upper := unpack(t, makeTar(t,
		e(hdrFile(".wh.etc", "", 0o644)), // whiteout first, as sorted archives have it
		e(hdrDir("etc", 0o755)),
		e(hdrFile("etc/passwd", "root:x:0:0::/root:/bin/sh", 0o644)),
		e(hdrDir("opt", 0o755)),
		e(hdrFile("opt/b", "b", 0o644)),
		e(hdrFile(".wh.opt", "", 0o644)), // whiteout after the layer's own directory
		e(hdrFile("f", "upper f", 0o644)),
		e(hdrFile(".wh.f", "", 0o644)), // and after the layer's own file
		e(hdrFile(".wh.srv", "", 0o644)),
		e(hdrFile("srv/new", "new", 0o644)), // a new srv with no entry of its own
	))
	want := map[string]string{
		".":          "dir 755 0:0",
		"etc":        "dir 755 0:0",
		"etc/passwd": "file 644 0:0 root:x:0:0::/root:/bin/sh",
		"opt":        "dir 755 0:0",
		"opt/b":      "file 644 0:0 b",
		"f":          "file 644 0:0 upper f",
		"srv":        "dir 755 0:0",
		"srv/new":    "file 644 0:0 new",
	}
	dest := filepath.Join(t.TempDir(), "rootfs")
	if err := Apply(dest, []string{lower, upper}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	compareTrees(t, "Apply", snapshot(t, dest), want)
	compareTrees(t, "overlay mount", snapshot(t, mountOverlay(t, lower, upper)), want)
}

// mountOverlay mounts layers (bottom first) with a fresh upper directory and
// returns the merged directory; the test's cleanup unmounts it.
func mountOverlay(t *testing.T, layers ...string) string {
	t.Helper()
	base := t.TempDir()
	merged, up, work := filepath.Join(base, "merged"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{merged, up, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lower := make([]string, len(layers))
	for i, l := range layers {
		lower[len(layers)-1-i] = l
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), up, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, 0); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}

func compareTrees(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], want[k])
		}
	}
}

// snapshot describes every file under dir: type, mode, owner, and content
// or link target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := lstat(t, p)
		perm := fmt.Sprintf("%o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			out[rel] = "dir " + perm
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(b) > 64 {
				b = fmt.Appendf(nil, "sha256:%x", sha256.Sum256(b))
			}
			out[rel] = "file " + perm + " " + string(b)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			out[rel] = "symlink -> " + target
		case unix.S_IFIFO:
			out[rel] = "fifo " + perm
		case unix.S_IFCHR:
			out[rel] = fmt.Sprintf("char %d:%d %s", unix.Major(st.Rdev), unix.Minor(st.Rdev), perm)
		default:
			out[rel] = fmt.Sprintf("other %o", st.Mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func mtime(st unix.Stat_t) time.Time { return time.Unix(st.Mtim.Unix()).UTC() }
