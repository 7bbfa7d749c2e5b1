package version

import (
	"os"
	"regexp"
	"testing"
)

// Kubernetes follows the k8s.io/api module in go.mod: bumping one without the
// other fails here.
func TestKubernetesFollowsGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/api v0\.(\d+)\.`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod requires no k8s.io/api")
	}
	if want := "1." + string(m[1]); Kubernetes != want {
		t.Errorf("version.Kubernetes = %q, but go.mod has k8s.io/api v0.%s: want %q", Kubernetes, m[1], want)
	}
}
