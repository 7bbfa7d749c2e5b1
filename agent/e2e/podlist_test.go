package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EPodList: a manifest file holding a v1 PodList runs each item as a pod
// of its own, as kubelet's file source does; removing the file removes both.
func TestE2EPodList(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("list.yaml", `apiVersion: v1
kind: PodList
items:
- metadata: {name: first}
  spec:
    terminationGracePeriodSeconds: 2
    containers:
    - {name: main, image: "localhost/busybox:latest", imagePullPolicy: Never, command: ["sh", "-c", "echo I am first; exec sleep 3600"]}
- apiVersion: v1
  kind: Pod
  metadata: {name: second}
  spec:
    terminationGracePeriodSeconds: 2
    containers:
    - {name: main, image: "localhost/busybox:latest", imagePullPolicy: Never, command: ["sh", "-c", "echo I am second; exec sleep 3600"]}
`)
	a.waitStatus("first", "Running", 60*time.Second)
	a.waitStatus("second", "Running", 60*time.Second)
	a.eventually(30*time.Second, "both pods' output", func() (bool, string) {
		f, _ := a.try("logs", "first")
		s, _ := a.try("logs", "second")
		return strings.Contains(f, "I am first") && strings.Contains(s, "I am second"), f + s
	})
	p1, p2 := a.pod("first"), a.pod("second")
	if p1 == nil || p2 == nil || p1.UID == p2.UID {
		t.Fatalf("pods: %+v %+v", p1, p2)
	}
	// Neither asks for CPU: kubelet's minimum weight, not the kernel's default.
	if got := cpuWeight(t, filepath.Join(a.podCgroup(p1), "main")); got != "shares 2" && got != "weight 1" {
		t.Errorf("a container without a CPU request has %s, want cpu.shares 2 (cpu.weight 1 on cgroup v2)", got)
	}
	_ = os.Remove(filepath.Join(a.manifest, "list.yaml"))
	a.waitGone("first", 30*time.Second)
	a.waitGone("second", 30*time.Second)
}

// cpuWeight reads a cgroup's cpu.shares (cgroup v1) or cpu.weight (v2).
func cpuWeight(t *testing.T, cgroup string) string {
	t.Helper()
	for _, f := range []struct{ kind, path string }{
		{"shares", filepath.Join("/sys/fs/cgroup/cpu", cgroup, "cpu.shares")},
		{"shares", filepath.Join("/sys/fs/cgroup/cpu,cpuacct", cgroup, "cpu.shares")},
		{"weight", filepath.Join("/sys/fs/cgroup", cgroup, "cpu.weight")},
	} {
		if b, err := os.ReadFile(f.path); err == nil {
			return f.kind + " " + strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no cpu.shares or cpu.weight for cgroup %s", cgroup)
	return ""
}
