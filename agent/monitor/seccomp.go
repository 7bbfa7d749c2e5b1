package monitor

import (
	"github.com/opencontainers/runc/libcontainer/configs"
)

// seccompDenied lists syscalls the RuntimeDefault profile refuses with EPERM, by the
// capability that would make them legitimate: a container holding that capability
// (added in its securityContext) may use them, as in Docker's default profile. The
// profile is a deny list over an allow-by-default action, so new syscalls keep
// working; it blocks what lets a container reach the host kernel's global state.
var seccompDenied = map[string][]string{
	"": { // no capability unlocks these
		"create_module", "get_kernel_syms", "query_module", "nfsservctl", "uselib", "vm86", "vm86old",
		"userfaultfd", "kexec_file_load", "kexec_load",
	},
	"CAP_SYS_ADMIN": {
		"mount", "umount", "umount2", "pivot_root", "unshare", "setns", "fsopen", "fsconfig", "fsmount",
		"fspick", "move_mount", "open_tree", "mount_setattr", "quotactl", "quotactl_fd", "lookup_dcookie",
		"bpf", "perf_event_open", "fanotify_init", "name_to_handle_at", "open_by_handle_at", "keyctl",
		"add_key", "request_key", "swapon", "swapoff", "sethostname", "setdomainname", "iopl", "ioperm",
		"clone3",
	},
	"CAP_SYS_MODULE":   {"init_module", "finit_module", "delete_module"},
	"CAP_SYS_BOOT":     {"reboot"},
	"CAP_SYS_TIME":     {"settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex"},
	"CAP_SYS_PACCT":    {"acct"},
	"CAP_SYS_PTRACE":   {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"},
	"CAP_SYS_NICE":     {"get_mempolicy", "set_mempolicy", "mbind", "move_pages"},
	"CAP_SYSLOG":       {"syslog"},
	"CAP_SYS_RESOURCE": {},
}

// applySeccomp installs the RuntimeDefault profile unless the pod asked for
// Unconfined or the container is privileged. clone3 is refused with ENOSYS so libc
// falls back to clone, as runc's own default does.
func applySeccomp(cfg *configs.Config, profile string, privileged bool) error {
	if privileged || profile != "RuntimeDefault" { // Kubernetes' default is Unconfined
		return nil
	}
	held := map[string]bool{}
	if cfg.Capabilities != nil {
		for _, c := range cfg.Capabilities.Bounding {
			held[c] = true
		}
	}
	eperm, enosys := uint(1), uint(38)
	s := &configs.Seccomp{DefaultAction: configs.Allow, Architectures: []string{"amd64", "x86", "x32", "arm64", "arm"}}
	for capability, calls := range seccompDenied {
		if capability != "" && held[capability] {
			continue
		}
		for _, name := range calls {
			ret := &eperm
			if name == "clone3" {
				ret = &enosys
			}
			s.Syscalls = append(s.Syscalls, &configs.Syscall{Name: name, Action: configs.Errno, ErrnoRet: ret})
		}
	}
	cfg.Seccomp = s
	return nil
}
