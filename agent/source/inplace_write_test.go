package source

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestScannerWaitsForAFileBeingWritten: `cat > f` empties the file before it writes it. A scan in between keeps
// what the file held (a new file is left out) until the file is written, or has stayed empty for writeSettle.
func TestScannerWaitsForAFileBeingWritten(t *testing.T) {
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox:1"))
	s := newScanner(dir, "node-1")
	s.scan()

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	s.now = func() time.Time { return clock }
	st, _ := s.scan()
	if len(st.pods) != 1 || st.pods[0].pod.Spec.Containers[0].Image != "localhost/busybox:1" || len(st.errors) != 0 {
		t.Fatalf("a file emptied just now: %s, want the pod it held", describe(st.snapshot()))
	}
	if s.recheck.IsZero() || s.recheck.Before(clock) || s.recheck.After(clock.Add(writeSettle)) {
		t.Errorf("look again at %v, want within %v of %v", s.recheck, writeSettle, clock)
	}

	write(t, path, podYAML("web", "localhost/busybox:2"))
	write(t, filepath.Join(dir, "new.yaml"), "")
	clock = time.Now()
	st, _ = s.scan()
	if len(st.pods) != 1 || st.pods[0].pod.Spec.Containers[0].Image != "localhost/busybox:2" || len(st.errors) != 0 {
		t.Fatalf("the file written, and a new empty one: %s, want the new pod and nothing of the new file", describe(st.snapshot()))
	}

	clock = clock.Add(writeSettle + time.Millisecond) // nobody writes the new file
	st, _ = s.scan()
	if e := errorFor(st.snapshot(), filepath.Join(dir, "new.yaml")); e == nil || !strings.Contains(e.Error(), "the file is empty") {
		t.Fatalf("a file empty for %v: %s, want it reported empty", writeSettle, describe(st.snapshot()))
	}
	if !s.recheck.IsZero() {
		t.Errorf("nothing is being written, yet the scanner wants to look again at %v", s.recheck)
	}
}

// TestRunReportsAFileLeftEmpty: a manifest emptied and left so is reported once writeSettle is over, without any
// further event or relist.
func TestRunReportsAFileLeftEmpty(t *testing.T) {
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox"))
	h := start(t, dir)
	emptied := time.Now()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	s, _ := h.waitFor("the empty file reported", func(s Snapshot) bool { return errorFor(s, path) != nil })
	took := time.Since(emptied)
	if !slices.Equal(podNames(s), []string{}) || !strings.Contains(errorFor(s, path).Error(), "the file is empty") {
		t.Fatalf("snapshot %s, want no pod and the file reported empty", describe(s))
	}
	// The file system's clock may run a tick behind ours.
	if took < writeSettle-20*time.Millisecond {
		t.Errorf("the empty file was reported %v after it was emptied, want after %v: it may still be being written", took, writeSettle)
	}
}
