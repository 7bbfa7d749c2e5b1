package protocol

import (
	"errors"
	"testing"
)

func TestResourcesApply(t *testing.T) {
	base := Cgroup{Path: "/agent/p/c", MonitorPath: "/agent/monitors/c", MemoryLimit: 64 << 20, CPUShares: 2, CPUQuota: 50000, CPUPeriod: 100000, PidsLimit: 100, CpusetCpus: "0"}
	mem, shares, quota, period, cpus, mems := int64(128<<20), uint64(512), int64(20000), uint64(50000), "1-2", "0"
	for _, tc := range []struct {
		name string
		r    Resources
		want Cgroup
	}{
		{"nothing", Resources{}, base},
		{"memory", Resources{MemoryLimit: &mem}, func() Cgroup { c := base; c.MemoryLimit = mem; return c }()},
		{"cpu", Resources{CPUShares: &shares, CPUQuota: &quota, CPUPeriod: &period},
			func() Cgroup { c := base; c.CPUShares, c.CPUQuota, c.CPUPeriod = shares, quota, period; return c }()},
		{"cpuset", Resources{CpusetCpus: &cpus, CpusetMems: &mems}, func() Cgroup { c := base; c.CpusetCpus, c.CpusetMems = cpus, mems; return c }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Apply(base); got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			if tc.r.Empty() != (tc.name == "nothing") {
				t.Errorf("Empty = %v", tc.r.Empty())
			}
		})
	}
}

func TestResourcesCheck(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	str := func(v string) *string { return &v }
	for _, tc := range []struct {
		name string
		r    Resources
		ok   bool
	}{
		{"empty", Resources{}, true},
		{"sane", Resources{MemoryLimit: i64(64 << 20), CPUShares: u64(1024), CPUQuota: i64(150000), CPUPeriod: u64(100000), CpusetCpus: str("0-3,6"), CpusetMems: str("0")}, true},
		{"bounds", Resources{MemoryLimit: i64(MinMemoryLimit), CPUShares: u64(MaxCPUShares), CPUQuota: i64(MinCPUQuota), CPUPeriod: u64(MaxCPUPeriod)}, true},
		{"negative memory", Resources{MemoryLimit: i64(-1)}, false},
		{"memory below a page", Resources{MemoryLimit: i64(4095)}, false},
		{"shares 0", Resources{CPUShares: u64(0)}, false},
		{"quota negative", Resources{CPUQuota: i64(-1)}, false},
		{"period above a second", Resources{CPUPeriod: u64(MaxCPUPeriod + 1)}, false},
		{"empty cpuset", Resources{CpusetCpus: str("")}, false},
		{"cpuset with a space", Resources{CpusetCpus: str("0, 1")}, false},
		{"cpuset out of range", Resources{CpusetMems: str("9000")}, false},
		{"cpuset backwards", Resources{CpusetCpus: str("4-2")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Check()
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrBadResources) {
				t.Errorf("Check = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
