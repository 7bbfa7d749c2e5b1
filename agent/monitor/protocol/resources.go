package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Resources is an update of a container's cgroup limits (OpUpdate): a nil
// field leaves that limit as it is, as the CRI's UpdateContainerResources
// leaves the limits it gives as 0 (containerd and CRI-O do the same). A limit
// cannot be taken away by an update, only changed.
type Resources struct {
	MemoryLimit *int64  `json:"memoryLimit,omitempty"` // bytes
	CPUShares   *uint64 `json:"cpuShares,omitempty"`
	CPUQuota    *int64  `json:"cpuQuota,omitempty"`  // µs per period
	CPUPeriod   *uint64 `json:"cpuPeriod,omitempty"` // µs
	CpusetCpus  *string `json:"cpusetCpus,omitempty"`
	CpusetMems  *string `json:"cpusetMems,omitempty"`
}

// Bounds of the limits an update may set: what the kernel accepts at all
// (cgroup v1's cpu.shares, CFS's period and quota), and a memory limit of at
// least a page. Whether a limit fits the machine and the container (a memory
// limit below its usage, a CPU the host lacks) is the kernel's to say.
const (
	MinMemoryLimit = 4096
	MaxMemoryLimit = 1 << 62
	MinCPUShares   = 2
	MaxCPUShares   = 262144
	MinCPUPeriod   = 1000    // 1 ms
	MaxCPUPeriod   = 1000000 // 1 s
	MinCPUQuota    = 1000
	MaxCPUQuota    = 1<<44 - 1
	// maxCPUID bounds the numbers of a cpuset list (the kernel's NR_CPUS is at most 8192).
	maxCPUID = 8192
)

// ErrBadResources is wrapped by Resources.Check's errors.
var ErrBadResources = errors.New("invalid resources")

// Check proves that every limit r sets lies within the bounds above, and that
// a cpuset is a list as the kernel writes one ("0-3,6"). It names each bad one.
func (r *Resources) Check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrBadResources}, args...)...))
	}
	if v := r.MemoryLimit; v != nil && (*v < MinMemoryLimit || *v > MaxMemoryLimit) {
		bad("memory limit %d bytes is not between %d and %d", *v, MinMemoryLimit, int64(MaxMemoryLimit))
	}
	if v := r.CPUShares; v != nil && (*v < MinCPUShares || *v > MaxCPUShares) {
		bad("cpu shares %d is not between %d and %d", *v, MinCPUShares, MaxCPUShares)
	}
	if v := r.CPUPeriod; v != nil && (*v < MinCPUPeriod || *v > MaxCPUPeriod) {
		bad("cpu period %dµs is not between %dµs and %dµs", *v, MinCPUPeriod, MaxCPUPeriod)
	}
	if v := r.CPUQuota; v != nil && (*v < MinCPUQuota || *v > MaxCPUQuota) {
		bad("cpu quota %dµs is not between %dµs and %dµs", *v, MinCPUQuota, int64(MaxCPUQuota))
	}
	for _, c := range []struct {
		what string
		v    *string
	}{{"cpuset cpus", r.CpusetCpus}, {"cpuset mems", r.CpusetMems}} {
		if c.v != nil {
			if err := checkCPUList(*c.v); err != nil {
				bad("%s %q: %v", c.what, *c.v, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkCPUList proves that s is a non-empty list of numbers and ranges, as in
// cpuset.cpus: "0-3,6".
func checkCPUList(s string) error {
	if s == "" {
		return errors.New("empty list")
	}
	for _, item := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil || a >= maxCPUID {
			return fmt.Errorf("%q is not a number below %d", lo, maxCPUID)
		}
		if !isRange {
			continue
		}
		b, err := strconv.ParseUint(hi, 10, 16)
		if err != nil || b >= maxCPUID {
			return fmt.Errorf("%q is not a number below %d", hi, maxCPUID)
		}
		if b < a {
			return fmt.Errorf("range %q goes backwards", item)
		}
	}
	return nil
}

// Empty reports whether r changes nothing.
func (r *Resources) Empty() bool {
	return r.MemoryLimit == nil && r.CPUShares == nil && r.CPUQuota == nil && r.CPUPeriod == nil &&
		r.CpusetCpus == nil && r.CpusetMems == nil
}

// Apply returns c with r's limits in place of its own.
func (r *Resources) Apply(c Cgroup) Cgroup {
	if r.MemoryLimit != nil {
		c.MemoryLimit = *r.MemoryLimit
	}
	if r.CPUShares != nil {
		c.CPUShares = *r.CPUShares
	}
	if r.CPUQuota != nil {
		c.CPUQuota = *r.CPUQuota
	}
	if r.CPUPeriod != nil {
		c.CPUPeriod = *r.CPUPeriod
	}
	if r.CpusetCpus != nil {
		c.CpusetCpus = *r.CpusetCpus
	}
	if r.CpusetMems != nil {
		c.CpusetMems = *r.CpusetMems
	}
	return c
}
