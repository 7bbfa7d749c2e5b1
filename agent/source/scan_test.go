package source

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/spec"
)

func TestConsidered(t *testing.T) {
	for name, want := range map[string]bool{
		"web.yaml": true, "web.yml": true, "web.json": true, "WEB.YAML": true, "web.v2.yaml": true,
		"web": false, "web.conf": false, "README": false, "web.yaml.txt": false,
		".web.yaml": false, ".web.yaml.swp": false, ".web.yaml.swx": false, ".web.yaml.swo": false,
		"web.yaml~": false, "4913": false, "#web.yaml#": false, ".#web.yaml": false,
		"web.yaml.bak": false, "web.bak": false, "web.yaml.tmp": false, "web.yaml.orig": false,
		"web.yaml.dpkg-new": false, "web.yaml.dpkg-old": false, "web.yaml.dpkg-dist": false,
		"web.yaml.rpmnew": false, "web.yaml.rpmsave": false, "web.rpm.yaml": false,
	} {
		if got := considered(name); got != want {
			t.Errorf("considered(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestInsecurity(t *testing.T) {
	for _, tc := range []struct {
		perm    fs.FileMode
		trusted bool
		fixes   []string
	}{
		{0o644, true, nil},
		{0o600, true, nil},
		{0o755, true, nil},
		{0o664, true, []string{"chmod go-w %s"}},
		{0o646, true, []string{"chmod go-w %s"}},
		{0o777, true, []string{"chmod go-w %s"}},
		{0o644, false, []string{"chown root %s"}},
		{0o666, false, []string{"chmod go-w %s", "chown root %s"}},
	} {
		problems, fixes := insecurity(tc.perm, 1000, tc.trusted)
		if !slices.Equal(fixes, tc.fixes) || len(problems) != len(fixes) {
			t.Errorf("insecurity(%#o, trusted %v) = %q, %q; want fixes %q", tc.perm, tc.trusted, problems, fixes, tc.fixes)
		}
	}
}

func TestCheckDir(t *testing.T) {
	dir := manifestDir(t)
	if err := CheckDir(dir); err != nil {
		t.Fatalf("CheckDir of a 0755 directory: %v", err)
	}

	missing := filepath.Join(dir, "missing")
	if err := CheckDir(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("CheckDir of a missing directory: %v, want fs.ErrNotExist naming it", err)
	}

	file := filepath.Join(dir, "file")
	write(t, file, "")
	if err := CheckDir(file); !errors.Is(err, ErrNotDir) || !strings.Contains(err.Error(), "a regular file") {
		t.Errorf("CheckDir of a file: %v, want ErrNotDir saying it is a regular file", err)
	}

	if err := os.Chmod(dir, 0o757); err != nil {
		t.Fatal(err)
	}
	err := CheckDir(dir)
	if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "`chmod go-w "+dir+"`") ||
		!strings.Contains(err.Error(), "0757") {
		t.Errorf("CheckDir of a 0757 directory: %v, want ErrInsecure with the mode and `chmod go-w %s`", err, dir)
	}
}

func TestCheckDirOwner(t *testing.T) {
	requireChown(t)
	dir := manifestDir(t)
	if err := os.Chown(dir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(dir); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "`chown root "+dir+"`") {
		t.Errorf("CheckDir of a directory owned by uid 1000: %v, want ErrInsecure with `chown root %s`", err, dir)
	}
	if err := os.Chmod(dir, 0o775); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("`chmod go-w %s && chown root %s`", dir, dir)
	if err := CheckDir(dir); !strings.Contains(fmt.Sprint(err), want) {
		t.Errorf("CheckDir of a 0775 directory owned by uid 1000: %v, want both fixes: %s", err, want)
	}
}

func TestScannerParsesOnlyChangedFiles(t *testing.T) {
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox:1"))
	s := newScanner(dir, "node-1")
	clock := time.Now()
	s.now = func() time.Time { return clock }

	s.scan()
	if s.parses != 1 {
		t.Fatalf("first scan parsed %d times, want 1", s.parses)
	}
	s.scan()
	if s.parses != 1 {
		t.Fatalf("a second scan of a just-written file parsed again (%d parses); the hash should have said it is the same", s.parses)
	}

	clock = clock.Add(time.Minute) // the file is old now: its stat is trusted
	s.scan()
	reads := s.reads
	s.scan()
	if s.reads != reads || s.parses != 1 {
		t.Fatalf("a relist of an unchanged old file read it again (%d→%d reads, %d parses)", reads, s.reads, s.parses)
	}

	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	s.scan()
	if s.reads != reads+1 || s.parses != 1 {
		t.Fatalf("a touched file: %d reads, %d parses; want it read again but not parsed", s.reads-reads, s.parses)
	}

	write(t, path, podYAML("web", "localhost/busybox:2"))
	st, _ := s.scan()
	if s.parses != 2 || st.pods[0].pod.Spec.Containers[0].Image != "localhost/busybox:2" {
		t.Fatalf("an edited file: %d parses, image %s", s.parses, st.pods[0].pod.Spec.Containers[0].Image)
	}
}

func TestScannerRacyStatIsNotTrusted(t *testing.T) {
	// A coarse file-system clock can give two same-size versions of a file the same
	// stat. Fake that: after a write, make the cache believe it read this stat.
	dir := manifestDir(t)
	path := filepath.Join(dir, "web.yaml")
	write(t, path, podYAML("web", "localhost/busybox:1"))
	s := newScanner(dir, "node-1")
	s.scan()
	write(t, path, podYAML("web", "localhost/busybox:2")) // same size
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s.cache[path].key = keyOf(fi)

	st, _ := s.scan()
	if got := st.pods[0].pod.Spec.Containers[0].Image; got != "localhost/busybox:2" {
		t.Fatalf("after a same-stat rewrite within the racy window the pod has image %s, want localhost/busybox:2", got)
	}
}

func TestTrustKey(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		changed, read time.Time
		want          bool
	}{
		{now, now, false},
		{now, now.Add(racyWindow - time.Millisecond), false},
		{now, now.Add(racyWindow + time.Millisecond), true},
		{now.Add(-time.Hour), now, true},
	} {
		e := cacheEntry{key: fileKey{mtime: tc.changed.UnixNano(), ctime: tc.changed.UnixNano()}, readAt: tc.read}
		if got := e.trustKey(); got != tc.want {
			t.Errorf("changed %v before the read: trustKey = %v, want %v", tc.read.Sub(tc.changed), got, tc.want)
		}
	}
}

func TestScannerRefusesLargeFileUnread(t *testing.T) {
	dir := manifestDir(t)
	path := filepath.Join(dir, "big.yaml")
	write(t, path, "")
	if err := os.Truncate(path, spec.MaxManifestSize+1); err != nil { // sparse: quick
		t.Fatal(err)
	}
	s := newScanner(dir, "node-1")
	st, _ := s.scan()
	if len(st.errors) != 1 || !errors.Is(st.errors[0].Err, spec.ErrTooLarge) || st.errors[0].Reason != ReasonInvalid {
		t.Fatalf("errors %v, want one ErrTooLarge", st.errors)
	}
	if s.reads != 0 {
		t.Fatalf("the large file was read (%d reads)", s.reads)
	}
}

func TestScannerSpecialFiles(t *testing.T) {
	dir := manifestDir(t)
	elsewhere := t.TempDir()
	target := filepath.Join(elsewhere, "target.yaml")
	write(t, target, podYAML("linked", "localhost/busybox"))
	for _, link := range []struct{ name, to string }{
		{"linked.yaml", target},
		{"dangling.yaml", filepath.Join(elsewhere, "missing.yaml")},
		{"dir.yaml", elsewhere},
	} {
		if err := os.Symlink(link.to, filepath.Join(dir, link.name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}

	s := newScanner(dir, "node-1")
	st, _ := s.scan() // must not hang on the FIFO
	snap := st.snapshot()
	if got := podNames(snap); !slices.Equal(got, []string{"default/linked"}) {
		t.Errorf("pods %v, want [default/linked] from the symlink", got)
	}
	if p := snap.Pods; len(p) == 1 && p[0].Annotations[spec.AnnotationConfigFile] != filepath.Join(dir, "linked.yaml") {
		t.Errorf("the linked pod comes from %s, want the link's path", p[0].Annotations[spec.AnnotationConfigFile])
	}
	for name, want := range map[string]string{"dangling.yaml": "does not exist", "fifo.yaml": "named pipe"} {
		e := errorFor(snap, filepath.Join(dir, name))
		if e == nil || e.Reason != ReasonInvalid || !strings.Contains(e.Error(), want) {
			t.Errorf("error for %s: %v, want InvalidManifest saying %q", name, e, want)
		}
	}
	if len(snap.Errors) != 2 {
		t.Errorf("errors %s, want only the dangling link and the FIFO", describe(snap))
	}

	// The check applies to the link's target.
	if err := os.Chmod(target, 0o666); err != nil {
		t.Fatal(err)
	}
	st, _ = s.scan()
	snap = st.snapshot()
	e := errorFor(snap, filepath.Join(dir, "linked.yaml"))
	if len(snap.Pods) != 0 || e == nil || e.Reason != ReasonInsecure {
		t.Errorf("a link to a world-writable file gives %s, want an InsecureManifest error", describe(snap))
	}
}

func TestAssemble(t *testing.T) {
	pod := func(ns, name, uid string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
	}
	file := func(path string, pods ...*corev1.Pod) fileResult {
		return fileResult{path: path, pods: pods, podSums: make([][32]byte, len(pods))}
	}
	parseErr := errors.New("spec.containers: Required value")
	for _, tc := range []struct {
		name   string
		files  []fileResult
		pods   []string // namespace/name@path
		errors []string // path reason message
	}{{
		name:  "empty",
		files: nil,
	}, {
		name: "sorted by namespace/name, whatever the file names",
		files: []fileResult{
			file("/m/a.yaml", pod("kube-system", "b", "1")),
			file("/m/b.yaml", pod("default", "z", "2")),
			file("/m/c.yaml", pod("kube-system", "a", "3")),
		},
		pods: []string{"default/z@/m/b.yaml", "kube-system/a@/m/c.yaml", "kube-system/b@/m/a.yaml"},
	}, {
		name: "the first path wins a duplicate, in any input order",
		files: []fileResult{
			file("/m/b.yaml", pod("default", "web", "2")),
			file("/m/a.yaml", pod("default", "web", "1")),
		},
		pods:   []string{"default/web@/m/a.yaml"},
		errors: []string{"/m/b.yaml DuplicatePod pod default/web is already defined in /m/a.yaml"},
	}, {
		name: "same name in two namespaces is no duplicate",
		files: []fileResult{
			file("/m/a.yaml", pod("default", "web", "1")),
			file("/m/b.yaml", pod("other", "web", "2")),
		},
		pods: []string{"default/web@/m/a.yaml", "other/web@/m/b.yaml"},
	}, {
		name: "a uid set by hand twice",
		files: []fileResult{
			file("/m/a.yaml", pod("default", "web", "u")),
			file("/m/b.yaml", pod("default", "db", "u")),
		},
		pods:   []string{"default/web@/m/a.yaml"},
		errors: []string{"/m/b.yaml DuplicatePod pod default/db has uid u, which pod default/web in /m/a.yaml already has"},
	}, {
		name: "a PodList's items are pods of their own; one defined before is a duplicate",
		files: []fileResult{
			file("/m/b.yaml", pod("default", "web", "2"), pod("default", "db", "3")),
			file("/m/a.yaml", pod("default", "db", "1")),
		},
		pods:   []string{"default/db@/m/a.yaml", "default/web@/m/b.yaml"},
		errors: []string{"/m/b.yaml DuplicatePod pod default/db is already defined in /m/a.yaml"},
	}, {
		name: "a bad file claims no name",
		files: []fileResult{
			{path: "/m/a.yaml", err: parseErr, reason: ReasonInvalid},
			file("/m/b.yaml", pod("default", "web", "2")),
			{path: "/m/0.yaml", err: parseErr, reason: ReasonInsecure},
		},
		pods: []string{"default/web@/m/b.yaml"},
		errors: []string{"/m/0.yaml InsecureManifest " + parseErr.Error(),
			"/m/a.yaml InvalidManifest " + parseErr.Error()},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st := assemble(tc.files)
			var pods, errs []string
			for _, p := range st.pods {
				for _, f := range tc.files {
					if slices.Contains(f.pods, p.pod) {
						pods = append(pods, p.pod.Namespace+"/"+p.pod.Name+"@"+f.path)
					}
				}
			}
			for _, e := range st.errors {
				errs = append(errs, e.Path+" "+e.Reason+" "+e.Err.Error())
			}
			if !slices.Equal(pods, tc.pods) {
				t.Errorf("pods %q, want %q", pods, tc.pods)
			}
			if !slices.Equal(errs, tc.errors) {
				t.Errorf("errors %q, want %q", errs, tc.errors)
			}
		})
	}
}

func TestStateEqual(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "1"}}
	base := state{pods: []podEntry{{pod: pod, sum: [32]byte{1}}},
		errors: []FileError{{Path: "/m/a.yaml", Err: errors.New("bad"), Reason: ReasonInvalid}}}
	same := state{pods: []podEntry{{pod: pod.DeepCopy(), sum: [32]byte{1}}},
		errors: []FileError{{Path: "/m/a.yaml", Err: errors.New("bad"), Reason: ReasonInvalid}}}
	if !base.equal(same) {
		t.Error("equal states compare unequal")
	}
	for name, other := range map[string]state{
		"other uid":     {pods: []podEntry{{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "2"}}, sum: [32]byte{1}}}, errors: base.errors},
		"other content": {pods: []podEntry{{pod: pod, sum: [32]byte{2}}}, errors: base.errors},
		"no pods":       {errors: base.errors},
		"other message": {pods: base.pods, errors: []FileError{{Path: "/m/a.yaml", Err: errors.New("worse"), Reason: ReasonInvalid}}},
		"other reason":  {pods: base.pods, errors: []FileError{{Path: "/m/a.yaml", Err: errors.New("bad"), Reason: ReasonInsecure}}},
		"other path":    {pods: base.pods, errors: []FileError{{Path: "/m/b.yaml", Err: errors.New("bad"), Reason: ReasonInvalid}}},
		"no errors":     {pods: base.pods},
	} {
		if base.equal(other) {
			t.Errorf("%s: compares equal", name)
		}
	}
}

func TestSnapshotOwnsItsPods(t *testing.T) {
	dir := manifestDir(t)
	write(t, filepath.Join(dir, "web.yaml"), podYAML("web", "localhost/busybox"))
	s := newScanner(dir, "node-1")
	st, _ := s.scan()
	snap := st.snapshot()
	snap.Pods[0].Labels = map[string]string{"changed": "by the receiver"}
	st, _ = s.scan()
	if st.pods[0].pod.Labels["changed"] != "" {
		t.Fatal("a receiver's change to a snapshot's pod reached the parse cache")
	}
}
