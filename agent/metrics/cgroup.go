package metrics

import (
	"bufio"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fscommon"
	"github.com/prometheus/procfs"

	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
)

// CgroupUsage is a cgroup's CPU and memory use, as cAdvisor reads it.
type CgroupUsage struct {
	// CPUNanos is the CPU time its processes used, in nanoseconds: cpuacct.usage
	// (v1), cpu.stat's usage_usec (v2).
	CPUNanos uint64
	// Memory is its memory use: memory.usage_in_bytes (v1), memory.current (v2).
	Memory uint64
	// WorkingSet is Memory less the inactive file cache (memory.stat's
	// total_inactive_file on v1, inactive_file on v2), never below 0: what the
	// kernel cannot reclaim easily, cAdvisor's container_memory_working_set_bytes
	// and what kubelet's evictions and `kubectl top` go by.
	WorkingSet uint64
	// RSS is anonymous memory: memory.stat's total_rss (v1), anon (v2).
	RSS uint64
}

// CgroupReader reads cgroups' usage from the hierarchies mounted at a root
// (/sys/fs/cgroup), cgroup v1 (each controller its own hierarchy; the hybrid
// layout's unified one holds no controller and is not read) or v2. It is safe
// for concurrent use.
type CgroupReader struct {
	root string
	once sync.Once
	v2   bool
	// detect says whether root is cgroup v2, once; nil: v2 is fixed.
	detect func() bool
}

// NewCgroupReader reads the hierarchies at root, v2 or v1 (tests: fixture trees).
func NewCgroupReader(root string, v2 bool) *CgroupReader {
	return &CgroupReader{root: root, v2: v2}
}

// HostCgroupReader reads the host's /sys/fs/cgroup; whether it is cgroup v2 is
// found at the first read, not at start.
func HostCgroupReader() *CgroupReader {
	return &CgroupReader{root: "/sys/fs/cgroup", detect: cgroups.IsCgroup2UnifiedMode}
}

func (r *CgroupReader) isV2() bool {
	r.once.Do(func() {
		if r.detect != nil {
			r.v2 = r.detect()
		}
	})
	return r.v2
}

// Read returns the usage of the cgroup at path (absolute, as in the container
// config: "/agent/burstable/pod-<uid>/app"). Files are opened with the cgroups
// library, beneath the cgroup file system without following symlinks.
func (r *CgroupReader) Read(path string) (CgroupUsage, error) {
	if err := cgroupkill.CheckPath(path); err != nil {
		return CgroupUsage{}, err
	}
	if r.isV2() {
		return r.readV2(filepath.Join(r.root, path))
	}
	return r.readV1(path)
}

func (r *CgroupReader) readV2(dir string) (CgroupUsage, error) {
	var u CgroupUsage
	usec, err := fscommon.GetValueByKey(dir, "cpu.stat", "usage_usec")
	if err != nil {
		return u, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	u.CPUNanos = usec * 1000
	if u.Memory, err = fscommon.GetCgroupParamUint(dir, "memory.current"); err != nil {
		return u, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	stat, err := memoryStat(dir)
	if err != nil {
		return u, err
	}
	u.RSS = stat["anon"]
	u.WorkingSet = workingSet(u.Memory, stat["inactive_file"])
	return u, nil
}

func (r *CgroupReader) readV1(path string) (CgroupUsage, error) {
	var u CgroupUsage
	// cpuacct is mounted alone or with cpu ("cpu,cpuacct", with cpuacct a link to it).
	var err error
	for _, h := range []string{"cpuacct", "cpu,cpuacct"} {
		if u.CPUNanos, err = fscommon.GetCgroupParamUint(filepath.Join(r.root, h, path), "cpuacct.usage"); err == nil {
			break
		}
	}
	if err != nil {
		return u, fmt.Errorf("cgroup %s: %w", path, err)
	}
	dir := filepath.Join(r.root, "memory", path)
	if u.Memory, err = fscommon.GetCgroupParamUint(dir, "memory.usage_in_bytes"); err != nil {
		return u, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	stat, err := memoryStat(dir)
	if err != nil {
		return u, err
	}
	u.RSS = stat["total_rss"]
	u.WorkingSet = workingSet(u.Memory, stat["total_inactive_file"])
	return u, nil
}

// workingSet is cAdvisor's: usage less inactive file pages, never negative.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

// memoryStat reads a cgroup's memory.stat (key value lines).
func memoryStat(dir string) (map[string]uint64, error) {
	data, err := cgroups.ReadFile(dir, "memory.stat")
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		k, v, err := fscommon.ParseKeyValue(sc.Text())
		if err != nil {
			continue // a field that is not a counter
		}
		out[k] = v
	}
	return out, nil
}

// NodeUsage is the node's CPU and memory use, kubelet's node_* resource metrics.
type NodeUsage struct {
	CPUSeconds float64 // CPU time not idle since boot: /proc/stat's user, nice, system, irq, softirq, steal
	WorkingSet uint64  // MemTotal − MemFree − Inactive(file) of /proc/meminfo
}

// NodeReader reads the node's usage from a proc file system. kubelet reads its
// root cgroup's; /proc gives the same figures on v1 and v2 alike, where the v2
// root cgroup has no memory.current (runc computes the root's memory from
// /proc/meminfo the same way).
type NodeReader struct{ fs procfs.FS }

// NewNodeReader reads the proc file system mounted at mount ("/proc").
func NewNodeReader(mount string) (*NodeReader, error) {
	fs, err := procfs.NewFS(mount)
	if err != nil {
		return nil, err
	}
	return &NodeReader{fs: fs}, nil
}

// Read returns the node's usage now.
func (n *NodeReader) Read() (NodeUsage, error) {
	var u NodeUsage
	st, err := n.fs.Stat()
	if err != nil {
		return u, fmt.Errorf("node CPU: %w", err)
	}
	c := st.CPUTotal
	u.CPUSeconds = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
	mi, err := n.fs.Meminfo()
	if err != nil {
		return u, fmt.Errorf("node memory: %w", err)
	}
	if mi.MemTotalBytes == nil || mi.MemFreeBytes == nil {
		return u, fmt.Errorf("node memory: meminfo has no MemTotal or MemFree")
	}
	used := *mi.MemTotalBytes - min(*mi.MemFreeBytes, *mi.MemTotalBytes)
	var inactive uint64
	if mi.InactiveFileBytes != nil {
		inactive = *mi.InactiveFileBytes
	}
	u.WorkingSet = workingSet(used, inactive)
	return u, nil
}
