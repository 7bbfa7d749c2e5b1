package monitor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Seccomp profiles, as protocol.ContainerConfig.Seccomp names them.
const (
	SeccompRuntimeDefault = "RuntimeDefault"
	SeccompUnconfined     = "Unconfined"
)

// alwaysDenied are syscalls RuntimeDefault refuses whatever capabilities the
// container holds. Moby's profile allows none of them today; removing them again
// keeps that true should a newer profile allow them: the kernel keyrings are not
// namespaced (a container could read or fill the host's), and io_uring has been a
// steady source of kernel exploits (Docker and ChromeOS refuse it as well).
var alwaysDenied = []string{"keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register"}

// seccompProfile returns the seccomp filter of a container whose spec s is otherwise
// complete: nil (no filter) for privileged containers and for any profile but
// RuntimeDefault, else moby's default profile (Docker's, and containerd's and
// CRI-O's RuntimeDefault) for s's capabilities and this machine's architecture. It
// is an allow-list that refuses everything else with EPERM; without CAP_SYS_ADMIN
// it also refuses mount, unshare, setns, clone with namespace flags (clone3 with
// ENOSYS, so libc falls back to clone), bpf and perf_event_open.
func seccompProfile(cfg *protocol.ContainerConfig, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	if cfg.Privileged || cfg.Seccomp != SeccompRuntimeDefault {
		return nil, nil
	}
	p, err := mobyseccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile RuntimeDefault: %w", err)
	}
	for i := range p.Syscalls {
		if p.Syscalls[i].Action == specs.ActAllow {
			p.Syscalls[i].Names = slices.DeleteFunc(slices.Clone(p.Syscalls[i].Names), func(n string) bool {
				return slices.Contains(alwaysDenied, n)
			})
		}
	}
	p.Syscalls = slices.DeleteFunc(p.Syscalls, func(r specs.LinuxSyscall) bool { return len(r.Names) == 0 })
	if !x32Usable() {
		p.Architectures = slices.DeleteFunc(slices.Clone(p.Architectures), func(a specs.Arch) bool { return a == specs.ArchX32 })
	}
	return p, nil
}

// x32SyscallBit marks a syscall number as one of the x32 ABI on x86_64.
const x32SyscallBit = 0x40000000

// x32Usable reports whether this kernel runs x32 syscalls. Most do not: Ubuntu and
// Fedora build without the x32 ABI, and Debian's kernels turn it off at boot
// unless asked. Each architecture in a seccomp filter costs the container's init
// another pass of libseccomp over the whole profile: the x32 one is about 15 ms of
// CPU per container start here. On a kernel that answers every x32 syscall with
// ENOSYS no x32 program can do anything, so the filter leaves x32 out: such a
// syscall then kills the thread (libseccomp's bad-architecture action) where the
// kernel would have refused it. It is probed with a harmless getpid only when no
// seccomp filter confines this process (one without x32 could kill it for the
// probe); when in doubt x32 stays in.
var x32Usable = sync.OnceValue(func() bool {
	if runtime.GOARCH != "amd64" {
		return true // only amd64 profiles name x32
	}
	if confined, err := seccompConfined(); err != nil || confined {
		return true
	}
	_, _, errno := unix.RawSyscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
	return errno != unix.ENOSYS
})

// seccompConfined reports whether a seccomp filter (or strict mode) confines this
// process, from /proc/self/status.
func seccompConfined() (bool, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("Seccomp:")); ok {
			return string(bytes.TrimSpace(v)) != "0", nil
		}
	}
	return false, fmt.Errorf("/proc/self/status has no Seccomp line")
}
