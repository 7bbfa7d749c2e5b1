package e2e

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EImageImportCrash kills agentd (SIGKILL, through AGENTD_CRASH_AT) at each
// step of an image import, and agentctl --root at a step of an import and of a
// remove. After each kill, the restarted agentd (or the next agentctl) shows no
// partial image, the store holds no layer, blob, staging directory or temporary
// file of the killed import, a re-import works and a pod runs from the image.
func TestE2EImageImportCrash(t *testing.T) {
	a := newAgent(t, nil)
	root := filepath.Join(a.dir, "root")
	store := filepath.Join(root, "images")

	// busybox and two layers of its own: one uncompressed, one gzipped.
	busybox, err := tarball.ImageFromPath(testutil.TestImage(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	one := imgLayer(t, imgEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: "crash/", Mode: 0o755}},
		imgEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "crash/one", Mode: 0o644, Size: 10}, body: "layer one\n"})
	two := imgGzipLayer(t, imgTar(t, imgEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "crash/two", Mode: 0o644, Size: 10}, body: "layer two\n"}))
	const ref = "localhost/crash:1"
	img := imgAppend(t, busybox, one, two)
	archive := imgOCIArchive(t, t.TempDir(), ref, img)

	// What the store holds with busybox only, and what the crash image adds.
	busyboxOnly := crashStoreFiles(t, store)
	withCrash := busyboxOnly
	withCrash.layers = slices.Clone(busyboxOnly.layers)
	withCrash.blobs = slices.Clone(busyboxOnly.blobs)
	for _, l := range []v1.Layer{one, two} {
		h, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		withCrash.layers = append(withCrash.layers, h.Hex)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	withCrash.blobs = append(withCrash.blobs, cfg.Hex, manifest.Hex)
	slices.Sort(withCrash.layers)
	slices.Sort(withCrash.blobs)

	for i, tc := range []struct {
		point     string
		committed bool // the kill came after the import's commit
	}{
		{"image-layer-unpacked", false},
		{"image-layer-unpacked@2", false},
		{"image-layer-committed", false},
		{"image-layer-committed@2", false},
		{"image-blobs-written", false},
		{"image-index-synced", false},
		{"image-index-written", true},
	} {
		t.Logf("agentd killed at %s", tc.point)
		a.env = []string{crashpoint.Env + "=" + tc.point}
		a.start()
		// Through the API, as agentctl sends it: agentctl itself would take
		// agentd's end for "agentd is not running" and import into the store
		// under its default --root instead.
		_, err := api.NewClient(a.socket).ImportImage(context.Background(), archive)
		if err == nil {
			t.Fatalf("%s: the import succeeded; agentd was to be killed", tc.point)
		}
		select {
		case <-a.exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: agentd did not die\n%s", tc.point, a.stderr)
		}
		name, _, _ := strings.Cut(tc.point, "@")
		if !strings.Contains(a.stderr.String(), "killing agentd at "+name) {
			t.Fatalf("%s: agentd ended, but not at its crash point (%v)\n%s", tc.point, err, a.stderr)
		}
		if left := crashStoreFiles(t, store); left.equal(busyboxOnly) {
			t.Errorf("%s: the killed import left nothing behind: the test proves nothing", tc.point)
		}

		a.env = nil
		a.start()
		want := busyboxOnly
		if tc.committed {
			want = withCrash
		}
		a.crashAssertImages(tc.point, "get images", a.ctl("get", "images"), tc.committed)
		crashAssertStore(t, tc.point, store, want)

		out := a.ctl("image", "import", archive)
		if !strings.Contains(out, ref) {
			t.Errorf("%s: re-import says:\n%s", tc.point, out)
		}
		crashAssertStore(t, tc.point, store, withCrash)
		a.crashRunPod(fmt.Sprintf("crashimg-%d", i), ref)
		a.ctl("--root", root, "image", "rm", ref)
		crashAssertStore(t, tc.point, store, busyboxOnly)
		a.stop(unix.SIGTERM, 60*time.Second)
	}

	// agentctl --root writes the store itself: killed at a step of an
	// import, then of a remove, the next command cleans up.
	for _, tc := range []struct {
		point string
		args  []string
		after crashFiles
	}{
		{"image-layer-committed@2", []string{"image", "import", archive}, busyboxOnly},
		{"image-gc-layer-moved", []string{"image", "rm", ref}, busyboxOnly},
	} {
		t.Logf("agentctl --root killed at %s", tc.point)
		if tc.args[1] == "rm" {
			a.ctl("--root", root, "image", "import", archive)
		}
		out, st := a.crashCtl(tc.point, append([]string{"--root", root}, tc.args...)...)
		if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("%s: agentctl was to be killed: %v\n%s", tc.point, st, out)
		}
		if left := crashStoreFiles(t, store); left.equal(tc.after) {
			t.Errorf("%s: the killed agentctl left nothing behind: the test proves nothing", tc.point)
		}
		a.crashAssertImages(tc.point, "get images --root", a.ctl("--root", root, "get", "images"), false)
		crashAssertStore(t, tc.point, store, tc.after)
	}
	a.ctl("--root", root, "image", "import", archive)
	a.start()
	a.crashAssertImages("the end", "get images", a.ctl("get", "images"), true)
	a.crashRunPod("crashimg-end", ref)
	crashAssertStore(t, "the end", store, withCrash)
}

// crashFiles is what is on disk in an image store: the names of the layer
// directories and blobs (hex digests, sorted), what is in tmp/, and temporary
// files of the atomic writer anywhere but in layers.
type crashFiles struct {
	layers, blobs, tmp, temps []string
}

func (f crashFiles) equal(o crashFiles) bool {
	return slices.Equal(f.layers, o.layers) && slices.Equal(f.blobs, o.blobs) &&
		slices.Equal(f.tmp, o.tmp) && slices.Equal(f.temps, o.temps)
}

func crashStoreFiles(t *testing.T, store string) crashFiles {
	t.Helper()
	list := func(d string) []string { return testutil.DirNames(t, d) }
	var f crashFiles
	for _, n := range list(filepath.Join(store, "layers", "sha256")) {
		if atomicfile.IsTemp(n) {
			f.temps = append(f.temps, "layers/sha256/"+n)
		} else {
			f.layers = append(f.layers, n)
		}
	}
	for _, n := range list(filepath.Join(store, "blobs", "sha256")) {
		if atomicfile.IsTemp(n) {
			f.temps = append(f.temps, "blobs/sha256/"+n)
		} else {
			f.blobs = append(f.blobs, n)
		}
	}
	f.tmp = list(filepath.Join(store, "tmp"))
	for _, n := range list(store) {
		if atomicfile.IsTemp(n) {
			f.temps = append(f.temps, n)
		}
	}
	return f
}

// crashAssertStore checks that the store holds the layers and blobs of want
// and nothing else: no orphan layer or blob, nothing in tmp/, no temporary
// file.
func crashAssertStore(t *testing.T, when, store string, want crashFiles) {
	t.Helper()
	got := crashStoreFiles(t, store)
	if !slices.Equal(got.layers, want.layers) {
		t.Errorf("%s: layer directories %q, want %q", when, got.layers, want.layers)
	}
	if !slices.Equal(got.blobs, want.blobs) {
		t.Errorf("%s: blobs %q, want %q", when, got.blobs, want.blobs)
	}
	if len(got.tmp) > 0 {
		t.Errorf("%s: tmp/ holds %q", when, got.tmp)
	}
	if len(got.temps) > 0 {
		t.Errorf("%s: temporary files left: %q", when, got.temps)
	}
}

// crashAssertImages checks an image list: busybox, and the crash image if
// and only if want.
func (a *agent) crashAssertImages(when, what, out string, want bool) {
	a.t.Helper()
	if !strings.Contains(out, "localhost/busybox") || strings.Contains(out, "localhost/crash") != want {
		a.t.Errorf("%s: %s, want localhost/crash %v:\n%s", when, what, want, out)
	}
}

// crashRunPod runs a pod name from ref that prints a file of each of the
// image's layers, and removes it.
func (a *agent) crashRunPod(name, ref string) {
	a.t.Helper()
	pod := strings.Replace(simplePod(name, "cat /crash/one /crash/two", "  restartPolicy: Never"), "localhost/busybox:latest", ref, 1)
	a.write(name+".yaml", pod)
	a.waitStatus(name, "Completed", 60*time.Second)
	if out := a.ctl("logs", name); out != "layer one\nlayer two\n" {
		a.t.Errorf("the pod of %s logged %q", ref, out)
	}
	if err := os.Remove(filepath.Join(a.manifest, name+".yaml")); err != nil {
		a.t.Fatal(err)
	}
	a.waitGone(name, 60*time.Second)
}

// crashCtl runs agentctl with the crash point armed.
func (a *agent) crashCtl(point string, args ...string) (string, *os.ProcessState) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(a.bin, "agentctl"), args...)
	cmd.Env = append(os.Environ(), "AGENT_SOCKET="+a.socket, crashpoint.Env+"="+point)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState
}
