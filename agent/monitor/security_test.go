package monitor

import (
	"runtime"
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// allowed reports how the profile treats name: "allow" (unconditionally), "args"
// (only with argument conditions), "" (refused by the default action) or another action.
func allowed(p *specs.LinuxSeccomp, name string) string {
	verdict := ""
	for _, r := range p.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		switch {
		case r.Action == specs.ActAllow && len(r.Args) == 0:
			return "allow"
		case r.Action == specs.ActAllow:
			verdict = "args"
		default:
			if verdict == "" {
				verdict = string(r.Action)
			}
		}
	}
	return verdict
}

func TestBuildSpecSeccomp(t *testing.T) {
	nsFlags := uint64(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP)
	for _, tc := range []struct {
		name       string
		profile    string
		privileged bool
		caps       []string
		filtered   bool
		want       map[string]string // syscall → verdict
	}{
		{name: "empty profile is unconfined (older agentd)", profile: ""},
		{name: "unconfined", profile: SeccompUnconfined},
		{name: "privileged is unconfined", profile: SeccompRuntimeDefault, privileged: true},
		{name: "runtime default, docker's capabilities", profile: SeccompRuntimeDefault, filtered: true,
			caps: []string{"CAP_CHOWN", "CAP_NET_RAW", "CAP_SETUID", "CAP_SYS_CHROOT"},
			want: map[string]string{
				"read": "allow", "execve": "allow", "clone": "args", "clone3": string(specs.ActErrno),
				"unshare": "", "setns": "", "mount": "", "umount2": "", "pivot_root": "", "fsopen": "", "open_tree": "",
				"keyctl": "", "add_key": "", "request_key": "",
				"io_uring_setup": "", "io_uring_enter": "", "io_uring_register": "",
				"bpf": "", "perf_event_open": "", "userfaultfd": "", "kexec_load": "", "init_module": "",
				"ptrace": "allow", "chroot": "allow", "reboot": "", "swapon": "", "acct": "", "settimeofday": "",
			}},
		{name: "runtime default with CAP_SYS_ADMIN", profile: SeccompRuntimeDefault, filtered: true,
			caps: []string{"CAP_CHOWN", "CAP_SYS_ADMIN"},
			want: map[string]string{
				"clone": "allow", "clone3": "allow", "unshare": "allow", "mount": "allow", "setns": "allow",
				// no capability unlocks these
				"keyctl": "", "add_key": "", "request_key": "", "io_uring_setup": "", "io_uring_enter": "", "io_uring_register": "",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Seccomp, cfg.Privileged, cfg.Process.Capabilities = tc.profile, tc.privileged, tc.caps
			s, err := BuildSpec(cfg, "/rootfs")
			if err != nil {
				t.Fatal(err)
			}
			p := s.Linux.Seccomp
			if !tc.filtered {
				if p != nil {
					t.Fatalf("want no seccomp filter, got %d rules", len(p.Syscalls))
				}
				return
			}
			if p == nil {
				t.Fatal("no seccomp filter")
			}
			// An allow-list: whatever is not listed is refused with EPERM.
			if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != uint(unix.EPERM) {
				t.Errorf("default action %s %v, want ERRNO(EPERM)", p.DefaultAction, p.DefaultErrnoRet)
			}
			if !slices.Contains(p.Architectures, specs.ArchX86_64) && !slices.Contains(p.Architectures, specs.ArchAARCH64) {
				t.Errorf("architectures %v lack the native one", p.Architectures)
			}
			for name, want := range tc.want {
				if got := allowed(p, name); got != want {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			// Without CAP_SYS_ADMIN clone is allowed only when no namespace flag is set.
			if tc.want["clone"] == "args" {
				for _, r := range p.Syscalls {
					if slices.Contains(r.Names, "clone") && r.Action == specs.ActAllow {
						for _, a := range r.Args {
							if a.Op != specs.OpMaskedEqual || a.Value != nsFlags || a.ValueTwo != 0 {
								t.Errorf("clone condition %+v", a)
							}
						}
					}
				}
			}
			// runc converts it.
			lc, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "x", Spec: s})
			if err != nil {
				t.Fatalf("specconv: %v", err)
			}
			if lc.Seccomp == nil || lc.Seccomp.DefaultAction != configs.Errno || lc.NoNewKeyring {
				t.Errorf("libcontainer config: seccomp %+v, NoNewKeyring %v", lc.Seccomp, lc.NoNewKeyring)
			}
		})
	}
}

func TestBuildSpecMasksPowercapAndSetsOOMScore(t *testing.T) {
	cfg := baseConfig()
	adj := 1000
	cfg.Process.OOMScoreAdj = &adj
	s, err := BuildSpec(cfg, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	// Docker's and containerd's masked paths, each once.
	for _, p := range []string{"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"} {
		if n := countOf(s.Linux.MaskedPaths, p); n != 1 {
			t.Errorf("%s masked %d times, want once: %v", p, n, s.Linux.MaskedPaths)
		}
	}
	if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 1000 {
		t.Errorf("oomScoreAdj %v, want 1000", s.Process.OOMScoreAdj)
	}
	adj = 5 // the spec holds its own copy
	if *s.Process.OOMScoreAdj != 1000 {
		t.Errorf("spec shares the config's oomScoreAdj")
	}

	cfg = baseConfig()
	if s, _ := BuildSpec(cfg, "/rootfs"); s.Process.OOMScoreAdj != nil {
		t.Errorf("oomScoreAdj %d without one in the config (older agentd): want the monitor's", *s.Process.OOMScoreAdj)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestBuildSpecRefusesUnsafeCgroup: the cgroup is created and emptied by path; a
// config that names one that is relative, unclean or the root makes no spec.
func TestBuildSpecRefusesUnsafeCgroup(t *testing.T) {
	for _, path := range []string{"", "agent/pod-u/c", "/agent/../system.slice", "/agent/pod-u/c/..", "/agent//pod-u/c", "/", "/agent/pod-u/c/"} {
		cfg := baseConfig()
		cfg.Cgroup.Path = path
		if _, err := BuildSpec(cfg, "/rootfs"); err == nil {
			t.Errorf("BuildSpec accepted cgroup path %q", path)
		}
	}
}

func TestEffectiveOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct {
		name      string
		want, own int
		canLower  bool
		effective int
	}{
		{"best effort raises", 1000, -998, false, 1000},
		{"burstable raises", 998, 0, false, 998},
		{"guaranteed above the monitor", -997, -998, false, -997},
		{"guaranteed with CAP_SYS_RESOURCE", -997, -500, true, -997},
		{"guaranteed without CAP_SYS_RESOURCE keeps the monitor's", -997, -500, false, -500},
		{"guaranteed without CAP_SYS_RESOURCE, monitor at 0", -997, 0, false, 0},
		{"equal", 0, 0, false, 0},
	} {
		if got := effectiveOOMScoreAdj(tc.want, tc.own, tc.canLower); got != tc.effective {
			t.Errorf("%s: effectiveOOMScoreAdj(%d, %d, %v) = %d, want %d", tc.name, tc.want, tc.own, tc.canLower, got, tc.effective)
		}
	}
}

// The RuntimeDefault filter names x32 only where the kernel runs x32 syscalls: each
// architecture costs the container's init a pass of libseccomp over the profile.
func TestSeccompArchitectures(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("x32 is an amd64 ABI")
	}
	probed := x32Usable()
	// A probe that is not ENOSYS on an unconfined process means the kernel runs x32.
	_, _, errno := unix.RawSyscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
	if confined, err := seccompConfined(); err != nil {
		t.Fatal(err)
	} else if !confined && probed != (errno != unix.ENOSYS) {
		t.Errorf("x32Usable() = %v, but an x32 getpid gave %v", probed, errno)
	}
	defer func(f func() bool) { x32Usable = f }(x32Usable)
	for _, usable := range []bool{true, false} {
		x32Usable = func() bool { return usable }
		cfg := baseConfig()
		cfg.Seccomp = SeccompRuntimeDefault
		s, err := BuildSpec(cfg, "/rootfs")
		if err != nil {
			t.Fatal(err)
		}
		arches := s.Linux.Seccomp.Architectures
		if !slices.Contains(arches, specs.ArchX86_64) || !slices.Contains(arches, specs.ArchX86) {
			t.Errorf("x32 usable %v: architectures %v lack x86_64 or x86 (32-bit programs must keep working)", usable, arches)
		}
		if slices.Contains(arches, specs.ArchX32) != usable {
			t.Errorf("x32 usable %v: architectures %v", usable, arches)
		}
	}
}
