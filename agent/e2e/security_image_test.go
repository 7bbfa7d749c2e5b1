package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EImageBombs imports hostile image archives into a running agentd whose
// image-max-size is 64Mi: each import fails with an error naming the image, the
// limit and the setting, and the store, the disk, the other images and a running
// pod are as they were. Then the limits change at SIGHUP, and imports are
// interrupted (agentctl killed, agentd killed) half way.
func TestE2EImageBombs(t *testing.T) {
	a := newAgent(t, map[string]any{"image-max-size": "64Mi"})
	store := filepath.Join(a.dir, "root", "images")
	// Directories of other modes than the store's are put right at start.
	for _, d := range []string{store, filepath.Join(store, "layers"), filepath.Join(store, "layers", "sha256"), filepath.Join(store, "tmp")} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	a.start()
	for _, d := range []string{store, filepath.Join(store, "blobs"), filepath.Join(store, "layers"), filepath.Join(store, "layers", "sha256"), filepath.Join(store, "tmp")} {
		if fi, err := os.Lstat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700 once agentd runs", d, fi.Mode().Perm(), err)
		}
	}
	a.write("keeper.yaml", simplePod("keeper", "sleep 100000"))
	a.waitStatus("keeper", "Running", 60*time.Second)
	keeper := a.pod("keeper").Status.ContainerStatuses[0].ContainerID

	busybox, err := tarball.ImageFromPath(testutil.TestImage(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	gzBomb := imgGzipLayer(t, imgTarOfA(t, 8, 128<<20)) // 1 GiB of 'A' in about a megabyte
	var many []imgEntry
	for i := range 20000 {
		many = append(many, imgEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("many/%d", i), Mode: 0o644}})
	}
	sparse := static.NewLayer(imgTar(t, testutil.SparseTarEntry("disk.img", 0o644, 1<<40, testutil.SparseChunk{Offset: 1 << 39, Data: []byte("x")})), types.OCIUncompressedLayer)

	before := imgStoreState(t, store)
	if len(before.layers) != 1 {
		t.Fatalf("the store holds %d layers, want busybox's only", len(before.layers))
	}
	for _, tc := range []struct {
		what, image, archive string
	}{
		// On top of busybox: the shared layer must survive the failure.
		{"gzip bomb", "localhost/bomb:gzip", imgOCIArchive(t, work, "localhost/bomb:gzip", imgAppend(t, busybox, gzBomb))},
		{"gzip bomb, docker save", "localhost/bomb:docker", imgDockerArchive(t, work, "localhost/bomb:docker", imgAppend(t, busybox, gzBomb))},
		{"1 TiB sparse file", "localhost/bomb:sparse", imgOCIArchive(t, work, "localhost/bomb:sparse", imgAppend(t, busybox, sparse))},
		{"20000 empty files", "localhost/bomb:many", imgOCIArchive(t, work, "localhost/bomb:many", imgAppend(t, empty.Image, imgGzipLayer(t, imgTar(t, many))))},
	} {
		free := imgFree(t, store)
		start := time.Now()
		out, err := a.try("image", "import", tc.archive)
		t.Logf("%s: %v in %v: %s", tc.what, err, time.Since(start).Round(time.Millisecond), out)
		if err == nil {
			t.Errorf("%s: import succeeded:\n%s", tc.what, out)
		}
		for _, want := range []string{tc.image, "image-max-size (64MiB)", "nothing was imported", "raise agentd's image-max-size"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the error does not say %q:\n%s", tc.what, want, out)
			}
		}
		a.imgAssertStore(store, before, free)
	}
	if out := a.ctl("get", "images"); !strings.Contains(out, "localhost/busybox") || strings.Contains(out, "bomb") {
		t.Errorf("get images after the bombs:\n%s", out)
	}
	if p := a.pod("keeper"); p == nil || p.Status.ContainerStatuses[0].ContainerID != keeper || p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("keeper was disturbed by the imports: %+v", p)
	}

	// A layer's "./" entry does not change its directory.
	root := imgLayer(t, imgEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o777, Uid: 1234, Gid: 1234}},
		imgEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "hello", Mode: 0o644, Size: 2}, body: "hi"})
	a.ctl("image", "import", imgOCIArchive(t, work, "localhost/rootentry:1", imgAppend(t, empty.Image, root)))
	diffID, err := root.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(store, "layers", "sha256", diffID.Hex)); err != nil || fi.Mode().Perm() != 0o755 ||
		fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Sys().(*syscall.Stat_t).Gid != 0 {
		t.Errorf("layer directory of an archive whose \"./\" is 0777 1234:1234: %v %+v; want 0755 0:0", err, fi)
	}
	a.ctl("--root", filepath.Join(a.dir, "root"), "image", "rm", "localhost/rootentry:1")

	// image-store-max-size, set at SIGHUP.
	a.imgReconfigure(map[string]any{"image-max-size": "0", "image-store-max-size": "16Mi"}, "key=image-store-max-size old=0 new=16Mi")
	out, err := a.try("image", "import", imgOCIArchive(t, work, "localhost/big:1", imgAppend(t, empty.Image, imgGzipLayer(t, imgTarOfA(t, 4, 8<<20)))))
	if err == nil || !strings.Contains(out, "localhost/big:1") || !strings.Contains(out, "image-store-max-size (16MiB)") || !strings.Contains(out, "agentctl image rm") {
		t.Errorf("import over image-store-max-size: %v\n%s", err, out)
	}
	a.imgAssertStore(store, before, imgFree(t, store))

	// No limits: a 1 GiB image is being unpacked when agentctl is killed.
	// agentd sees the request end, stops, and removes what it wrote.
	a.imgReconfigure(map[string]any{"image-max-size": "0", "image-store-max-size": "0"}, "key=image-store-max-size old=16Mi new=0")
	bomb := imgOCIArchive(t, work, "localhost/bomb:gzip", imgAppend(t, busybox, gzBomb))
	free := imgFree(t, store)
	ctl := a.imgStartImport(bomb)
	imgWaitUnpacking(t, store, ctl)
	_ = ctl.Process.Kill()
	_ = ctl.Wait()
	a.eventually(60*time.Second, "agentd to clean up the interrupted import", func() (bool, string) {
		s := imgStoreState(t, store)
		return len(s.tmp) == 0, fmt.Sprintf("tmp/: %q", s.tmp)
	})
	a.imgAssertStore(store, before, free)
	if p := a.pod("keeper"); p == nil || p.Status.ContainerStatuses[0].ContainerID != keeper {
		t.Errorf("keeper was disturbed by the imports: %+v", p)
	}

	// agentd killed half way: the next agentd empties tmp/ when it opens the store.
	// (Without pods: agentd with live restore off replaces them at its start.)
	if err := os.Remove(filepath.Join(a.manifest, "keeper.yaml")); err != nil {
		t.Fatal(err)
	}
	a.waitGone("keeper", 60*time.Second)
	ctl = a.imgStartImport(bomb)
	imgWaitUnpacking(t, store, ctl)
	_ = a.cmd.Process.Signal(unix.SIGKILL)
	<-a.exited
	_ = ctl.Wait()
	if s := imgStoreState(t, store); len(s.tmp) == 0 {
		t.Errorf("agentd was killed before it could leave anything in tmp/: the test proves nothing")
	}
	a.start()
	a.imgAssertStore(store, before, free)
}

// TestE2EImageReserve runs agentd with its root on a 256 MiB tmpfs of 20000
// inodes and no image limits: imports stop before the filesystem's free space or
// inodes go below the reserve, and leave nothing.
func TestE2EImageReserve(t *testing.T) {
	testutil.RequiresRoot(t)
	fsDir, err := os.MkdirTemp("", "e2e-imgfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", fsDir, "tmpfs", 0, "size=256m,nr_inodes=20000,mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after agentd's cleanup, which runs first
		_ = unix.Unmount(fsDir, unix.MNT_DETACH)
		_ = os.Remove(fsDir)
	})
	a := newAgent(t, map[string]any{"root": filepath.Join(fsDir, "root"), "image-max-size": "0"})
	a.start()
	store := filepath.Join(fsDir, "root", "images")
	work := t.TempDir()

	var many []imgEntry
	for i := range 30000 {
		many = append(many, imgEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("many/%d", i), Mode: 0o644}})
	}
	for _, tc := range []struct {
		what, archive, says string
	}{
		{"1 GiB of data on 256 MiB", imgOCIArchive(t, work, "localhost/fill:space", imgAppend(t, empty.Image, imgGzipLayer(t, imgTarOfA(t, 8, 128<<20)))),
			"would leave less than 12.8MiB of disk space free on the filesystem of the image store " + store},
		{"30000 files on 20000 inodes", imgOCIArchive(t, work, "localhost/fill:inodes", imgAppend(t, empty.Image, imgGzipLayer(t, imgTar(t, many)))),
			"would leave less than 1000 inodes (5%) free on the filesystem of the image store " + store},
	} {
		before := imgStoreState(t, store)
		var st unix.Statfs_t
		if err := unix.Statfs(fsDir, &st); err != nil {
			t.Fatal(err)
		}
		out, err := a.try("image", "import", tc.archive)
		t.Logf("%s: %v: %s", tc.what, err, out)
		if err == nil || !strings.Contains(out, tc.says) || !strings.Contains(out, "nothing was imported") {
			t.Errorf("%s: import = %v, want an error saying %q:\n%s", tc.what, err, tc.says, out)
		}
		var after unix.Statfs_t
		if err := unix.Statfs(fsDir, &after); err != nil {
			t.Fatal(err)
		}
		// tmpfs counts exactly: everything written is gone again.
		if after.Bfree != st.Bfree || after.Ffree != st.Ffree {
			t.Errorf("%s: the filesystem had %d blocks and %d inodes free, now %d and %d", tc.what, st.Bfree, st.Ffree, after.Bfree, after.Ffree)
		}
		a.imgAssertStore(store, before, imgFree(t, store))
	}
	a.stop(unix.SIGTERM, 60*time.Second)
}

// imgEntry is a tar entry of a test layer.
type imgEntry struct {
	hdr  *tar.Header
	body string
}

// imgTar writes entries (imgEntry, or raw bytes such as testutil.SparseTarEntry's) as a tar archive.
func imgTar(t *testing.T, parts ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(p any) {
		switch p := p.(type) {
		case imgEntry:
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
		}
	}
	for _, p := range parts {
		if es, ok := p.([]imgEntry); ok {
			for _, e := range es {
				add(e)
			}
			continue
		}
		add(p)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imgTarOfA is a tar of files regular files bomb/fN of size bytes of 'A'.
func imgTarOfA(t *testing.T, files int, size int64) io.Reader {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		chunk := bytes.Repeat([]byte{'A'}, 1<<20)
		var err error
		for i := 0; i < files && err == nil; i++ {
			if err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("bomb/f%d", i), Mode: 0o644, Size: size}); err != nil {
				break
			}
			for left := size; left > 0 && err == nil; left -= int64(len(chunk)) {
				_, err = tw.Write(chunk[:min(left, int64(len(chunk)))])
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// imgGzipLayer is a gzip layer of the tar stream r (a []byte or an io.Reader).
func imgGzipLayer(t *testing.T, r any) v1.Layer {
	t.Helper()
	if b, ok := r.([]byte); ok {
		r = bytes.NewReader(b)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := io.Copy(zw, r.(io.Reader)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gz := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imgLayer is an uncompressed layer of entries.
func imgLayer(t *testing.T, entries ...imgEntry) v1.Layer {
	t.Helper()
	return static.NewLayer(imgTar(t, entries), types.OCIUncompressedLayer)
}

func imgAppend(t *testing.T, base v1.Image, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// imgOCIArchive writes img as an OCI image archive naming it ref, in dir.
func imgOCIArchive(t *testing.T, dir, ref string, img v1.Image) string {
	t.Helper()
	lay := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".oci")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		t.Fatal(err)
	}
	out := lay + ".tar"
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(lay, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == lay || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(lay, p)
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: fi.Size()}); err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(lay)
	return out
}

// imgDockerArchive writes img as a `docker save` archive tagged ref, in dir.
func imgDockerArchive(t *testing.T, dir, ref string, img v1.Image) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".docker.tar")
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

// imgState is what a failed import must not change in the store.
type imgState struct {
	layers []string // layer directories
	tmp    []string // entries of tmp/
	du     int64    // disk the store's files take
}

func imgStoreState(t *testing.T, store string) imgState {
	t.Helper()
	var s imgState
	entries, err := os.ReadDir(filepath.Join(store, "layers", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s.layers = append(s.layers, e.Name())
	}
	if entries, err = os.ReadDir(filepath.Join(store, "tmp")); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s.tmp = append(s.tmp, e.Name())
	}
	_ = filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Lstat(p, &st) == nil {
			s.du += st.Blocks * 512
		}
		return nil
	})
	return s
}

func imgFree(t *testing.T, store string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(store, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// imgAssertStore checks that the store holds the layers of before and nothing
// in tmp/, takes the disk it took (give or take its index), that no process
// holds a deleted file of it open, and that the filesystem gets back about the
// space it had (others write to it too: the bombs are of 1 GiB and more).
func (a *agent) imgAssertStore(store string, before imgState, free int64) {
	t := a.t
	t.Helper()
	now := imgStoreState(t, store)
	if !slices.Equal(now.layers, before.layers) {
		t.Errorf("layer directories %q, want %q as before", now.layers, before.layers)
	}
	if len(now.tmp) > 0 {
		t.Errorf("tmp/ holds %q", now.tmp)
	}
	if d := now.du - before.du; d > 64<<10 || d < -64<<10 {
		t.Errorf("the store takes %d bytes of disk, %d before", now.du, before.du)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, store) && strings.HasSuffix(target, "(deleted)") {
			t.Errorf("%s holds %s open: its disk space is not given back", fd, target)
		}
	}
	a.eventually(30*time.Second, "the filesystem to have the free space it had", func() (bool, string) {
		lost := free - imgFree(t, store)
		return lost < 512<<20, fmt.Sprintf("%d MiB less free than before the import", lost>>20)
	})
}

// imgReconfigure rewrites agentd's configuration file with changes, sends it
// SIGHUP and waits until it logs a line with logged.
func (a *agent) imgReconfigure(changes map[string]any, logged string) {
	a.t.Helper()
	cfg := map[string]any{}
	data, err := os.ReadFile(a.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		a.t.Fatal(err)
	}
	for k, v := range changes {
		cfg[k] = v
	}
	data, _ = json.Marshal(cfg)
	if err := os.WriteFile(a.config, data, 0o600); err != nil {
		a.t.Fatal(err)
	}
	seen := strings.Count(a.stderr.String(), logged)
	if err := a.cmd.Process.Signal(unix.SIGHUP); err != nil {
		a.t.Fatal(err)
	}
	a.eventually(30*time.Second, "agentd to log "+logged, func() (bool, string) {
		return strings.Count(a.stderr.String(), logged) > seen, ""
	})
}

// imgStartImport starts `agentctl image import archive` through agentd.
func (a *agent) imgStartImport(archive string) *exec.Cmd {
	a.t.Helper()
	cmd := exec.Command(filepath.Join(a.bin, "agentctl"), "image", "import", archive)
	cmd.Env = append(os.Environ(), "AGENT_SOCKET="+a.socket)
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	return cmd
}

// imgWaitUnpacking waits until the import of the bomb is unpacking its layer.
func imgWaitUnpacking(t *testing.T, store string, ctl *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m, _ := filepath.Glob(filepath.Join(store, "tmp", "layer-*", "bomb", "f0")); len(m) > 0 {
			return
		}
		if ctl.ProcessState != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	_ = ctl.Process.Kill()
	t.Fatal("the import did not start unpacking within 60s")
}
