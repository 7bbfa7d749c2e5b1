package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
)

// waitTimeout bounds every wait for a snapshot that should come.
const waitTimeout = 30 * time.Second

// podYAML is a valid manifest of pod name in the default namespace.
func podYAML(name, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
  - name: main
    image: %s
    command: ["sleep", "3600"]
`, name, image)
}

// manifestDir returns a new, secure manifest directory (0755, owned by the test's user).
func manifestDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "manifests")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return dir
}

// write writes a file in place (as `cat > f` does) with mode 0644.
func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// requireChown skips a test that gives files to another user: only root can.
func requireChown(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user; run as root (CI does) to test ownership checks")
	}
}

// harness runs Run on a directory and reads its snapshots.
type harness struct {
	t      *testing.T
	dir    string
	out    chan Snapshot
	rescan chan chan bool
	last   Snapshot
}

// start runs Run on dir until the test ends and returns its first snapshot's harness.
func start(t *testing.T, dir string, configure ...func(*Config)) *harness {
	t.Helper()
	cfg := Config{Dir: dir, NodeName: "node-1", Log: testr.New(t), rescan: make(chan chan bool)}
	for _, c := range configure {
		c(&cfg)
	}
	h := &harness{t: t, dir: dir, out: make(chan Snapshot), rescan: cfg.rescan}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, h.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil when its context is done", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %v of its context being done", waitTimeout)
		}
	})
	h.next()
	return h
}

// next returns the next snapshot, failing the test if none comes.
func (h *harness) next() Snapshot {
	h.t.Helper()
	select {
	case s := <-h.out:
		h.last = s
		return s
	case <-time.After(waitTimeout):
		h.t.Fatalf("no snapshot within %v; the last was %s", waitTimeout, describe(h.last))
		return Snapshot{}
	}
}

// waitFor reads snapshots until one satisfies cond, and returns it and how many
// snapshots that took.
func (h *harness) waitFor(what string, cond func(Snapshot) bool) (Snapshot, int) {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for n := 1; ; n++ {
		select {
		case s := <-h.out:
			h.last = s
			if cond(s) {
				return s, n
			}
		case <-deadline:
			h.t.Fatalf("no snapshot with %s within %v; the last was %s", what, waitTimeout, describe(h.last))
			return Snapshot{}, n
		}
	}
}

// waitPods waits for a snapshot whose pods are exactly names (namespace/name).
func (h *harness) waitPods(names ...string) Snapshot {
	h.t.Helper()
	s, _ := h.waitFor(fmt.Sprintf("pods %v", names), func(s Snapshot) bool { return slices.Equal(podNames(s), names) })
	return s
}

// expectNone shows that what the test did since the last snapshot sends none: it has Run scan the directory once
// more, now that the change is complete on disk, and fails if that leaves a snapshot waiting to be sent. Every later
// scan sees what this one saw, so none will come; no waiting "long enough" is involved.
func (h *harness) expectNone() {
	h.t.Helper()
	if h.scanNow() {
		last := h.last
		h.t.Fatalf("a change that should send no snapshot sends %s; the last one sent was %s", describe(h.next()), describe(last))
	}
}

// scanNow has Run scan the directory now and returns whether a snapshot waits to be sent. It reads no snapshot:
// one that waits stays waiting.
func (h *harness) scanNow() bool {
	h.t.Helper()
	reply := make(chan bool, 1)
	deadline := time.After(waitTimeout)
	select {
	case h.rescan <- reply:
	case <-deadline:
		h.t.Fatalf("Run did not take a scan request within %v", waitTimeout)
	}
	select {
	case pending := <-reply:
		return pending
	case <-deadline:
		h.t.Fatalf("Run did not scan within %v", waitTimeout)
		return false
	}
}

func podNames(s Snapshot) []string {
	names := []string{}
	for _, p := range s.Pods {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	return names
}

// errorFor returns the snapshot's error for path, or nil.
func errorFor(s Snapshot, path string) *FileError {
	for i := range s.Errors {
		if s.Errors[i].Path == path {
			return &s.Errors[i]
		}
	}
	return nil
}

func describe(s Snapshot) string {
	var errs []string
	for _, e := range s.Errors {
		errs = append(errs, e.Reason+" "+e.Error())
	}
	return fmt.Sprintf("{pods %v, errors %q}", podNames(s), errs)
}

// logRecorder is a logr sink that keeps every line, to count them.
type logRecorder struct {
	mu    sync.Mutex
	lines []string // guarded by mu
}

func (r *logRecorder) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lines = append(r.lines, args)
	}, funcr.Options{})
}

func (r *logRecorder) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}
