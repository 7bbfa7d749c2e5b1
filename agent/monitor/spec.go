package monitor

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// AllCapabilities is every capability, for privileged containers.
var AllCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// MaskedPaths are masked in every container that is not privileged: Docker's
// (moby oci/defaults.go) and containerd's list. runc's example spec has most; the
// ones it lacks are added:
//   - /proc/interrupts counts every device interrupt on every CPU, a side channel
//     on what the host and other tenants do (keystroke timing, network load);
//   - /sys/devices/virtual/powercap: RAPL energy counters leak what other tenants
//     compute (CVE-2020-8694, PLATYPUS).
var MaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// BuildSpec turns a container's config into an OCI runtime spec rooted at rootfs.
// It starts from runc's defaults (specconv.Example: masked and read-only /proc
// paths, the standard mounts), masks what containerd and Docker mask besides, and
// adds the seccomp profile the config names. It is pure, so it is tested without
// root (the seccomp profile depends on the kernel version only).
func BuildSpec(cfg *protocol.ContainerConfig, rootfs string) (*specs.Spec, error) {
	if len(cfg.Process.Args) == 0 {
		return nil, fmt.Errorf("container %q has no command: the image has no Entrypoint or Cmd and the pod gives no command", cfg.Name)
	}
	// The cgroup is created, limited and later emptied by path: a relative one
	// would resolve against the monitor's own cgroup, one with ".." anywhere.
	if err := cgroupkill.CheckPath(cfg.Cgroup.Path); err != nil {
		return nil, fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	s := specconv.Example()
	s.Root = &specs.Root{Path: rootfs, Readonly: cfg.Rootfs.ReadOnly}
	s.Hostname = cfg.Hostname

	caps := cfg.Process.Capabilities
	if cfg.Privileged {
		caps = AllCapabilities
	}
	s.Process = &specs.Process{
		Args: cfg.Process.Args,
		Env:  cfg.Process.Env,
		Cwd:  cfg.Process.Cwd,
		User: specs.User{UID: cfg.Process.UID, GID: cfg.Process.GID, AdditionalGids: cfg.Process.AdditionalGIDs},
		Capabilities: &specs.LinuxCapabilities{
			Bounding:  caps,
			Effective: caps,
			Permitted: caps,
		},
		NoNewPrivileges: cfg.Process.NoNewPrivileges,
		Rlimits:         s.Process.Rlimits,
	}
	if adj := cfg.Process.OOMScoreAdj; adj != nil {
		v := *adj
		s.Process.OOMScoreAdj = &v
	}
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	}

	s.Linux.CgroupsPath = cfg.Cgroup.Path
	s.Linux.Resources = resources(&cfg.Cgroup)
	s.Linux.Namespaces = namespaces(&cfg.Namespaces)
	// libcontainer writes them under /proc/sys in the container's namespaces, and
	// checks again that they are namespaced; a host namespace's are refused here.
	if err := protocol.CheckSysctls(cfg.Sysctls, cfg.Namespaces); err != nil {
		return nil, fmt.Errorf("container %q: %w", cfg.Name, err)
	}
	if len(cfg.Sysctls) > 0 {
		s.Linux.Sysctl = maps.Clone(cfg.Sysctls)
	}
	for _, p := range MaskedPaths {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, p)
		}
	}
	if cfg.Privileged {
		s.Linux.MaskedPaths = nil
		s.Linux.ReadonlyPaths = nil
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}

	var mounts []specs.Mount
	for _, m := range s.Mounts {
		switch {
		case m.Destination == "/sys" && cfg.Privileged:
			m.Options = []string{"nosuid", "noexec", "nodev"}
		case m.Destination == "/sys" && cfg.Namespaces.Net == protocol.NamespaceHost:
			// A sysfs mount belongs to the network namespace that mounts it; in the
			// host's, bind the host's sysfs read-only as runc does for such containers.
			m = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case m.Destination == "/sys/fs/cgroup" && cfg.Privileged:
			m.Options = []string{"nosuid", "noexec", "nodev", "relatime"}
		case m.Destination == "/dev/mqueue" && cfg.Namespaces.IPC == protocol.NamespaceHost:
			m = specs.Mount{Destination: "/dev/mqueue", Type: "bind", Source: "/dev/mqueue", Options: []string{"rbind", "nosuid", "noexec", "nodev"}}
		}
		if overridden(cfg.Mounts, m.Destination) {
			continue
		}
		mounts = append(mounts, m)
	}
	for _, m := range cfg.Mounts {
		typ := m.Type
		opts := m.Options
		if typ == "" || typ == "bind" {
			typ = "bind"
			if !hasOption(opts, "bind") && !hasOption(opts, "rbind") {
				opts = append([]string{"rbind"}, opts...)
			}
		}
		mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: typ, Source: m.Source, Options: opts})
	}
	s.Mounts = mounts

	seccomp, err := seccompProfile(cfg, s)
	if err != nil {
		return nil, err
	}
	s.Linux.Seccomp = seccomp
	return s, nil
}

func overridden(mounts []protocol.Mount, dest string) bool {
	for _, m := range mounts {
		if filepath.Clean(m.Destination) == dest {
			return true
		}
	}
	return false
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func namespaces(ns *protocol.Namespaces) []specs.LinuxNamespace {
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	if ns.PID != protocol.NamespaceHost {
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	for _, n := range []struct {
		typ  specs.LinuxNamespaceType
		path string
	}{{specs.NetworkNamespace, ns.Net}, {specs.IPCNamespace, ns.IPC}, {specs.UTSNamespace, ns.UTS}} {
		switch n.path {
		case protocol.NamespaceHost:
			// shared with the host: no entry
		case "":
			out = append(out, specs.LinuxNamespace{Type: n.typ})
		default:
			out = append(out, specs.LinuxNamespace{Type: n.typ, Path: n.path})
		}
	}
	return out
}

func resources(c *protocol.Cgroup) *specs.LinuxResources {
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if c.MemoryLimit > 0 {
		limit := c.MemoryLimit
		r.Memory = &specs.LinuxMemory{Limit: &limit}
		// No swap beyond the limit, as kubelet configures it.
		swap := c.MemoryLimit
		r.Memory.Swap = &swap
	}
	if c.CPUShares > 0 || c.CPUQuota > 0 {
		r.CPU = &specs.LinuxCPU{}
		if c.CPUShares > 0 {
			shares := c.CPUShares
			r.CPU.Shares = &shares
		}
		if c.CPUQuota > 0 {
			quota, period := c.CPUQuota, c.CPUPeriod
			if period == 0 {
				period = 100000
			}
			r.CPU.Quota, r.CPU.Period = &quota, &period
		}
	}
	if c.CpusetCpus != "" || c.CpusetMems != "" {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		r.CPU.Cpus, r.CPU.Mems = c.CpusetCpus, c.CpusetMems
	}
	if c.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: &c.PidsLimit}
	}
	return r
}
