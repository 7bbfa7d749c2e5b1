package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestE2EContainerWritesStayOutOfRunDir: a container that fills its writable
// layer, its /etc/hosts and its termination log (64 MiB each) fills agentd's
// root, on disk — never run-dir, a tmpfs like /run whose pages are host memory
// and which the whole host shares. Removing the pod removes all of it.
func TestE2EContainerWritesStayOutOfRunDir(t *testing.T) {
	const mib = 64
	a := newAgent(t, nil)
	// Smaller than what the container writes: before the fix, its writes failed
	// with ENOSPC here after eating 128 MiB of host memory.
	run := a.runDirTmpfs(128 << 20)
	root := filepath.Join(a.dir, "root")
	a.start()
	before := fsUsed(t, run)

	a.write("fill.yaml", simplePod("fill", fmt.Sprintf("dd if=/dev/zero of=/fill bs=1M count=%[1]d && "+
		"dd if=/dev/zero of=/etc/hosts bs=1M count=%[1]d && dd if=/dev/zero of=/dev/termination-log bs=1M count=%[1]d && "+
		"echo all written || echo a write failed; trap 'exit 0' TERM; while true; do sleep 1 & wait; done", mib)))
	var logs string
	a.eventually(180*time.Second, "the container's writes", func() (bool, string) {
		logs, _ = a.try("logs", "fill")
		return strings.Contains(logs, "all written") || strings.Contains(logs, "a write failed"), logs
	})
	grew := fsUsed(t, run) - before
	t.Logf("run-dir grew by %d KiB while the container wrote %d MiB", grew>>10, 3*mib)
	if grew >= 8<<20 {
		t.Errorf("run-dir (a tmpfs) grew by %d MiB; what is big there:\n%s", grew>>20, bigFiles(run))
	}
	if !strings.Contains(logs, "all written") {
		t.Fatalf("the container could not write %d MiB three times:\n%s", mib, logs)
	}

	p := a.pod("fill")
	if p == nil {
		t.Fatal("pod fill is gone")
	}
	uid := string(p.UID)
	id := uid + "_main"
	// Its rootfs (the writable layer), its hosts file and its termination log
	// are on disk, under root, in root's own directories.
	if kib := duKiB(t, filepath.Join(root, "containers", id, "runs")); kib < mib<<10 {
		t.Errorf("%s holds %d KiB, want the container's %d MiB file", filepath.Join(root, "containers", id, "runs"), kib, mib)
	}
	data := filepath.Join(root, "pods", uid)
	for _, f := range []string{filepath.Join(data, "hosts"), filepath.Join(data, "containers", "main", "termination-log")} {
		if fi, err := os.Stat(f); err != nil || fi.Size() < mib<<20 {
			t.Errorf("%s: %v, want the container's %d MiB", f, err, mib)
		}
	}
	for _, d := range []string{data, filepath.Join(root, "containers", id)} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, want mode 0700", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(run, "monitors", id, "runs")); err == nil {
		t.Errorf("runs of %s in run-dir", id)
	}

	if err := os.Remove(filepath.Join(a.manifest, "fill.yaml")); err != nil {
		t.Fatal(err)
	}
	a.waitGone("fill", 60*time.Second)
	a.eventually(30*time.Second, "nothing left under root/containers and root/pods", func() (bool, string) {
		var left []string
		for _, d := range []string{filepath.Join(root, "containers"), filepath.Join(root, "pods")} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				left = append(left, filepath.Join(d, e.Name()))
			}
		}
		return len(left) == 0, strings.Join(left, "\n")
	})
	if grew := fsUsed(t, run) - before; grew >= 1<<20 {
		t.Errorf("run-dir holds %d KiB more than before the pod:\n%s", grew>>10, bigFiles(run))
	}
}

// fsUsed is how many bytes the filesystem at dir uses.
func fsUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// duKiB is the disk usage of dir in KiB, on dir's filesystem only (a run's
// rootfs, an overlay mount, is not counted twice).
func duKiB(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-sxk", dir).Output()
	if err != nil {
		t.Fatalf("du %s: %v", dir, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("du %s: %q", dir, out)
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatalf("du %s: %q", dir, out)
	}
	return n
}

// bigFiles lists the files of 1 MiB or more under dir, on its filesystem only.
func bigFiles(dir string) string {
	var dev uint64
	if st, err := os.Stat(dir); err == nil {
		dev = st.Sys().(*syscall.Stat_t).Dev
	}
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Dev != dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if info.Mode().IsRegular() && info.Size() >= 1<<20 {
			fmt.Fprintf(&b, "  %s: %d MiB\n", path, info.Size()>>20)
		}
		return nil
	})
	return b.String()
}
