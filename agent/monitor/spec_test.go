package monitor

import (
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func baseConfig() *protocol.ContainerConfig {
	return &protocol.ContainerConfig{
		ID: "uid_main", Name: "main",
		Process:    protocol.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin"}, Cwd: "/", Capabilities: []string{"CAP_CHOWN"}},
		Namespaces: protocol.Namespaces{Net: "/run/agent/pods/uid/ns/net", IPC: "/run/agent/pods/uid/ns/ipc", UTS: "/run/agent/pods/uid/ns/uts"},
		Hostname:   "web",
		Cgroup:     protocol.Cgroup{Path: "/agent/pod-uid/main", MemoryLimit: 64 << 20, CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000},
		Mounts:     []protocol.Mount{{Source: "/run/agent/pods/uid/hosts", Destination: "/etc/hosts", Options: []string{"rbind", "ro"}}, {Source: "/run/agent/pods/uid/shm", Destination: "/dev/shm"}},
	}
}

func nsPaths(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	m := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		m[n.Type] = n.Path
	}
	return m
}

func TestBuildSpecPodNamespacesAndLimits(t *testing.T) {
	s, err := BuildSpec(baseConfig(), "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	ns := nsPaths(s)
	if ns[specs.NetworkNamespace] != "/run/agent/pods/uid/ns/net" || ns[specs.UTSNamespace] == "" {
		t.Errorf("pod namespaces not joined: %v", ns)
	}
	if _, ok := ns[specs.PIDNamespace]; !ok {
		t.Errorf("no private pid namespace")
	}
	if _, ok := ns[specs.MountNamespace]; !ok {
		t.Errorf("no private mount namespace")
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 {
		t.Errorf("resources: %+v %+v", r.Memory, r.CPU)
	}
	if len(s.Linux.MaskedPaths) == 0 || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("runc's default masked/readonly paths missing")
	}
	var shm int
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" {
			shm++
			if m.Source != "/run/agent/pods/uid/shm" || m.Type != "bind" {
				t.Errorf("/dev/shm: %+v", m)
			}
		}
	}
	if shm != 1 {
		t.Errorf("/dev/shm mounted %d times", shm)
	}
	// runc's own converter accepts it.
	if _, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "x", Spec: s}); err != nil {
		t.Errorf("specconv: %v", err)
	}
}

func TestBuildSpecHostNamespacesAndPrivileged(t *testing.T) {
	cfg := baseConfig()
	cfg.Namespaces = protocol.Namespaces{Net: protocol.NamespaceHost, UTS: protocol.NamespaceHost, IPC: protocol.NamespaceHost, PID: protocol.NamespaceHost}
	cfg.Hostname = ""
	cfg.Privileged = true
	s, err := BuildSpec(cfg, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	ns := nsPaths(s)
	for _, typ := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.UTSNamespace, specs.IPCNamespace, specs.PIDNamespace} {
		if _, ok := ns[typ]; ok {
			t.Errorf("%s namespace should be the host's", typ)
		}
	}
	if len(s.Process.Capabilities.Bounding) != len(AllCapabilities) || len(s.Linux.MaskedPaths) != 0 {
		t.Errorf("privileged: caps %d masked %v", len(s.Process.Capabilities.Bounding), s.Linux.MaskedPaths)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && (m.Type != "sysfs" || slices.Contains(m.Options, "ro")) {
			t.Errorf("privileged /sys: %+v", m)
		}
	}
	if _, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "x", Spec: s}); err != nil {
		t.Errorf("specconv: %v", err)
	}
}

func TestBuildSpecErrors(t *testing.T) {
	cfg := baseConfig()
	cfg.Process.Args = nil
	if _, err := BuildSpec(cfg, "/r"); err == nil {
		t.Error("no command accepted")
	}
	cfg = baseConfig()
	cfg.Cgroup.Path = "relative"
	if _, err := BuildSpec(cfg, "/r"); err == nil {
		t.Error("relative cgroup accepted")
	}
}

func TestBuildSpecSysctls(t *testing.T) {
	cfg := baseConfig()
	cfg.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"}
	s, err := BuildSpec(cfg, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" || s.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
		t.Errorf("sysctls not in the spec: %v", s.Linux.Sysctl)
	}
	cfg.Namespaces.Net = protocol.NamespaceHost
	if _, err := BuildSpec(cfg, "/rootfs"); err == nil {
		t.Error("a net sysctl for a container in the host's network namespace was accepted")
	}
	cfg = baseConfig()
	cfg.Sysctls = map[string]string{"kernel.panic": "1"}
	if _, err := BuildSpec(cfg, "/rootfs"); err == nil {
		t.Error("a sysctl that is not namespaced was accepted")
	}
}

func TestProcessEnvTerm(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		tty  bool
		want []string
	}{
		{[]string{"PATH=/bin"}, false, []string{"PATH=/bin"}},
		{[]string{"PATH=/bin"}, true, []string{"PATH=/bin", "TERM=xterm"}},
		{nil, true, []string{"TERM=xterm"}},
		{[]string{"TERM=vt100"}, true, []string{"TERM=vt100"}},
	} {
		if got := processEnv(tc.env, tc.tty); !slices.Equal(got, tc.want) {
			t.Errorf("processEnv(%q, %v) = %q, want %q", tc.env, tc.tty, got, tc.want)
		}
	}
}
