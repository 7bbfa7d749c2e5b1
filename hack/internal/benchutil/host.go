package benchutil

import (
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPUStat is the machine's CPU time from the aggregate "cpu" line of
// /proc/stat, in clock ticks summed over all CPUs.
type CPUStat struct {
	User   int64 // user + nice
	Sys    int64 // system + irq + softirq
	Idle   int64
	IOWait int64
	Total  int64 // the above and steal; guest and guest_nice are in user and nice already
}

// ReadCPUStat reads /proc/stat; all zero when it cannot.
func ReadCPUStat() CPUStat {
	var c CPUStat
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return c
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest, guest_nice
			break
		}
		n, _ := strconv.ParseInt(s, 10, 64)
		c.Total += n
		switch i {
		case 0, 1: // user, nice
			c.User += n
		case 2, 5, 6: // system, irq, softirq
			c.Sys += n
		case 3:
			c.Idle += n
		case 4:
			c.IOWait += n
		}
	}
	return c
}

// Busy is the time spent on anything but idle and iowait.
func (c CPUStat) Busy() int64 { return c.Total - c.Idle - c.IOWait }

// BusySince is the percentage of the CPU time since o that was busy.
func (c CPUStat) BusySince(o CPUStat) float64 {
	d := c.Total - o.Total
	if d <= 0 {
		return 0
	}
	return 100 * float64(c.Busy()-o.Busy()) / float64(d)
}

// SplitSince formats how the CPU time since o was spent.
func (c CPUStat) SplitSince(o CPUStat) string {
	d := float64(max(c.Total-o.Total, 1))
	return fmt.Sprintf("user %.0f%% sys %.0f%% idle %.0f%% iowait %.0f%%", 100*float64(c.User-o.User)/d,
		100*float64(c.Sys-o.Sys)/d, 100*float64(c.Idle-o.Idle)/d, 100*float64(c.IOWait-o.IOWait)/d)
}

// LoadAvg is the 1, 5 and 15 minute load averages as /proc/loadavg shows them,
// "?" when unreadable.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Load1 is the 1 minute load average, 0 when unreadable.
func Load1() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Machine describes the machine a benchmark runs on.
type Machine struct {
	NProc        int
	Kernel, Arch string // uname's release and machine
	CPU          string // /proc/cpuinfo's first "model name"
	Memory       string // /proc/meminfo's MemTotal, e.g. "4028180 kB"
	Cgroup       string // "v1" or "v2"
	FS           string // the type of the file system of the directory given to ReadMachine
}

// ReadMachine describes this machine; dir is the work directory whose file
// system is named.
func ReadMachine(dir string) Machine {
	m := Machine{NProc: goruntime.NumCPU()}
	var u unix.Utsname
	_ = unix.Uname(&u)
	m.Kernel, m.Arch = unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.Memory = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	var sfs unix.Statfs_t
	_ = unix.Statfs(dir, &sfs)
	m.FS = map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs"}[int64(sfs.Type)]
	if m.FS == "" {
		m.FS = fmt.Sprintf("0x%x", sfs.Type)
	}
	m.Cgroup = "v1"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		m.Cgroup = "v2"
	}
	return m
}
