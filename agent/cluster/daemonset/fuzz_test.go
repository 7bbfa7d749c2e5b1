package daemonset

import (
	"strings"
	"testing"

	"github.com/agentd-project/agentd/spec"
)

// FuzzDecode: Decode never panics, and whatever it accepts PodFor turns into a pod the
// spec package accepts, on any node, with a stable template hash, and which a node's
// Validate accepts as the store gives it back.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"node-logger.yaml", "minimal.json"} {
		b, err := readFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(withSpec("  updateStrategy: {type: OnDelete}\n")))
	f.Add([]byte(withPodSpec("      nodeSelector: {zone: a}\n      hostNetwork: true\n")))
	f.Add([]byte(strings.Replace(base, "name: ds", "name: ../x", 1)))
	f.Add([]byte(strings.Replace(base, "image: localhost/busybox", "image: ../x", 1)))
	f.Add([]byte(withPodSpec("      volumes: [{name: ../x, emptyDir: {}}]\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := Decode(data)
		if err != nil {
			return
		}
		for _, node := range []string{"n1", "worker-1.example.com"} {
			pod, err := PodFor(ds, node)
			if err != nil {
				t.Fatalf("PodFor of an accepted DaemonSet: %v\n%s", err, data)
			}
			if errs := spec.Validate(pod); len(errs) > 0 {
				t.Fatalf("spec.Validate(PodFor) = %v\n%s", errs, data)
			}
		}
		again, err := Decode(mustMarshal(t, ds))
		if err != nil {
			t.Fatalf("Decode of what Decode returned: %v\n%s", err, data)
		}
		if TemplateHash(again) != TemplateHash(ds) {
			t.Fatalf("re-decoding changed the template hash\n%s", data)
		}
		if errs := Validate(ds); len(errs) > 0 {
			t.Fatalf("a node would refuse what Decode accepted: %v\n%s", errs, data)
		}
		if _, err := MaxUnavailable(ds, 7); err != nil {
			t.Fatalf("MaxUnavailable of an accepted DaemonSet: %v", err)
		}
	})
}
