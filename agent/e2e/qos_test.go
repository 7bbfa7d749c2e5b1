package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
)

// TestE2EQOSCgroups: pods run in kubelet's QoS tiers under the cgroup parent
// (Guaranteed directly, Burstable in burstable/, BestEffort in besteffort/),
// each pod's cgroup has kubelet's pod-level limits, and the tiers' cpu.shares
// follow the pods: 2 for besteffort, the Burstable pods' CPU requests for
// burstable, updated when a pod goes.
func TestE2EQOSCgroups(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	pod := func(name, resources string) string {
		return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - {name: main, image: "localhost/busybox:latest", imagePullPolicy: Never, command: ["sleep", "3600"], resources: ` + resources + `}
  - {name: side, image: "localhost/busybox:latest", imagePullPolicy: Never, command: ["sleep", "3600"], resources: ` + resources + `}
`
	}
	a.write("guaranteed.yaml", pod("guaranteed", "{limits: {cpu: 500m, memory: 32Mi}}"))
	a.write("burstable.yaml", pod("burstable", "{requests: {cpu: 150m}}"))
	a.write("burstable2.yaml", pod("burstable2", "{requests: {cpu: 100m, memory: 8Mi}, limits: {memory: 16Mi}}"))
	a.write("besteffort.yaml", pod("besteffort", "{}"))
	for _, name := range []string{"guaranteed", "burstable", "burstable2", "besteffort"} {
		a.waitStatus(name, "Running", 60*time.Second)
	}

	tiers := map[string]string{"guaranteed": "", "burstable": "burstable", "burstable2": "burstable", "besteffort": "besteffort"}
	for name, tier := range tiers {
		p := a.pod(name)
		want := filepath.Join(a.cgroupPrefix, tier, "pod-"+string(p.UID))
		if got := a.podCgroup(p); got != want {
			t.Errorf("%s: QoS class %s, cgroup %s, want %s", name, p.Status.QOSClass, got, want)
		}
		for _, c := range []string{"main", "side"} {
			if procs := readCgroup(t, filepath.Join(want, c), "pids", "cgroup.procs", "cgroup.procs"); procs == "" {
				t.Errorf("%s/%s: no process in %s/%s", name, c, want, c)
			}
		}
	}

	// Pod-level resources, kubelet's ResourceConfigForPod: the sum of the requests
	// as cpu.shares (2 when BestEffort); the sum of the limits when every
	// container sets one.
	g, b2, be := a.podCgroup(a.pod("guaranteed")), a.podCgroup(a.pod("burstable2")), a.podCgroup(a.pod("besteffort"))
	for _, c := range []struct {
		what, got, want string
	}{
		{"guaranteed pod cpu", cpuWeight(t, g), "shares 1024"},
		{"guaranteed pod quota", readCgroup(t, g, "cpu", "cpu.cfs_quota_us", "cpu.max"), "100000"},
		{"guaranteed pod memory", readCgroup(t, g, "memory", "memory.limit_in_bytes", "memory.max"), "67108864"},
		{"burstable pod cpu", cpuWeight(t, b2), "shares 204"},
		{"burstable pod memory (all limited)", readCgroup(t, b2, "memory", "memory.limit_in_bytes", "memory.max"), "33554432"},
		{"besteffort pod cpu", cpuWeight(t, be), "shares 2"},
		{"besteffort tier", cpuWeight(t, filepath.Join(a.cgroupPrefix, "besteffort")), "shares 2"},
		{"burstable tier", cpuWeight(t, filepath.Join(a.cgroupPrefix, "burstable")), "shares 512"},
	} {
		got, want := c.got, c.want
		if strings.HasPrefix(got, "weight ") {
			want = asWeight(want) // cgroup v2
		}
		if f := strings.Fields(got); len(f) == 2 && !strings.HasPrefix(got, "shares") && !strings.HasPrefix(got, "weight") {
			got = f[0] // cpu.max: "<quota> <period>"
		}
		if got != want {
			t.Errorf("%s: %s, want %s", c.what, got, want)
		}
	}

	// The burstable tier follows its pods.
	gone := a.pod("burstable")
	_ = os.Remove(filepath.Join(a.manifest, "burstable.yaml"))
	a.waitGone("burstable", 30*time.Second)
	a.eventually(30*time.Second, "the burstable tier's shares to drop to burstable2's 200m", func() (bool, string) {
		got := cpuWeight(t, filepath.Join(a.cgroupPrefix, "burstable"))
		return got == "shares 204" || got == asWeight("shares 204"), got
	})
	a.eventually(30*time.Second, "the removed pod's cgroup to go", func() (bool, string) {
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", a.podCgroup(gone)))
		return os.IsNotExist(err), fmt.Sprint(err)
	})
}

// asWeight turns "shares N" into the cpu.weight cgroup v2 must show for it
// ("weight W", runc's conversion: agentd converts a pod's and a tier's shares
// itself, libcontainer's v2 manager does not); anything else is returned as is.
func asWeight(want string) string {
	n, err := strconv.ParseUint(strings.TrimPrefix(want, "shares "), 10, 64)
	if !strings.HasPrefix(want, "shares ") || err != nil {
		return want
	}
	return fmt.Sprintf("weight %d", cgroups.ConvertCPUSharesToCgroupV2Value(n))
}

// readCgroup reads a file of a cgroup: v1's in the controller's hierarchy,
// else v2's in the unified one.
func readCgroup(t *testing.T, cgroup, controller, v1, v2 string) string {
	t.Helper()
	for _, path := range []string{
		filepath.Join("/sys/fs/cgroup", controller, cgroup, v1),
		filepath.Join("/sys/fs/cgroup", controller+",cpuacct", cgroup, v1),
		filepath.Join("/sys/fs/cgroup", cgroup, v2),
	} {
		if b, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no %s or %s for cgroup %s", v1, v2, cgroup)
	return ""
}
