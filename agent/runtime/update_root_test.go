package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// cgroupLimits reads a container cgroup's memory limit, CPU quota and period,
// and CPU weight as the kernel has them: from cgroup v1's memory and cpu
// controllers, or from cgroup v2's files (memory.max, cpu.max, cpu.weight) on
// a unified host. Shares are v1's; v2 has them as a weight.
type cgroupLimits struct {
	memory, quota, period int64
	shares                int64 // v1 cpu.shares, or v2 cpu.weight
}

func cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

func readCgroupLimits(t *testing.T, path string) cgroupLimits {
	t.Helper()
	read := func(file string) string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	num := func(s string) int64 {
		t.Helper()
		if s == "max" {
			return -1
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("cgroup value %q: %v", s, err)
		}
		return n
	}
	var l cgroupLimits
	if cgroupV2() {
		dir := filepath.Join("/sys/fs/cgroup", path)
		l.memory = num(read(filepath.Join(dir, "memory.max")))
		f := strings.Fields(read(filepath.Join(dir, "cpu.max")))
		l.quota, l.period = num(f[0]), num(f[1])
		l.shares = num(read(filepath.Join(dir, "cpu.weight")))
		return l
	}
	l.memory = num(read(filepath.Join("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes")))
	l.quota = num(read(filepath.Join("/sys/fs/cgroup/cpu", path, "cpu.cfs_quota_us")))
	l.period = num(read(filepath.Join("/sys/fs/cgroup/cpu", path, "cpu.cfs_period_us")))
	l.shares = num(read(filepath.Join("/sys/fs/cgroup/cpu", path, "cpu.shares")))
	return l
}

// wantShares is what the kernel shows for shares: v1's value, or on v2 the
// weight runc's conversion gives (the one the monitor uses, at the start as on
// an update; no shares: the kernel's default weight, 100).
func wantShares(shares uint64) int64 {
	if !cgroupV2() {
		return int64(shares)
	}
	if shares == 0 {
		return 100
	}
	return int64(cgroups.ConvertCPUSharesToCgroupV2Value(shares))
}

// TestRootUpdateResources updates a running container's memory and CPU limits:
// the kernel has them at once, the monitor's config keeps them, and the next
// run its restart policy starts gets them too; between runs (BackOff) an
// update goes to the config alone and the next run starts with it; a finished
// container refuses.
func TestRootUpdateResources(t *testing.T) {
	h := newHarness(t)
	// The pod's cgroup carries the pod's limits (1.5 CPUs): a container's quota
	// cannot exceed it, which the kernel says below.
	pod := h.pod(podYAML("update", "Always", "echo up; exec sleep 3600",
		"    resources: {limits: {memory: 128Mi, cpu: 1500m}, requests: {memory: 128Mi, cpu: 1500m}}"))
	cfg, _ := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")
	before := readCgroupLimits(t, cfg.Cgroup.Path)
	if before.memory != 128<<20 || before.quota != 150000 || before.period != 100000 {
		t.Fatalf("limits at the start: %+v, want 128Mi and 150000/100000", before)
	}

	mem, quota, period, shares := int64(96<<20), int64(50000), uint64(100000), uint64(512)
	now, err := h.rt.Update(context.Background(), cfg.ID, &protocol.Resources{MemoryLimit: &mem, CPUQuota: &quota, CPUPeriod: &period, CPUShares: &shares})
	if err != nil {
		t.Fatal(err)
	}
	if now.MemoryLimit != mem || now.CPUQuota != quota || now.CPUPeriod != period || now.CPUShares != shares || now.Path != cfg.Cgroup.Path {
		t.Errorf("Update says the limits in force are %+v", now)
	}
	want := cgroupLimits{memory: mem, quota: quota, period: int64(period), shares: wantShares(shares)}
	if got := readCgroupLimits(t, cfg.Cgroup.Path); got != want {
		t.Errorf("cgroup after the update: %+v, want %+v", got, want)
	}
	saved, err := protocol.ReadConfig(h.rt.stateDir(cfg.ID))
	if err != nil {
		t.Fatal(err)
	}
	if saved.Cgroup != *now {
		t.Errorf("monitor's config keeps %+v, want %+v", saved.Cgroup, *now)
	}
	j, err := h.rt.Status(context.Background(), cfg.ID)
	if err != nil || j.RestartCount != 0 || j.State != protocol.StateRunning {
		t.Errorf("the container after its update: %+v %v; want the same run going", j, err)
	}

	// The restart policy's next run: same cgroup, new limits.
	if _, err := h.rt.Kill(context.Background(), cfg.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	h.wait(cfg.ID, 30*time.Second, "the next run", func(j *protocol.Journal) bool {
		return j.RestartCount == 1 && j.State == protocol.StateRunning
	})
	if got := readCgroupLimits(t, cfg.Cgroup.Path); got != want {
		t.Errorf("cgroup of the restarted run: %+v, want %+v", got, want)
	}

	// A limit the kernel refuses is the kernel's error, and changes nothing: a
	// quota above the pod's (on v1; v2's kernel takes it, and the pod's own
	// cpu.max still caps the pod), a CPU the host lacks.
	over := int64(200000)
	overNow, err := h.rt.Update(context.Background(), cfg.ID, &protocol.Resources{CPUQuota: &over})
	switch {
	case cgroupV2() && err != nil:
		t.Errorf("Update to a quota above the pod's on cgroup v2: %v, want it taken", err)
	case cgroupV2():
		now, want.quota = overNow, over
		if podMax := readCgroupLimits(t, filepath.Dir(cfg.Cgroup.Path)); podMax.quota != 150000 {
			t.Errorf("the pod's quota after its container's went above it: %d, want 150000", podMax.quota)
		}
	case !errors.Is(err, protocol.ErrInvalid):
		t.Errorf("Update to a quota above the pod's: %v, want the kernel's refusal (ErrInvalid)", err)
	default:
		t.Logf("Update to a quota above the pod's: %v", err)
	}
	if got := readCgroupLimits(t, cfg.Cgroup.Path); got != want {
		t.Errorf("cgroup after a refused update: %+v, want %+v", got, want)
	}
	badCPU := "4095"
	if _, err := h.rt.Update(context.Background(), cfg.ID, &protocol.Resources{CpusetCpus: &badCPU}); err == nil {
		t.Errorf("Update to CPU %s, which this host lacks: no error", badCPU)
	} else {
		t.Logf("Update to CPU %s: %v", badCPU, err)
	}
	if saved, err := protocol.ReadConfig(h.rt.stateDir(cfg.ID)); err != nil || saved.Cgroup != *now {
		t.Errorf("config after a refused update: %+v %v", saved, err)
	}

	// Finished for good: refused.
	if _, err := h.rt.Stop(context.Background(), cfg.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.Update(context.Background(), cfg.ID, &protocol.Resources{MemoryLimit: &mem}); err == nil {
		t.Error("Update of a stopped container: no error")
	}
}

// TestRootUpdateInBackOff: an update while the container waits to restart goes
// into the config, and the run that follows starts with it.
func TestRootUpdateInBackOff(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.BackoffBase, h.rt.cfg.BackoffMax = 3*time.Second, 3*time.Second
	// Runs 0 and 1 fail (the first restart comes at once, the second after the
	// back-off); run 2 stays up. The count lives in a directory of the test's.
	state := t.TempDir()
	pod := h.pod(podYAML("updatebackoff", "Always", "n=$(cat /state/n 2>/dev/null || echo 0); echo $((n+1)) > /state/n; [ $n -ge 2 ] && exec sleep 3600; exit 1",
		"    resources: {limits: {memory: 64Mi}}"))
	cfg := h.startWith(pod, func(c *protocol.ContainerConfig) {
		c.Mounts = append(c.Mounts, protocol.Mount{Source: state, Destination: "/state", Type: "bind"})
	})
	h.wait(cfg.ID, 30*time.Second, "a back-off", func(j *protocol.Journal) bool { return j.State == protocol.StateBackOff && j.RestartCount >= 1 })
	mem := int64(96 << 20)
	now, err := h.rt.Update(context.Background(), cfg.ID, &protocol.Resources{MemoryLimit: &mem})
	if err != nil {
		t.Fatal(err)
	}
	if now.MemoryLimit != mem {
		t.Errorf("Update in BackOff says %+v", now)
	}
	j := h.wait(cfg.ID, 30*time.Second, "the run after the back-off", func(j *protocol.Journal) bool {
		return j.State == protocol.StateRunning && j.RestartCount == 2
	})
	if got := readCgroupLimits(t, cfg.Cgroup.Path).memory; got != mem {
		t.Errorf("run %d started with memory limit %d, want %d", j.RestartCount, got, mem)
	}
}
