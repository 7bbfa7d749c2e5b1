package spec

import (
	"strings"
	"testing"
)

func TestSysctls(t *testing.T) {
	pod := func(extra, sysctls string) string {
		return base + extra + "  securityContext:\n    sysctls: " + sysctls + "\n"
	}
	for _, tc := range []struct {
		name     string
		manifest string
		wantErr  []string // none: accepted
	}{
		{"safe net sysctl", pod("", `[{name: net.ipv4.ip_unprivileged_port_start, value: "0"}]`), nil},
		{"safe ipc sysctl with hostNetwork", pod("  hostNetwork: true\n", `[{name: kernel.shm_rmid_forced, value: "1"}]`), nil},
		{"several safe", pod("", `[{name: net.ipv4.ping_group_range, value: "0 2147483647"}, {name: net.ipv4.tcp_syncookies, value: "1"}]`), nil},
		{"unsafe namespaced", pod("", `[{name: kernel.msgmax, value: "65536"}]`),
			[]string{`spec.securityContext.sysctls[0].name: Forbidden: "kernel.msgmax" not allowlisted`}},
		{"host's", pod("", `[{name: kernel.panic, value: "1"}]`),
			[]string{`spec.securityContext.sysctls[0].name: Forbidden: "kernel.panic" not allowlisted`}},
		{"net with hostNetwork", pod("  hostNetwork: true\n", `[{name: net.ipv4.ip_local_port_range, value: "1024 65000"}]`),
			[]string{`spec.securityContext.sysctls[0].name: Forbidden: "net.ipv4.ip_local_port_range" not allowed with host net enabled`}},
		{"ipc with hostIPC", pod("  hostIPC: true\n", `[{name: kernel.shm_rmid_forced, value: "1"}]`),
			[]string{`not allowed with host ipc enabled`}},
		{"duplicate", pod("", `[{name: net.ipv4.tcp_syncookies, value: "1"}, {name: net.ipv4.tcp_syncookies, value: "0"}]`),
			[]string{`spec.securityContext.sysctls[1].name: Duplicate value`}},
		{"slashes", pod("", `[{name: net/ipv4/tcp_syncookies, value: "1"}]`), []string{`spec.securityContext.sysctls[0].name: Invalid value`}},
		{"no name", pod("", `[{value: "1"}]`), []string{`spec.securityContext.sysctls[0].name: Required value`}},
		{"empty value", pod("", `[{name: net.ipv4.tcp_syncookies, value: ""}]`), []string{`spec.securityContext.sysctls[0].value: Invalid value`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.manifest), Source{Path: "/m/p.yaml", NodeName: "n"})
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %s\ndoes not contain\n  %s", err, w)
				}
			}
		})
	}
}
