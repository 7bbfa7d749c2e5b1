package record

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func sandboxConfig(mod func(*runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1", Attempt: 2},
		Hostname:     "web-host",
		LogDirectory: "/var/log/pods/prod_web_u-1",
		Labels:       map[string]string{"app": "web"},
		Annotations:  map[string]string{"note": "x"},
	}
	if mod != nil {
		mod(cfg)
	}
	return cfg
}

func nsOptions(net, pid, ipc runtimeapi.NamespaceMode) *runtimeapi.LinuxPodSandboxConfig {
	return &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: net, Pid: pid, Ipc: ipc}}}
}

func TestSandboxPod(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      string
		cfg     *runtimeapi.PodSandboxConfig
		wantErr string
		check   func(t *testing.T, p *corev1.Pod)
	}{
		{name: "names, labels, annotations and hostname as given", cfg: sandboxConfig(nil), check: func(t *testing.T, p *corev1.Pod) {
			if p.Name != "web" || p.Namespace != "prod" || string(p.UID) != testID || p.Spec.Hostname != "web-host" {
				t.Errorf("pod %s/%s uid %s hostname %q", p.Namespace, p.Name, p.UID, p.Spec.Hostname)
			}
			if p.Labels["app"] != "web" || p.Annotations["note"] != "x" || p.Annotations[AnnotationConfigSource] != SourceCRI || p.Annotations[AnnotationSandboxID] != testID {
				t.Errorf("labels %v annotations %v", p.Labels, p.Annotations)
			}
			if p.Spec.RestartPolicy != corev1.RestartPolicyNever || len(p.Spec.Containers) != 0 || len(p.Spec.Volumes) != 0 {
				t.Errorf("spec %+v: want restartPolicy Never, no containers, no volumes", p.Spec)
			}
			if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC || p.Spec.DNSPolicy != corev1.DNSDefault {
				t.Errorf("namespaces or DNS policy: %+v", p.Spec)
			}
		}},
		{name: "invalid names are replaced", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) {
			c.Metadata.Name, c.Metadata.Namespace = "../../etc", "A_B"
		}), check: func(t *testing.T, p *corev1.Pod) {
			if p.Name != "cri-"+testID[:12] || p.Namespace != "default" {
				t.Errorf("pod %s/%s, want default/cri-%s", p.Namespace, p.Name, testID[:12])
			}
		}},
		{name: "host namespaces", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux = nsOptions(runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_NODE)
		}), check: func(t *testing.T, p *corev1.Pod) {
			if !p.Spec.HostNetwork || !p.Spec.HostPID || !p.Spec.HostIPC || p.Spec.Hostname != "" {
				t.Errorf("spec %+v: want host network, PID and IPC, and the host's hostname", p.Spec)
			}
		}},
		{name: "DNS config", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"svc.local"}, Options: []string{"ndots:5", "edns0"}}
		}), check: func(t *testing.T, p *corev1.Pod) {
			d := p.Spec.DNSConfig
			if p.Spec.DNSPolicy != corev1.DNSNone || d == nil || d.Nameservers[0] != "10.0.0.10" || d.Searches[0] != "svc.local" ||
				len(d.Options) != 2 || d.Options[0].Name != "ndots" || *d.Options[0].Value != "5" || d.Options[1].Name != "edns0" || d.Options[1].Value != nil {
				t.Errorf("DNS policy %s config %+v", p.Spec.DNSPolicy, d)
			}
		}},
		{name: "sysctls", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100"}}
		}), check: func(t *testing.T, p *corev1.Pod) {
			sc := p.Spec.SecurityContext
			if sc == nil || len(sc.Sysctls) != 2 || sc.Sysctls[0] != (corev1.Sysctl{Name: "fs.mqueue.msg_max", Value: "100"}) {
				t.Errorf("security context %+v, want the two sysctls in name order", sc)
			}
		}},
		{name: "bad ID", id: "../x", cfg: sandboxConfig(nil), wantErr: "64 hex"},
		{name: "uppercase ID", id: strings.ToUpper(testID), cfg: sandboxConfig(nil), wantErr: "64 hex"},
		{name: "no metadata", cfg: &runtimeapi.PodSandboxConfig{}, wantErr: "no metadata"},
		{name: "relative log directory", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log" }), wantErr: "log directory"},
		{name: "unclean log directory", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/../etc" }), wantErr: "log directory"},
		{name: "root log directory", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/" }), wantErr: "log directory"},
		{name: "bad hostname", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "a/b" }), wantErr: "hostname"},
		{name: "network namespace of a container", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux = nsOptions(runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_POD)
		}), wantErr: "network namespace mode"},
		{name: "PID namespace TARGET", cfg: sandboxConfig(func(c *runtimeapi.PodSandboxConfig) {
			c.Linux = nsOptions(runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_TARGET, runtimeapi.NamespaceMode_POD)
		}), wantErr: "TARGET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id
			if id == "" {
				id = testID
			}
			p, err := SandboxPod(id, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SandboxPod = %v, want an ErrInvalid saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func TestCheckLogPath(t *testing.T) {
	for _, tc := range []struct {
		dir, path string
		ok        bool
	}{
		{"/var/log/pods/x", "c/0.log", true},
		{"/var/log/pods/x", "0.log", true},
		{"/var/log/pods/x", "", true},
		{"", "", true},
		{"", "c/0.log", false},
		{"/var/log/pods/x", "../y/0.log", false},
		{"/var/log/pods/x", "c/../../0.log", false},
		{"/var/log/pods/x", "/etc/passwd", false},
		{"/var/log/pods/x", "c//0.log", false},
		{"/var/log/pods/x", ".", false},
	} {
		if err := CheckLogPath(tc.dir, tc.path); (err == nil) != tc.ok {
			t.Errorf("CheckLogPath(%q, %q) = %v, want ok %v", tc.dir, tc.path, err, tc.ok)
		}
	}
}

func TestValidateContainer(t *testing.T) {
	const sb, id = testID, "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	good := func() *Container {
		return &Container{ID: id, SandboxID: sb, Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, LogPath: "app/0.log",
			Config: &protocol.ContainerConfig{ID: sb + "_" + ContainerName(id), Name: ContainerName(id), Pod: protocol.PodRef{UID: sb},
				Log:    protocol.LogConfig{Root: "/var/log/pods/x", File: "app/0.log"},
				Mounts: []protocol.Mount{{Source: "/data", Destination: "/data"}}}}
	}
	for _, tc := range []struct {
		name   string
		mod    func(c *Container)
		fileID string
		ok     bool
	}{
		{"as written", func(*Container) {}, id, true},
		{"another ID in the file", func(*Container) {}, sb, false},
		{"ID not hex", func(c *Container) { c.ID = "../../x" }, "../../x", false},
		{"another sandbox", func(c *Container) { c.SandboxID = id }, id, false},
		{"monitor of another pod", func(c *Container) { c.Config.Pod.UID = id }, id, false},
		{"log path leaves the directory", func(c *Container) { c.LogPath, c.Config.Log.File = "../../etc/x", "../../etc/x" }, id, false},
		{"monitor log root elsewhere", func(c *Container) { c.Config.Log.Root = "/etc" }, id, false},
		{"relative mount source", func(c *Container) { c.Config.Mounts[0].Source = "data" }, id, false},
		{"no config", func(c *Container) { c.Config = nil }, id, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(c)
			if err := ValidateContainer(sb, tc.fileID, c, "/var/log/pods/x"); (err == nil) != tc.ok {
				t.Errorf("ValidateContainer = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestValidateSandbox: a sandbox record read back at restore is used only when it is for its directory's ID and
// holds a config RunPodSandbox would accept: a planted record naming another sandbox or a log directory
// with ".." is refused.
func TestValidateSandbox(t *testing.T) {
	good := func() *Sandbox { return &Sandbox{ID: testID, Config: sandboxConfig(nil), State: StateReady} }
	for _, tc := range []struct {
		name string
		id   string
		mod  func(*Sandbox)
		ok   bool
	}{
		{"as written", testID, func(*Sandbox) {}, true},
		{"not ready", testID, func(s *Sandbox) { s.State = StateNotReady }, true},
		{"another sandbox's", testID, func(s *Sandbox) { s.ID = strings.Repeat("a", 64) }, false},
		{"directory not an ID", "../../x", func(s *Sandbox) { s.ID = "../../x" }, false},
		{"unknown state", testID, func(s *Sandbox) { s.State = "RUNNING" }, false},
		{"log directory escaping", testID, func(s *Sandbox) { s.Config.LogDirectory = "/var/log/../../etc" }, false},
		{"no config", testID, func(s *Sandbox) { s.Config = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.mod(s)
			if err := ValidateSandbox(tc.id, s); (err == nil) != tc.ok {
				t.Errorf("ValidateSandbox = %v, want ok %v", err, tc.ok)
			}
		})
	}
	if err := ValidateSandbox(testID, nil); err == nil {
		t.Errorf("ValidateSandbox(nil) passes")
	}
}
