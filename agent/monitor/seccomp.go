package monitor

import (
	"fmt"
	"slices"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

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
	return p, nil
}
