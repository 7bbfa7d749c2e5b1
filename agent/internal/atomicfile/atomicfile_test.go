package atomicfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	n, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, content := range []string{"old", "new, and longer"} {
		if err := WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Errorf("after writing %q: %q, %v", content, got, err)
		}
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v; want 0640", fi.Mode(), err)
	}
	if n := names(t, dir); len(n) != 1 {
		t.Errorf("directory holds %q, want the file only", n)
	}
}

// Writers of one file in one process must not share a temporary file: each
// write lands whole.
func TestConcurrentWritersNeverTear(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "journal.json")
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			content := []byte(strings.Repeat(fmt.Sprint(w), 4096+w))
			for range 50 {
				if err := WriteFile(p, content, 0o600); err != nil {
					errs <- err
				}
				if err := RemoveStale(dir); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if w := int(got[0] - '0'); len(got) != 4096+w || strings.Trim(string(got), string(got[:1])) != "" {
		t.Errorf("torn file: %d bytes starting %q", len(got), got[:1])
	}
	if n := names(t, dir); len(n) != 1 {
		t.Errorf("directory holds %q, want the file only", n)
	}
}

// crashHelperEnv makes the test binary write a file and die (SIGKILL) just
// before the rename, as a writer killed at the worst moment would.
const crashHelperEnv = "ATOMICFILE_TEST_CRASH_WRITE"

func TestMain(m *testing.M) {
	if p := os.Getenv(crashHelperEnv); p != "" {
		_ = WriteFile(p, []byte("torn?"), 0o600, BeforeRename(func() {
			_ = unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}))
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestCrashLeavesOldContentAndTheNextWriteCleansUp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pod.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+p)
	err := cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the helper was to die of SIGKILL: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "old" {
		t.Errorf("after a writer died before its rename: %q, %v; want the old content", got, err)
	}
	var temps []string
	for _, n := range names(t, dir) {
		if IsTemp(n) {
			temps = append(temps, n)
		}
	}
	if len(temps) != 1 || !strings.HasPrefix(temps[0], ".pod.json.tmp-") {
		t.Fatalf("temporary files after the crash: %q, want the dead writer's one", temps)
	}

	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := names(t, dir); len(n) != 1 || n[0] != "pod.json" {
		t.Errorf("after the next write the directory holds %q, want pod.json only", n)
	}
}

func TestRemoveStaleKeepsWritersAtWork(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	mk(".a.json.tmp-1").Close() // a dead writer's
	busy := mk(".b.json.tmp-2") // a live writer's
	defer busy.Close()
	if err := unix.Flock(int(busy.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	mk("a.json").Close()
	mk("a.json.tmp").Close() // not WriteFile's: someone else's file
	if err := os.Mkdir(filepath.Join(dir, ".d.tmp-3"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := RemoveStale(dir); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, n := range names(t, dir) {
		got[n] = true
	}
	want := map[string]bool{".b.json.tmp-2": true, "a.json": true, "a.json.tmp": true, ".d.tmp-3": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after RemoveStale: %v, want %v", got, want)
	}
	// The next write of b keeps the busy writer's file too.
	if err := WriteFile(filepath.Join(dir, "b.json"), []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".b.json.tmp-2")); err != nil {
		t.Errorf("a write of b.json removed another writer's temporary file: %v", err)
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".journal.json.tmp-123": true,
		"journal.json":          false,
		"journal.json.tmp":      false,
		".journal.json.tmp":     false,
		".hidden":               false,
	} {
		if IsTemp(name) != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, !want, want)
		}
	}
}
