package source

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/spec"
)

func TestRunSendsStateOnStart(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	write(t, filepath.Join(dir, "bad.yaml"), "kind: [")
	h := start(t, dir)
	if got := podNames(h.last); !slices.Equal(got, []string{"default/web"}) {
		t.Fatalf("first snapshot has pods %v, want [default/web]", got)
	}
	if e := errorFor(h.last, filepath.Join(dir, "bad.yaml")); e == nil || e.Reason != ReasonInvalid {
		t.Fatalf("first snapshot %s lacks an InvalidManifest error for bad.yaml", describe(h.last))
	}
}

func TestRunEmptyDirSendsEmptySnapshot(t *testing.T) {
	h := start(t, manifestDir(t))
	if len(h.last.Pods) != 0 || len(h.last.Errors) != 0 {
		t.Fatalf("first snapshot of an empty directory is %s, want empty", describe(h.last))
	}
}

func TestRunAddEditRemove(t *testing.T) {
	dir := manifestDir(t)
	h := start(t, dir)
	path := filepath.Join(dir, "web.yaml")

	begin := time.Now()
	write(t, path, podYAML("web", "localhost/busybox:1"))
	s := h.waitPods("default/web")
	t.Logf("manifest written → snapshot: %v", time.Since(begin))
	pod := s.Pods[0]
	if pod.Spec.NodeName != "node-1" || pod.Annotations[spec.AnnotationConfigFile] != path || pod.UID == "" {
		t.Fatalf("pod not made by spec.Parse for this file and node: nodeName %q, file %q, uid %q",
			pod.Spec.NodeName, pod.Annotations[spec.AnnotationConfigFile], pod.UID)
	}

	write(t, path, podYAML("web", "localhost/busybox:2"))
	s, _ = h.waitFor("an edited pod", func(s Snapshot) bool {
		return len(s.Pods) == 1 && s.Pods[0].UID != pod.UID
	})
	if img := s.Pods[0].Spec.Containers[0].Image; img != "localhost/busybox:2" {
		t.Fatalf("edited pod has image %q, want localhost/busybox:2", img)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.waitPods()
}

func TestRunIgnoresIdenticalRewriteTouchAndChmod(t *testing.T) {
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox"))
	h := start(t, dir)

	write(t, path, podYAML("web", "localhost/busybox"))
	h.expectNone()

	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	h.expectNone()

	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	h.expectNone()
}

func TestRunReformattedFileSendsNothing(t *testing.T) {
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox"))
	h := start(t, dir)
	write(t, path, "# the same pod, commented\n"+podYAML("web", "localhost/busybox"))
	h.expectNone()
}

func TestRunRenameIntoPlace(t *testing.T) {
	dir := manifestDir(t)
	h := start(t, dir)
	tmp, path := filepath.Join(dir, "web.yaml.tmp"), filepath.Join(dir, "web.yaml")
	write(t, tmp, podYAML("web", "localhost/busybox"))
	h.expectNone()

	begin := time.Now()
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	s := h.waitPods("default/web")
	t.Logf("manifest renamed into place → snapshot: %v", time.Since(begin))
	if got := s.Pods[0].Annotations[spec.AnnotationConfigFile]; got != path {
		t.Fatalf("pod comes from %q, want %q", got, path)
	}
}

func TestRunIgnoresEditorFiles(t *testing.T) {
	dir := manifestDir(t)
	h := start(t, dir)
	for i, name := range []string{".web.yaml.swp", "web.yaml~", "4913", "#web.yaml#", ".#web.yaml", "web.yaml.bak",
		"web.yaml.orig", "web.yaml.dpkg-new", "web.yaml.rpmsave", ".hidden.yaml", "README"} {
		write(t, filepath.Join(dir, name), podYAML(fmt.Sprintf("pod-%d", i), "localhost/busybox"))
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "sub.yaml", "nested.yaml"), podYAML("nested", "localhost/busybox"))
	h.expectNone()
}

func TestRunBadFileDoesNotHideOthers(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "good.yaml"), podYAML("good", "localhost/busybox"))
	h := start(t, dir)

	bad := filepath.Join(dir, "bad.yaml")
	write(t, bad, strings.Replace(podYAML("fixed", "localhost/busybox"), "image:", "imagePullPolcy: Always\n    image:", 1))
	s, _ := h.waitFor("an error for bad.yaml", func(s Snapshot) bool { return errorFor(s, bad) != nil })
	if got := podNames(s); !slices.Equal(got, []string{"default/good"}) {
		t.Errorf("pods next to a bad file are %v, want [default/good]", got)
	}
	e := errorFor(s, bad)
	if e.Reason != ReasonInvalid || !strings.Contains(e.Error(), "spec.containers[0].imagePullPolcy") ||
		!strings.Contains(e.Error(), bad) {
		t.Errorf("error for bad.yaml is %s %q, want InvalidManifest naming the file and the field", e.Reason, e.Error())
	}

	write(t, bad, podYAML("fixed", "localhost/busybox"))
	s = h.waitPods("default/fixed", "default/good")
	if len(s.Errors) != 0 {
		t.Errorf("errors after the fix: %s", describe(s))
	}
}

func TestRunDuplicatePod(t *testing.T) {
	dir := manifestDir(t)
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, b, podYAML("web", "localhost/busybox:b"))
	h := start(t, dir)
	write(t, a, podYAML("web", "localhost/busybox:a")) // written last, but sorts first

	s, _ := h.waitFor("an error for b.yaml", func(s Snapshot) bool { return errorFor(s, b) != nil })
	if len(s.Pods) != 1 || s.Pods[0].Annotations[spec.AnnotationConfigFile] != a {
		t.Fatalf("snapshot %s, want the one pod from a.yaml", describe(s))
	}
	e := errorFor(s, b)
	want := "pod default/web is already defined in " + a
	if e.Reason != ReasonDuplicate || !strings.Contains(e.Error(), b) || !strings.Contains(e.Error(), want) {
		t.Fatalf("error for b.yaml is %s %q, want DuplicatePod naming %s and %q", e.Reason, e.Error(), b, want)
	}

	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	s, _ = h.waitFor("the pod from b.yaml", func(s Snapshot) bool {
		return len(s.Pods) == 1 && s.Pods[0].Annotations[spec.AnnotationConfigFile] == b
	})
	if len(s.Errors) != 0 {
		t.Fatalf("errors once a.yaml is gone: %s", describe(s))
	}
}

func TestRunInsecureFile(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "good.yaml"), podYAML("good", "localhost/busybox"))
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox"))
	h := start(t, dir)

	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	s := h.waitPods("default/good")
	e := errorFor(s, path)
	if e == nil || e.Reason != ReasonInsecure || !strings.Contains(e.Error(), "chmod go-w "+path) {
		t.Fatalf("snapshot %s, want an InsecureManifest error for %s that says `chmod go-w %s`", describe(s), path, path)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitPods("default/good", "default/web")
}

func TestRunFileOwnedByOtherUser(t *testing.T) {
	requireChown(t)
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox"))
	h := start(t, dir)

	if err := os.Chown(path, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	s := h.waitPods()
	e := errorFor(s, path)
	if e == nil || e.Reason != ReasonInsecure || !strings.Contains(e.Error(), "chown root "+path) ||
		!strings.Contains(e.Error(), "uid 1000") {
		t.Fatalf("snapshot %s, want an InsecureManifest error for %s that says `chown root %s`", describe(s), path, path)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	h.waitPods("default/web")
}

func TestRunInsecureDirRunsNothing(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	h := start(t, dir)

	if err := os.Chmod(dir, 0o775); err != nil {
		t.Fatal(err)
	}
	s := h.waitPods()
	if len(s.Errors) != 1 || s.Errors[0].Path != dir || s.Errors[0].Reason != ReasonInsecure ||
		!strings.Contains(s.Errors[0].Error(), "chmod go-w "+dir) {
		t.Fatalf("snapshot %s, want only an InsecureManifest error for the directory saying `chmod go-w %s`", describe(s), dir)
	}

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.waitPods("default/web")
}

func TestRunDirRemovedAndRecreated(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	h := start(t, dir) // the default relist (20 s) is longer than the test waits: the watch does it

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// RemoveAll empties the directory before it removes it: a scan in between rightly sends an empty snapshot.
	s, _ := h.waitFor("an error for the directory", func(s Snapshot) bool { return errorFor(s, dir) != nil })
	if len(s.Pods) != 0 || len(s.Errors) != 1 || s.Errors[0].Path != dir || s.Errors[0].Reason != ReasonDirUnavailable ||
		!strings.Contains(s.Errors[0].Error(), "does not exist") {
		t.Fatalf("snapshot %s, want only a ManifestDirUnavailable error saying the directory does not exist", describe(s))
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	s = h.waitPods("default/web")
	if len(s.Errors) != 0 {
		t.Fatalf("errors once the directory is back: %s", describe(s))
	}

	// The recreated directory is watched: a change in it is seen at once.
	write(t, filepath.Join(dir, "db.yaml"), podYAML("db", "localhost/busybox"))
	h.waitPods("default/db", "default/web")
}

func TestRunDirReplacedByRename(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	h := start(t, dir)

	staged := dir + ".new"
	if err := os.Mkdir(staged, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(staged, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(staged, "db.yaml"), podYAML("db", "localhost/busybox"))
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, dir); err != nil {
		t.Fatal(err)
	}
	h.waitPods("default/db")

	// The watch is on the new directory, not on the old one.
	write(t, filepath.Join(dir+".old", "old.yaml"), podYAML("old", "localhost/busybox"))
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	h.waitPods("default/db", "default/web")
	h.expectNone()
}

func TestRunBurstOf100Files(t *testing.T) {
	dir := manifestDir(t)
	h := start(t, dir)
	const n = 100
	contents := make([]string, n)
	want := make([]string, n)
	for i := range contents {
		contents[i] = podYAML(fmt.Sprintf("pod-%03d", i), "localhost/busybox")
		want[i] = fmt.Sprintf("default/pod-%03d", i)
	}
	sort.Strings(want)

	begin := time.Now()
	for i, c := range contents { // as `cp staging/*.yaml manifests/` does
		write(t, filepath.Join(dir, fmt.Sprintf("pod-%03d.yaml", i)), c)
	}
	copied := time.Since(begin)
	s, count := h.waitFor("100 pods", func(s Snapshot) bool { return len(s.Pods) == n })
	took := time.Since(begin)
	t.Logf("100 manifests: copied in %v; snapshot with all 100 pods %v after the first write, %d snapshot(s)",
		copied, took, count)
	if !slices.Equal(podNames(s), want) || len(s.Errors) != 0 {
		t.Fatalf("last snapshot %s, want 100 pods and no errors", describe(s))
	}
	// A burst of events ends after debounce without one, or at the maxDelay cap; a copy sends a partial snapshot
	// only at the end of a burst, so it sends at most one per debounce it took, plus the first and the last. That
	// bound holds on a loaded machine too, where the copy pauses for longer than debounce between two files; on an
	// idle one it is a handful, and a source that sent a snapshot per file would fail it.
	if maxCount := 2 + int(copied/debounce); count > maxCount {
		t.Errorf("%d snapshots for one copy of %v, want at most %d", count, copied, maxCount)
	}
	h.expectNone()
}

func TestRunRelistFindsWhatTheWatchMissed(t *testing.T) {
	dir := manifestDir(t)
	h := start(t, dir, func(c *Config) { c.noWatch = true; c.Relist = 100 * time.Millisecond })
	begin := time.Now()
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	h.waitPods("default/web")
	t.Logf("relist alone (every 100ms) found the new manifest after %v", time.Since(begin))
	h.expectNone() // relists that find nothing new send nothing
}

func TestRunLogsEachProblemOnce(t *testing.T) {
	dir := manifestDir(t)
	bad := filepath.Join(dir, "bad.yaml")
	write(t, bad, "kind: [")
	var rec logRecorder
	h := start(t, dir, func(c *Config) { c.Log = rec.logger() })
	for range 20 { // as many relists
		h.expectNone()
	}
	if n := rec.count(`"msg"="Could not process manifest file"`); n != 1 {
		t.Fatalf("the bad file was logged %d times over 20 relists, want once: %q", n, rec.lines)
	}

	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	h.waitFor("no errors", func(s Snapshot) bool { return len(s.Errors) == 0 })
	if n := rec.count(`"msg"="Manifest file no longer refused"`); n != 1 {
		t.Fatalf("the end of the problem was logged %d times, want once: %q", n, rec.lines)
	}
}

func TestRunSlowReceiverGetsLatestState(t *testing.T) {
	dir := manifestDir(t)
	h := start(t, dir)
	// Nobody reads while the directory changes several times, and Run sees each change.
	for i := range 5 {
		write(t, filepath.Join(dir, fmt.Sprintf("pod-%d.yaml", i)), podYAML(fmt.Sprintf("pod-%d", i), "localhost/busybox"))
		if !h.scanNow() {
			t.Fatalf("after pod-%d.yaml was written, no snapshot waits to be sent", i)
		}
	}
	s, count := h.waitFor("5 pods", func(s Snapshot) bool { return len(s.Pods) == 5 })
	if count != 1 {
		t.Errorf("a slow receiver got %d snapshots, want the stale ones replaced by the latest", count)
	}
	if len(s.Errors) != 0 {
		t.Errorf("errors: %s", describe(s))
	}
}

func TestRunConfigErrors(t *testing.T) {
	if err := Run(t.Context(), Config{}, make(chan Snapshot)); err == nil {
		t.Error("Run without a directory returned nil")
	}
	if err := Run(t.Context(), Config{Dir: t.TempDir()}, nil); err == nil {
		t.Error("Run without an output channel returned nil")
	}
}
