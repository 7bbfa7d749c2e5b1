package spec

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// SafeSysctls are kubelet's safe sysctls (k8s.io/kubernetes pkg/kubelet/sysctl,
// safe_sysctls.go) with the namespace each belongs to: they are isolated per pod and
// cannot hurt the node or other pods. kubelet allows others only when its
// --allowed-unsafe-sysctls names them; agentd has no such setting, so a pod asking
// for any other sysctl is refused. (kubelet leaves out of the list the ones the
// running kernel lacks; agentd keeps them, and the container then fails to start
// with the kernel's error.)
var SafeSysctls = map[string]string{
	"kernel.shm_rmid_forced":              "ipc",
	"net.ipv4.ip_local_port_range":        "net",
	"net.ipv4.tcp_syncookies":             "net",
	"net.ipv4.ping_group_range":           "net",
	"net.ipv4.ip_unprivileged_port_start": "net",
	"net.ipv4.ip_local_reserved_ports":    "net",
	"net.ipv4.tcp_keepalive_time":         "net",
	"net.ipv4.tcp_fin_timeout":            "net",
	"net.ipv4.tcp_keepalive_intvl":        "net",
	"net.ipv4.tcp_keepalive_probes":       "net",
	"net.ipv4.tcp_rmem":                   "net",
	"net.ipv4.tcp_wmem":                   "net",
}

// validateSysctls checks spec.securityContext.sysctls as the API server (names,
// duplicates) and kubelet's sysctl admission (the allowlist, and no sysctl of a
// namespace the pod shares with the host) do, with kubelet's words.
func validateSysctls(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	if s.SecurityContext == nil {
		return nil
	}
	var errs field.ErrorList
	seen := sets.New[string]()
	for i, sc := range s.SecurityContext.Sysctls {
		np := p.Index(i).Child("name")
		switch {
		case sc.Name == "":
			errs = append(errs, field.Required(np, ""))
			continue
		case strings.Contains(sc.Name, "/"):
			errs = append(errs, field.Invalid(np, sc.Name, "write the sysctl with dots (net.ipv4.ip_forward), as /proc/sys/net/ipv4/ip_forward is named"))
			continue
		case seen.Has(sc.Name):
			errs = append(errs, field.Duplicate(np, sc.Name))
			continue
		}
		seen.Insert(sc.Name)
		ns, safe := SafeSysctls[sc.Name]
		switch {
		case !safe:
			errs = append(errs, field.Forbidden(np, fmt.Sprintf("%q not allowlisted: only kubelet's safe sysctls are allowed (%s); agentd has no --allowed-unsafe-sysctls", sc.Name, strings.Join(safeSysctlNames(), ", "))))
		case ns == "net" && s.HostNetwork:
			errs = append(errs, field.Forbidden(np, fmt.Sprintf("%q not allowed with host net enabled", sc.Name)))
		case ns == "ipc" && s.HostIPC:
			errs = append(errs, field.Forbidden(np, fmt.Sprintf("%q not allowed with host ipc enabled", sc.Name)))
		}
		if sc.Value == "" || strings.ContainsAny(sc.Value, "\n\x00") {
			errs = append(errs, field.Invalid(p.Index(i).Child("value"), sc.Value, "must be one line, not empty"))
		}
	}
	return errs
}

func safeSysctlNames() []string {
	names := make([]string, 0, len(SafeSysctls))
	for n := range SafeSysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
