package runtime

import (
	"testing"

	"github.com/opencontainers/cgroups"
)

// On cgroup v2 a pod's and a QoS tier's cpu.shares reach the kernel as
// cpu.weight by runc's conversion; on v1 they stay shares.
func TestWithCPUWeight(t *testing.T) {
	for _, tc := range []struct {
		shares, weight uint64
	}{
		{2, 1},          // BestEffort, the besteffort tier, a container without a request
		{256, 35},       // 250m
		{512, 59},       // 500m
		{1024, 100},     // 1 CPU: the kernel's default weight
		{2048, 174},     // 2 CPUs
		{262144, 10000}, // kubelet's maximum: v2's
	} {
		in := &cgroups.Resources{SkipDevices: true, CpuShares: tc.shares}
		got := withCPUWeight(in, true)
		if got.CpuWeight != tc.weight || got.CpuShares != tc.shares || !got.SkipDevices {
			t.Errorf("v2, %d shares: weight %d (shares %d), want weight %d", tc.shares, got.CpuWeight, got.CpuShares, tc.weight)
		}
		if in.CpuWeight != 0 {
			t.Errorf("v2, %d shares: the caller's Resources were changed", tc.shares)
		}
		if v1 := withCPUWeight(in, false); v1.CpuWeight != 0 || v1.CpuShares != tc.shares {
			t.Errorf("v1, %d shares: weight %d, shares %d; want no weight", tc.shares, v1.CpuWeight, v1.CpuShares)
		}
	}
	if got := withCPUWeight(&cgroups.Resources{}, true); got.CpuWeight != 0 {
		t.Errorf("no shares: weight %d, want none (unset)", got.CpuWeight)
	}
	if got := withCPUWeight(&cgroups.Resources{CpuShares: 1024, CpuWeight: 7}, true); got.CpuWeight != 7 {
		t.Errorf("a weight already set became %d", got.CpuWeight)
	}
}

// PodResources' shares become the pod cgroup's weight on v2: kubelet's requests,
// then runc's conversion.
func TestPodResourcesWeightOnV2(t *testing.T) {
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: busybox
    resources:
      limits: {cpu: 500m, memory: 64Mi}
`)
	res := withCPUWeight(PodResources(pod), true)
	if res.CpuShares != 512 || res.CpuWeight != 59 || res.CpuQuota != 50000 || res.CpuPeriod != 100000 || res.Memory != 64<<20 {
		t.Errorf("got shares %d weight %d quota %d/%d memory %d; want 512, 59, 50000/100000, %d",
			res.CpuShares, res.CpuWeight, res.CpuQuota, res.CpuPeriod, res.Memory, 64<<20)
	}
}
