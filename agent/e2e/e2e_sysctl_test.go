package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// hostSysctl reads a sysctl of the host (of this test's namespaces).
func hostSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestE2ESysctls: a pod's safe sysctls are set in its own namespaces (the host's
// stay as they were); an unsafe one is refused with kubelet's words and the field.
func TestE2ESysctls(t *testing.T) {
	hostPort := hostSysctl(t, "net/ipv4/ip_unprivileged_port_start")
	hostShm := hostSysctl(t, "kernel/shm_rmid_forced")
	// Values that differ from the host's, so that seeing them proves they were set.
	port, shm := "0", "1"
	if hostPort == "0" {
		port = "1024"
	}
	if hostShm == "1" {
		shm = "0"
	}
	a := newAgent(t, nil)
	a.start()
	a.write("sysctl.yaml", simplePod("sysctl",
		"echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) shm=$(cat /proc/sys/kernel/shm_rmid_forced); exec sleep 1000",
		"  securityContext:",
		"    sysctls:",
		fmt.Sprintf("    - {name: net.ipv4.ip_unprivileged_port_start, value: %q}", port),
		fmt.Sprintf("    - {name: kernel.shm_rmid_forced, value: %q}", shm)))
	a.write("unsafe.yaml", simplePod("unsafe", "exec sleep 1000",
		"  securityContext:",
		"    sysctls: [{name: kernel.msgmax, value: \"65536\"}]"))

	a.waitStatus("sysctl", "Running", 60*time.Second)
	want := fmt.Sprintf("port=%s shm=%s", port, shm)
	a.eventually(30*time.Second, "the pod to see its sysctls", func() (bool, string) {
		out, _ := a.try("logs", "sysctl")
		return strings.Contains(out, want), out
	})
	// Another container of the pod's namespaces sees them too: they are the pod's.
	if out := a.ctl("exec", "sysctl", "--", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(out) != port {
		t.Errorf("exec in the pod sees ip_unprivileged_port_start %q, want %s", out, port)
	}
	if got := hostSysctl(t, "net/ipv4/ip_unprivileged_port_start"); got != hostPort {
		t.Errorf("the host's ip_unprivileged_port_start changed: %s, was %s", got, hostPort)
	}
	if got := hostSysctl(t, "kernel/shm_rmid_forced"); got != hostShm {
		t.Errorf("the host's shm_rmid_forced changed: %s, was %s", got, hostShm)
	}

	a.eventually(30*time.Second, "the unsafe sysctl refused with its field", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Contains(out, "unsafe.yaml") && strings.Contains(out, `spec.securityContext.sysctls[0].name: Forbidden: "kernel.msgmax" not allowlisted`), out
	})
	if out, _ := a.try("get", "pods", "unsafe"); !strings.Contains(out, "not found") {
		t.Errorf("a pod with an unsafe sysctl runs: %s", out)
	}
}
