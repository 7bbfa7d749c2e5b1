package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	for _, s := range []string{base, base + "  affinity: {}\n", "{}", "[]", "a: &a [*a]\n", "---\n---\n", base + "---\n" + base} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pod, err := Parse(data, Source{Path: "/m/f.yaml", NodeName: "n"})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if errs := Validate(pod); len(errs) > 0 {
			t.Fatalf("accepted pod does not validate: %v", errs)
		}
		before := pod.DeepCopy()
		SetDefaults(pod)
		for i := range pod.Spec.Containers {
			if ContainerHash(&pod.Spec.Containers[i]) != ContainerHash(&before.Spec.Containers[i]) {
				t.Fatalf("defaults not idempotent for container %d", i)
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
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse([]byte(input), Source{})
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
