package metrics

import (
	"os"
	"testing"

	"github.com/opencontainers/cgroups"
)

func TestMain(m *testing.M) {
	// The fixtures are plain files, not a cgroup file system.
	cgroups.TestMode = true
	os.Exit(m.Run())
}

func TestCgroupReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *CgroupReader
		path string
		want CgroupUsage
	}{
		// working set = usage_in_bytes − total_inactive_file; rss = total_rss.
		{"v1", NewCgroupReader("testdata/v1", false), "/agent/burstable/pod-u1/app",
			CgroupUsage{CPUNanos: 2_500_000_000, Memory: 52428800, WorkingSet: 52428800 - 10485760, RSS: 12582912}},
		// cpuacct mounted with cpu; more inactive file pages than usage: 0, not a wrapped-around number.
		{"v1 cpu,cpuacct", NewCgroupReader("testdata/v1", false), "/agent/pod-u2/web",
			CgroupUsage{CPUNanos: 1_000_000, Memory: 4096, WorkingSet: 0, RSS: 4096}},
		// cpu.stat usage_usec; working set = memory.current − inactive_file; rss = anon.
		{"v2", NewCgroupReader("testdata/v2", true), "/agent/burstable/pod-u1/app",
			CgroupUsage{CPUNanos: 1_500_000_000, Memory: 41943040, WorkingSet: 41943040 - 6291456, RSS: 16777216}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.Read(tc.path)
			if err != nil {
				t.Fatalf("Read(%s): %v", tc.path, err)
			}
			if got != tc.want {
				t.Errorf("Read(%s) = %+v, want %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestCgroupReaderRefusesPaths(t *testing.T) {
	r := NewCgroupReader("testdata/v2", true)
	for _, p := range []string{"agent/x", "/agent/../../etc", "/", ""} {
		if _, err := r.Read(p); err == nil {
			t.Errorf("Read(%q) succeeded, want an error", p)
		}
	}
	if _, err := r.Read("/agent/burstable/pod-gone/app"); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("Read of a missing cgroup: %v, want a not-exist error", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestNodeReader(t *testing.T) {
	n, err := NewNodeReader("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.Read()
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq+steal = 1560 ticks of 1/100 s; idle and iowait do not count.
	if got.CPUSeconds < 15.59 || got.CPUSeconds > 15.61 {
		t.Errorf("CPUSeconds = %v, want 15.6", got.CPUSeconds)
	}
	// MemTotal − MemFree − Inactive(file).
	if want := uint64(8000000-2000000-1000000) * 1024; got.WorkingSet != want {
		t.Errorf("WorkingSet = %d, want %d", got.WorkingSet, want)
	}
}
