package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// buildSysprobe builds testdata/sysprobe static into dir and returns dir; pods
// bind-mount it to try the syscalls their seccomp profile decides on.
func buildSysprobe(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds testdata/sysprobe: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "sysprobe"), "./testdata/sysprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sysprobe: %v\n%s", err, out)
	}
	return dir
}

// syscallResults parses `sysprobe syscalls`: syscall → "ok" or an errno name.
func syscallResults(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, res, ok := strings.Cut(line, " "); ok {
			m[name] = res
		}
	}
	return m
}

// securityPod is a pod that idles with sysprobe mounted at /probe.
func securityPod(name, probeDir, podSC, containerSC, resources string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 2
  securityContext: %s
  volumes: [{name: probe, hostPath: {path: %s, type: Directory}}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "/probe/sysprobe keyring; trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"]
    volumeMounts: [{name: probe, mountPath: /probe, readOnly: true}]
    securityContext: %s
    resources: %s
    readinessProbe: {exec: {command: ["cat", "/proc/self/status"]}, periodSeconds: 1}
`, name, podSC, probeDir, containerSC, resources)
}

func readInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// pidsMax reads pids.max of a container's cgroup (cgroup v1 or v2).
func (a *agent) pidsMax(p *corev1.Pod, container string) string {
	a.t.Helper()
	rel := filepath.Join(a.podCgroup(p), container)
	for _, dir := range []string{filepath.Join("/sys/fs/cgroup/pids", rel), filepath.Join("/sys/fs/cgroup", rel)} {
		if b, err := os.ReadFile(filepath.Join(dir, "pids.max")); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	a.t.Fatalf("no pids.max for %s", rel)
	return ""
}

func canLowerOOMScore() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if unix.Capget(&hdr, &caps[0]) != nil {
		return false
	}
	return caps[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}

// TestE2ESecurityDefaults runs the attacks Docker's defaults stop against pods that
// ask for nothing: new namespaces (user, network, mount), the kernel keyrings,
// io_uring, rewriting the pod's DNS, a fork bomb. Pods that ask for Unconfined
// (and the capability) can do what the default refuses; seccomp-default: false
// brings back unconfined pods. OOM scores follow kubelet's QoS classes.
func TestE2ESecurityDefaults(t *testing.T) {
	a := newAgent(t, nil)
	probeDir := buildSysprobe(t, filepath.Join(a.dir, "probe"))
	host := syscallResults(func() string {
		out, _ := exec.Command(filepath.Join(probeDir, "sysprobe"), "syscalls").CombinedOutput()
		return string(out)
	}())
	a.start()

	// confined: no seccomp profile, Docker's capabilities, BestEffort.
	a.write("confined.yaml", securityPod("confined", probeDir, "{}", "{}", "{}"))
	// admin: no seccomp profile, CAP_SYS_ADMIN added, Burstable.
	a.write("admin.yaml", securityPod("admin", probeDir, "{}", "{capabilities: {add: [SYS_ADMIN]}}", "{requests: {memory: 64Mi}}"))
	// unconfined: asks for Unconfined and CAP_SYS_ADMIN, Guaranteed.
	a.write("unconfined.yaml", securityPod("unconfined", probeDir, "{seccompProfile: {type: Unconfined}}", "{capabilities: {add: [SYS_ADMIN]}}",
		"{limits: {cpu: 100m, memory: 64Mi}}"))
	for _, name := range []string{"confined", "admin", "unconfined"} {
		a.waitStatus(name, "Running", 60*time.Second)
		a.eventually(30*time.Second, name+" ready (exec probe under its profile)", func() (bool, string) {
			out, _ := a.try("get", "pods", name, "--no-headers")
			f := strings.Fields(out)
			return len(f) > 1 && f[1] == "1/1", out
		})
	}
	sh := func(pod, script string) (string, error) { return a.try("exec", pod, "--", "sh", "-c", script) }

	t.Run("seccomp filter installed by default", func(t *testing.T) {
		for pod, want := range map[string]string{"confined": "2", "admin": "2", "unconfined": "0"} {
			out, _ := sh(pod, "grep '^Seccomp:' /proc/1/status /proc/self/status")
			if strings.Count(out, "Seccomp:\t"+want) != 2 {
				t.Errorf("%s: want Seccomp %s for the container and an exec'd process:\n%s", pod, want, out)
			}
		}
	})

	t.Run("namespaces and mounts", func(t *testing.T) {
		for _, tc := range []struct {
			attack string
			script string
			// whether it works in confined, admin, unconfined
			confined, admin, unconfined bool
		}{
			// A user namespace needs no capability: only seccomp stops it.
			{"user namespace", "unshare -Ur true", false, true, true},
			{"user+mount namespace, then mount", "unshare -Urm sh -c 'mount -t tmpfs none /tmp'", false, true, true},
			{"network namespace", "unshare -n true", false, true, true},
			{"mount", "mount -t tmpfs none /tmp && umount /tmp", false, true, true},
		} {
			for pod, works := range map[string]bool{"confined": tc.confined, "admin": tc.admin, "unconfined": tc.unconfined} {
				out, err := sh(pod, tc.script)
				if (err == nil) != works {
					t.Errorf("%s in %s: error %v, want success %v:\n%s", tc.attack, pod, err, works, out)
				}
			}
		}
	})

	t.Run("keyrings and io_uring", func(t *testing.T) {
		for _, pod := range []string{"confined", "admin", "unconfined"} {
			got := syscallResults(a.ctl("exec", pod, "--", "/probe/sysprobe", "syscalls"))
			for _, call := range []string{"keyctl", "add_key", "request_key", "io_uring_setup"} {
				if host[call] == "EPERM" {
					t.Logf("%s: refused on the host itself; not compared", call)
					continue
				}
				if denied := got[call] == "EPERM"; denied != (pod != "unconfined") {
					t.Errorf("%s in %s: %q, want EPERM only under RuntimeDefault (host: %q)", call, pod, got[call], host[call])
				}
			}
		}
	})

	// The i386 ABI is open to 64-bit programs too (int $0x80): the filter covers it,
	// so 32-bit programs run and a refused syscall stays refused through it.
	t.Run("32-bit syscalls", func(t *testing.T) {
		if goruntime.GOARCH != "amd64" {
			t.Skip("the i386 ABI is an amd64 one")
		}
		hostCompat := syscallResults(func() string {
			out, _ := exec.Command(filepath.Join(probeDir, "sysprobe"), "compat").CombinedOutput()
			return string(out)
		}())
		if hostCompat["getpid32"] != "ok" {
			t.Skipf("the host runs no i386 syscalls (IA32 emulation off?): %v", hostCompat)
		}
		for _, pod := range []string{"confined", "admin", "unconfined"} {
			got := syscallResults(a.ctl("exec", pod, "--", "/probe/sysprobe", "compat"))
			if got["getpid32"] != "ok" {
				t.Errorf("getpid through the i386 ABI in %s: %q, want ok", pod, got["getpid32"])
			}
			if denied := got["keyctl32"] == "EPERM"; denied != (pod != "unconfined") {
				t.Errorf("keyctl through the i386 ABI in %s: %q, want EPERM only under RuntimeDefault (host: %q)", pod, got["keyctl32"], hostCompat["keyctl32"])
			}
		}
	})

	t.Run("own session keyring", func(t *testing.T) {
		p := a.pod("unconfined")
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "agentd://")
		hostRing, _ := exec.Command(filepath.Join(probeDir, "sysprobe"), "keyring").CombinedOutput()
		// The container's process (its log's first line) and an exec'd one are in the
		// container's own session keyring, never the monitor's (agentd's, the host's).
		logs := a.ctl("logs", "unconfined")
		execd := a.ctl("exec", "unconfined", "--", "/probe/sysprobe", "keyring")
		for what, ring := range map[string]string{"container": strings.SplitN(logs, "\n", 2)[0], "exec'd process": execd} {
			if !strings.HasSuffix(strings.TrimSpace(ring), ";_ses."+id) {
				t.Errorf("%s's session keyring %q, want _ses.%s (the host's: %q)", what, ring, id, hostRing)
			}
		}
		// Under RuntimeDefault the keyring cannot even be looked at.
		if logs := a.ctl("logs", "confined"); !strings.HasPrefix(logs, "error EPERM") {
			t.Errorf("confined container read its keyring: %q", logs)
		}
	})

	t.Run("read-only resolv.conf and hostname, writable hosts", func(t *testing.T) {
		before := a.ctl("exec", "confined", "--", "cat", "/etc/resolv.conf")
		for _, f := range []string{"/etc/resolv.conf", "/etc/hostname"} {
			if out, err := sh("confined", "echo nameserver 203.0.113.66 > "+f); err == nil || !strings.Contains(out, "Read-only file system") {
				t.Errorf("writing %s: %v %q, want a read-only file system", f, err, out)
			}
		}
		if after := a.ctl("exec", "admin", "--", "cat", "/etc/resolv.conf"); after != before || strings.Contains(after, "203.0.113.66") {
			t.Errorf("resolv.conf changed: %q → %q", before, after)
		}
		if out, err := sh("confined", "echo '203.0.113.7 extra' >> /etc/hosts && grep extra /etc/hosts"); err != nil {
			t.Errorf("/etc/hosts not writable: %v %s", err, out)
		}
	})

	t.Run("docker's masked paths, powercap and interrupts among them", func(t *testing.T) {
		p := a.pod("confined")
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "agentd://")
		data, err := os.ReadFile(filepath.Join(a.dir, "run", "libcontainer", id, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Config struct {
				MaskPaths []string `json:"mask_paths"`
			} `json:"config"`
		}
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		masked := map[string]bool{}
		for _, m := range st.Config.MaskPaths {
			masked[m] = true
		}
		for _, m := range []string{"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
			"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
			"/sys/firmware", "/sys/devices/virtual/powercap"} {
			if !masked[m] {
				t.Errorf("masked paths %v lack %s", st.Config.MaskPaths, m)
			}
		}
		// Every CPU's interrupt counts: a side channel on the host and other pods.
		if host, err := os.ReadFile("/proc/interrupts"); err == nil && len(host) > 0 {
			if out := a.ctl("exec", "confined", "--", "cat", "/proc/interrupts"); strings.TrimSpace(out) != "" {
				t.Errorf("/proc/interrupts readable in the container: %.200q", out)
			}
		}
		if entries, err := os.ReadDir("/sys/devices/virtual/powercap"); err == nil && len(entries) > 0 {
			if out := a.ctl("exec", "confined", "--", "ls", "-A", "/sys/devices/virtual/powercap"); strings.TrimSpace(out) != "" {
				t.Errorf("powercap visible in the container: %q", out)
			}
		} else {
			t.Log("this host has no powercap zones: checked the container's masked paths only")
		}
	})

	t.Run("pids limit", func(t *testing.T) {
		for _, pod := range []string{"confined", "unconfined"} {
			if got := a.pidsMax(a.pod(pod), "main"); got != "4096" {
				t.Errorf("%s: pids.max %s, want the default 4096", pod, got)
			}
		}
	})

	t.Run("oom scores", func(t *testing.T) {
		agentd := readInt(t, fmt.Sprintf("/proc/%d/oom_score_adj", a.cmd.Process.Pid))
		lower := canLowerOOMScore()
		floor := func(want int) int { // what the kernel lets a child of agentd have
			if want < agentd && !lower {
				return agentd
			}
			return want
		}
		memTotal := int64(0)
		meminfo, _ := os.ReadFile("/proc/meminfo")
		for _, line := range strings.Split(string(meminfo), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				memTotal = kb << 10
			}
		}
		burstable := min(max(int(1000-1000*(64<<20)/memTotal), 3), 999)
		for pod, want := range map[string]int{"confined": 1000, "admin": burstable, "unconfined": floor(-997)} {
			j := a.journal(a.pod(pod), "main")
			if got := readInt(t, fmt.Sprintf("/proc/%d/oom_score_adj", j.Current().Pid)); got != want {
				t.Errorf("%s: container oom_score_adj %d, want %d (agentd's %d, CAP_SYS_RESOURCE %v)", pod, got, want, agentd, lower)
			}
			if out := strings.TrimSpace(a.ctl("exec", pod, "--", "cat", "/proc/self/oom_score_adj")); out != strconv.Itoa(want) {
				t.Errorf("%s: exec'd process oom_score_adj %s, want %d", pod, out, want)
			}
			if got, want := readInt(t, fmt.Sprintf("/proc/%d/oom_score_adj", j.MonitorPid)), floor(-998); got != want {
				t.Errorf("%s: monitor oom_score_adj %d, want %d", pod, got, want)
			}
		}
		if !lower && agentd > -998 && !strings.Contains(a.stderr.String(), "lacks CAP_SYS_RESOURCE") {
			t.Errorf("agentd did not warn that it cannot lower OOM scores:\n%s", a.stderr)
		}
	})

	// seccomp-default: false and a small pids limit, after a restart.
	a.stop(unix.SIGTERM, 60*time.Second)
	cfg := map[string]any{}
	data, _ := os.ReadFile(a.config)
	_ = json.Unmarshal(data, &cfg)
	cfg["seccomp-default"] = false
	cfg["container-pids-limit"] = 40
	data, _ = json.Marshal(cfg)
	if err := os.WriteFile(a.config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a.start()
	a.write("legacy.yaml", simplePod("legacy", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"))
	a.waitStatus("legacy", "Running", 60*time.Second)

	t.Run("seccomp-default false", func(t *testing.T) {
		if out, _ := sh("legacy", "grep '^Seccomp:' /proc/1/status"); !strings.Contains(out, "Seccomp:\t0") {
			t.Errorf("seccomp-default: false still filters: %q", out)
		}
		if out, err := sh("legacy", "unshare -Ur true"); err != nil {
			t.Errorf("unconfined pod cannot create a user namespace: %v %s", err, out)
		}
	})

	t.Run("fork bomb stops at the pids limit", func(t *testing.T) {
		if got := a.pidsMax(a.pod("legacy"), "main"); got != "40" {
			t.Fatalf("pids.max %s, want 40", got)
		}
		out, _ := sh("legacy", "i=0; while [ $i -lt 100 ]; do sleep 300 >/dev/null 2>&1 & i=$((i+1)); done")
		if !strings.Contains(out, "can't fork") && !strings.Contains(out, "Resource temporarily unavailable") {
			t.Errorf("100 processes started under pids.max 40: %q", out)
		}
		// The container goes on, and agentd still runs pods.
		a.write("after.yaml", simplePod("after", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"))
		a.waitStatus("after", "Running", 60*time.Second)
	})
}
