package protocol

import (
	"fmt"
	"sort"
	"strings"
)

// validSysctlName reports whether name is a sysctl as kubelet writes it:
// dot-separated segments of lower-case letters, digits, '-' and '_' that begin
// and end with a letter or digit (k8s.io/kubernetes's SysctlSegmentFmt). Neither
// "/" nor ".." can appear: the name becomes a path under /proc/sys. (No regexp:
// the lean monitor links this package.)
func validSysctlName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, seg := range strings.Split(name, ".") {
		if seg == "" || !alnum(seg[0]) || !alnum(seg[len(seg)-1]) {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !alnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// SysctlNamespace is the namespace a sysctl belongs to: "ipc" or "net" (the
// namespaces whose sysctls a container may set, as kubelet's
// pkg/kubelet/sysctl/namespace.go lists them), or "" for one that is not
// namespaced and so would change the host's.
func SysctlNamespace(name string) string {
	if name == "kernel.sem" {
		return "ipc"
	}
	for _, p := range []string{"kernel.shm", "kernel.msg", "fs.mqueue."} {
		if strings.HasPrefix(name, p) {
			return "ipc"
		}
	}
	if strings.HasPrefix(name, "net.") {
		return "net"
	}
	return ""
}

// CheckSysctls proves that sysctls only change the container's own namespaces:
// each is a well-formed, namespaced sysctl, of a namespace not shared with the
// host (hostNetwork, hostIPC), with a value of one line.
func CheckSysctls(sysctls map[string]string, ns Namespaces) error {
	names := make([]string, 0, len(sysctls))
	for k := range sysctls {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if !validSysctlName(name) {
			return fmt.Errorf("sysctl %q: not a sysctl name", name)
		}
		switch SysctlNamespace(name) {
		case "":
			return fmt.Errorf("sysctl %q is not namespaced: it would change the host's", name)
		case "net":
			if ns.Net == NamespaceHost {
				return fmt.Errorf("sysctl %q: the container shares the host's network namespace", name)
			}
		case "ipc":
			if ns.IPC == NamespaceHost {
				return fmt.Errorf("sysctl %q: the container shares the host's IPC namespace", name)
			}
		}
		if v := sysctls[name]; strings.ContainsAny(v, "\n\x00") || len(v) > 4096 {
			return fmt.Errorf("sysctl %q: value must be one line of at most 4096 bytes", name)
		}
	}
	return nil
}
