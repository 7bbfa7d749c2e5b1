package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

// FuzzParse: no input may panic or hang Parse, every failure is one of the package's
// error classes, and every accepted pod validates and defaults idempotently.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/good/*")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, uid := range []string{"../../x", "..", ".", "a/b", "/abs", "x\x00y", "ok-1.2", "a_b", " a"} {
		f.Add([]byte(strings.Replace(base, "name: p\n", "name: p\n  uid: \""+strings.ReplaceAll(uid, "\x00", "\\0")+"\"\n", 1)))
	}
	for _, image := range []string{"../../x", "a/../b:1", "..:1", "./x", "a//b", "UPPER/x", "x:tag with space", "x@sha256:short", "localhost:5000/x:1", "busybox"} {
		f.Add([]byte(withImage(fmt.Sprintf("%q", image))))
	}
	for _, id := range []string{"../x", "a/b", "A", "..", strings.Repeat("c", 64)} {
		q := fmt.Sprintf("%q", id)
		f.Add([]byte(strings.Replace(base, "  - name: c\n", "  - name: "+q+"\n", 1)))
		f.Add([]byte(base + "  volumes: [{name: " + q + "}]\n"))
		f.Add([]byte(strings.Replace(base, "name: p\n", "name: p\n  namespace: "+q+"\n", 1)))
	}
	for _, s := range []string{base, base + "  affinity: {}\n", "{}", "[]", "a: &a [*a]\n", "---\n---\n", base + "---\n" + base} {
		f.Add([]byte(s))
	}
	f.Add([]byte(podListYAML))
	for _, p := range []string{"a", "../x", "a/../../b", "/abs", "..data", "a/./b", "./", "a//b", "x\\y"} {
		f.Add([]byte(base + "  volumes: [{name: v, downwardAPI: {items: [{path: " + fmt.Sprintf("%q", p) + ", fieldRef: {fieldPath: metadata.name}}]}}]\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pods, err := ParseFile(data, Source{Path: "/m/f.yaml", NodeName: "n"})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		for _, pod := range pods {
			if errs := Validate(pod); len(errs) > 0 {
				t.Fatalf("accepted pod does not validate: %v", errs)
			}
			checkPathSafe(t, pod)
			before := pod.DeepCopy()
			SetDefaults(pod)
			for i := range pod.Spec.Containers {
				if ContainerHash(&pod.Spec.Containers[i]) != ContainerHash(&before.Spec.Containers[i]) {
					t.Fatalf("defaults not idempotent for container %d", i)
				}
			}
		}
	})
}

// Hostile inputs must fail fast, not exhaust memory or the stack.
func TestHostileInputs(t *testing.T) {
	laughs := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		laughs += n + ": &" + n + " [*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + "]\n"
		prev = n
	}
	cases := map[string]string{
		"billion laughs":    laughs,
		"deep yaml flow":    strings.Repeat("[", 200000) + strings.Repeat("]", 200000),
		"deep json":         `{"apiVersion":"v1","kind":"Pod","metadata":` + strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000) + "}",
		"deep block yaml":   deepBlock(1500),
		"many keys":         "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n" + manyLabels(100000),
		"binary":            "\x00\x01\x02\xff\xfe",
		"huge line":         "apiVersion: v1\nkind: Pod\nmetadata: {name: " + strings.Repeat("x", 5<<20) + "}\n",
		"nul in the middle": strings.Replace(base, "name: p", "name: p\x00", 1),
		"list of laughs":    "apiVersion: v1\nkind: PodList\n" + laughs + "items: [*i]\n",
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := ParseFile([]byte(input), Source{}) // Parse, after a look at the kind
			if err == nil {
				t.Fatalf("accepted")
			}
			if d := time.Since(start); d > 30*time.Second { // generous: a loaded CI machine is slow, a blow-up is far slower
				t.Errorf("took %v", d)
			}
			t.Logf("%v: %.200s", time.Since(start), err)
		})
	}
}

func deepBlock(depth int) string {
	var b strings.Builder
	for i := 0; i < depth; i++ {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	return b.String()
}

func manyLabels(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    k%d: v\n", i)
	}
	return b.String()
}

// checkPathSafe: every identifier of an accepted pod that agentd turns into a path
// (run-dir/pods/<uid>, log-dir/<ns>_<name>_<uid>/<container>, volumes/<name>, the
// cgroup pod-<uid>) is one local path component, and no path element of an image
// reference is empty, '.' or '..'.
func checkPathSafe(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	ids := []string{string(pod.UID), pod.Name, pod.Namespace, pod.Namespace + "_" + pod.Name + "_" + string(pod.UID)}
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		ids = append(ids, c.Name, string(pod.UID)+"_"+c.Name)
	}
	for _, v := range pod.Spec.Volumes {
		ids = append(ids, v.Name)
		var items []corev1.DownwardAPIVolumeFile
		if v.DownwardAPI != nil {
			items = v.DownwardAPI.Items
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.DownwardAPI != nil {
					items = append(items, src.DownwardAPI.Items...)
				}
			}
		}
		for _, it := range items {
			if p := filepath.Clean(it.Path); !filepath.IsLocal(p) || strings.HasPrefix(p, "..") || strings.ContainsRune(p, 0) {
				t.Fatalf("accepted downward API item path %q leads out of its volume", it.Path)
			}
		}
	}
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		named, _, _ := strings.Cut(c.Image, "@")
		for _, elem := range strings.Split(named, "/") {
			host, _, _ := strings.Cut(elem, ":")
			if host == "" || host == "." || host == ".." || strings.ContainsAny(elem, "\x00\\") {
				t.Fatalf("accepted image %q has the path element %q", c.Image, elem)
			}
		}
	}
	for _, id := range ids {
		if id == pod.Namespace && id == "" {
			continue // defaulted later by the agent
		}
		if !filepath.IsLocal(id) || filepath.Base(id) != id || id == "." || strings.ContainsAny(id, "/\x00") {
			t.Fatalf("accepted identifier %q is not one local path component", id)
		}
	}
}

// FuzzPathSafeUID: whatever IsPathSafeUID accepts is one local path component.
func FuzzPathSafeUID(f *testing.F) {
	for _, s := range []string{"", ".", "..", "../x", "a/b", "5f0c1b2e-7d1a-4c2b-9a8e-0e6f1d2c3b4a", "a..b", "-a", "a.", strings.Repeat("a", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uid string) {
		if len(IsPathSafeUID(uid)) > 0 {
			return
		}
		if !filepath.IsLocal(uid) || filepath.Base(uid) != uid || uid == "." || uid == ".." || len(uid) > MaxUIDLength || strings.ContainsAny(uid, "/\x00_") {
			t.Fatalf("IsPathSafeUID accepted %q", uid)
		}
	})
}

// FuzzImageReference: whatever IsImageReference accepts has no empty, '.' or '..'
// path element, no whitespace or control character, and parses as the image store
// parses it.
func FuzzImageReference(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a/b:1", "../../x", "a/../b:1", "..:1", "x@sha256:short", "[::1]:5/x", "sha256:0123ab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if len(IsImageReference(ref)) > 0 {
			return
		}
		if _, err := name.ParseReference(ref, name.WeakValidation); err != nil {
			t.Fatalf("IsImageReference accepted %q, which does not parse: %v", ref, err)
		}
		named, _, _ := strings.Cut(ref, "@")
		for _, elem := range strings.Split(named, "/") {
			host, _, _ := strings.Cut(elem, ":")
			if host == "" || host == "." || host == ".." || strings.ContainsAny(elem, " \t\r\n\x00\\") {
				t.Fatalf("IsImageReference accepted %q with the path element %q", ref, elem)
			}
		}
	})
}
