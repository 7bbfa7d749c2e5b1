package protocol

import (
	"strings"
	"testing"
)

func TestCheckSysctls(t *testing.T) {
	own := Namespaces{Net: "/run/agent/pods/u/ns/net", IPC: "/run/agent/pods/u/ns/ipc"}
	hostNet := Namespaces{Net: NamespaceHost, IPC: own.IPC}
	hostIPC := Namespaces{Net: own.Net, IPC: NamespaceHost}
	for _, tc := range []struct {
		name    string
		sysctls map[string]string
		ns      Namespaces
		wantErr string // "" for none
	}{
		{"none", nil, hostNet, ""},
		{"net in own netns", map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}, own, ""},
		{"ipc ones", map[string]string{"kernel.shm_rmid_forced": "1", "kernel.msgmax": "8192", "kernel.sem": "250 32000 32 128", "fs.mqueue.msg_max": "20"}, own, ""},
		{"net with hostNetwork", map[string]string{"net.ipv4.ip_forward": "1"}, hostNet, "host's network namespace"},
		{"ipc with hostIPC", map[string]string{"kernel.shmmax": "1"}, hostIPC, "host's IPC namespace"},
		{"ipc with hostNetwork is fine", map[string]string{"kernel.shmmax": "1"}, hostNet, ""},
		{"not namespaced", map[string]string{"kernel.panic": "1"}, own, "not namespaced"},
		{"vm", map[string]string{"vm.swappiness": "1"}, own, "not namespaced"},
		{"path traversal", map[string]string{"net/../../kernel/panic": "1"}, own, "not a sysctl name"},
		{"dot dot", map[string]string{"net..ipv4": "1"}, own, "not a sysctl name"},
		{"upper case", map[string]string{"net.IPv4.x": "1"}, own, "not a sysctl name"},
		{"empty", map[string]string{"": "1"}, own, "not a sysctl name"},
		{"newline in value", map[string]string{"net.ipv4.ip_forward": "1\n0"}, own, "one line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSysctls(tc.sysctls, tc.ns)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("CheckSysctls(%v) = %v, want %q", tc.sysctls, err, tc.wantErr)
			}
		})
	}
}
