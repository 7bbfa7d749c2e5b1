package runtime

import (
	"fmt"
	"slices"
	"testing"
)

func TestSeccompProfile(t *testing.T) {
	for _, tc := range []struct {
		name           string
		podSC, ctrSC   string // securityContext YAML, "" for none
		seccompDefault bool
		want           string
	}{
		{"nothing set, seccomp-default on", "", "", true, "RuntimeDefault"},
		{"nothing set, seccomp-default off", "", "", false, "Unconfined"},
		{"pod asks unconfined", "{seccompProfile: {type: Unconfined}}", "", true, "Unconfined"},
		{"pod asks runtime default, seccomp-default off", "{seccompProfile: {type: RuntimeDefault}}", "", false, "RuntimeDefault"},
		{"container wins over pod", "{seccompProfile: {type: RuntimeDefault}}", "{seccompProfile: {type: Unconfined}}", true, "Unconfined"},
		{"container asks runtime default", "{seccompProfile: {type: Unconfined}}", "{seccompProfile: {type: RuntimeDefault}}", false, "RuntimeDefault"},
		{"privileged is unconfined", "", "{privileged: true}", true, "Unconfined"},
		{"privileged wins over runtime default", "", "{privileged: true, seccompProfile: {type: RuntimeDefault}}", true, "Unconfined"},
		{"privileged: false changes nothing", "", "{privileged: false}", true, "RuntimeDefault"},
		{"other container settings change nothing", "{runAsUser: 1000}", "{capabilities: {add: [SYS_ADMIN]}}", true, "RuntimeDefault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
			if tc.podSC != "" {
				m += "  securityContext: " + tc.podSC + "\n"
			}
			m += "  containers:\n  - name: c\n    image: x\n"
			if tc.ctrSC != "" {
				m += "    securityContext: " + tc.ctrSC + "\n"
			}
			pod := parsePod(t, m)
			if got := SeccompProfile(pod, &pod.Spec.Containers[0], tc.seccompDefault); got != tc.want {
				t.Errorf("SeccompProfile = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	const gi = int64(1 << 30)
	for _, tc := range []struct {
		name       string
		resources  []string // per container
		priority   string
		nodeMemory int64
		want       []int
	}{
		{"best effort", []string{"{}"}, "", 16 * gi, []int{1000}},
		{"guaranteed", []string{"{limits: {cpu: 1, memory: 1Gi}}"}, "", 16 * gi, []int{-997}},
		{"guaranteed, requests equal limits", []string{"{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}"}, "", 16 * gi, []int{-997}},
		{"burstable: a tenth of the node", []string{"{requests: {memory: 1639Mi}}"}, "", 16 * gi, []int{900}},
		{"burstable: half the node", []string{"{requests: {memory: 8Gi}, limits: {memory: 9Gi}}"}, "", 16 * gi, []int{500}},
		{"burstable: tiny request rounds to 999, never BestEffort's 1000", []string{"{requests: {memory: 1Ki}}"}, "", 16 * gi, []int{999}},
		{"burstable: cpu only", []string{"{requests: {cpu: 100m}}"}, "", 16 * gi, []int{999}},
		{"burstable: the whole node stays above Guaranteed", []string{"{requests: {memory: 16Gi}}"}, "", 16 * gi, []int{3}},
		{"burstable: more than the node", []string{"{requests: {memory: 32Gi}}"}, "", 16 * gi, []int{3}},
		{"burstable: node memory unknown", []string{"{requests: {memory: 1Gi}}"}, "", 0, []int{999}},
		{"burstable pod: each container by its own request", []string{"{limits: {cpu: 1, memory: 4Gi}}", "{}"}, "", 16 * gi, []int{750, 999}},
		{"node critical best effort", []string{"{}"}, "system-node-critical", 16 * gi, []int{-997}},
		{"cluster critical is not node critical", []string{"{}"}, "system-cluster-critical", 16 * gi, []int{1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
			if tc.priority != "" {
				m += "  priorityClassName: " + tc.priority + "\n"
			}
			m += "  containers:\n"
			for i, r := range tc.resources {
				m += fmt.Sprintf("  - {name: c%d, image: x, resources: %s}\n", i, r)
			}
			pod := parsePod(t, m)
			for i := range pod.Spec.Containers {
				if got := OOMScoreAdj(pod, &pod.Spec.Containers[i], tc.nodeMemory); got != tc.want[i] {
					t.Errorf("container %d: OOMScoreAdj = %d, want %d", i, got, tc.want[i])
				}
			}
		})
	}
}

func TestContainerConfigSecurityDefaults(t *testing.T) {
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes: [{name: data}]
  containers:
  - {name: a, image: x}
  - name: b
    image: x
    volumeMounts: [{name: data, mountPath: /etc/resolv.conf}]
`)
	s := *settings
	s.SeccompDefault, s.PidsLimit, s.NodeMemory = true, 4096, 1<<34
	a, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, busybox, sandbox(), &s)
	if err != nil {
		t.Fatal(err)
	}
	if a.Seccomp != "RuntimeDefault" || a.Cgroup.PidsLimit != 4096 || a.Process.OOMScoreAdj == nil || *a.Process.OOMScoreAdj != 1000 {
		t.Errorf("seccomp %q, pids %d, oom %v", a.Seccomp, a.Cgroup.PidsLimit, a.Process.OOMScoreAdj)
	}
	ro := map[string]bool{}
	for _, m := range a.Mounts {
		ro[m.Destination] = slices.Contains(m.Options, "ro")
	}
	if want := map[string]bool{"/etc/hosts": false, "/etc/hostname": true, "/etc/resolv.conf": true, "/dev/shm": false}; fmt.Sprint(ro) != fmt.Sprint(want) {
		t.Errorf("mounts read-only: %v, want %v", ro, want)
	}

	// A volume mounted over /etc/resolv.conf replaces the pod's, writable as asked.
	b, err := ContainerConfig(pod, &pod.Spec.Containers[1], false, busybox, sandbox(), &s)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range b.Mounts {
		if m.Destination == "/etc/resolv.conf" && (m.Source != "/vol/data" || slices.Contains(m.Options, "ro")) {
			t.Errorf("user's /etc/resolv.conf: %+v", m)
		}
	}

	// seccomp-default off and no pids limit: as before.
	s.SeccompDefault, s.PidsLimit = false, 0
	a, _ = ContainerConfig(pod, &pod.Spec.Containers[0], false, busybox, sandbox(), &s)
	if a.Seccomp != "Unconfined" || a.Cgroup.PidsLimit != 0 {
		t.Errorf("seccomp %q, pids %d", a.Seccomp, a.Cgroup.PidsLimit)
	}
}
