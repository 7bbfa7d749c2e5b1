package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// recordRuntime is a runtime over temporary directories with no monitor binary:
// what the tests call must refuse before it would run one.
func recordRuntime(t *testing.T) *Runtime {
	dir := t.TempDir()
	return &Runtime{cfg: Config{
		Settings:    Settings{Root: filepath.Join(dir, "root"), RunDir: filepath.Join(dir, "run"), LogDir: filepath.Join(dir, "logs"), CgroupParent: "/agent-recordtest"},
		MonitorPath: filepath.Join(dir, "no-such-monitor"),
	}, log: logr.Discard()}
}

// madeConfig is a config as agentd makes it under r's settings.
func madeConfig(t *testing.T, r *Runtime) *protocol.ContainerConfig {
	t.Helper()
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, uid: 5f0c1b2e-7d1a-4c2b-9a8e-0e6f1d2c3b4a}
spec:
  containers: [{name: app, image: localhost/busybox:latest}]
`)
	img := *busybox
	img.Layers = []string{filepath.Join(r.cfg.Root, "images", "layers", "sha256-1")}
	sb := sandbox()
	sb.Dir = r.sandboxDir(string(pod.UID))
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, &img, sb, r.Settings())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestCheckConfigAcceptsWhatAgentdMakes: whatever ContainerConfig makes passes
// checkConfig; when one of them changes, the other must follow.
func TestCheckConfigAcceptsWhatAgentdMakes(t *testing.T) {
	r := recordRuntime(t)
	cfg := madeConfig(t, r)
	if err := r.checkConfig(cfg.ID, cfg); err != nil {
		t.Fatalf("checkConfig refuses what ContainerConfig made: %v\n%+v", err, cfg)
	}
	cri := *cfg // a CRI client named its log file
	cri.Log.File = "prod_web_" + cfg.Pod.UID + "/app_0.log"
	if err := r.checkConfig(cri.ID, &cri); err != nil {
		t.Errorf("checkConfig refuses a config with a log file: %v", err)
	}
	older := *cfg // written before Log.Root and Termination.HostPath existed
	older.Log.Root, older.Termination.HostPath = "", ""
	if err := r.checkConfig(older.ID, &older); err != nil {
		t.Errorf("checkConfig refuses an older agentd's config: %v", err)
	}
}

// A record may name its container's cgroup in any QoS tier: it does not say the
// pod's class, and an agentd before the tiers put every pod directly under
// cgroup-parent (the Guaranteed place).
func TestRecordCgroupInAnyTier(t *testing.T) {
	r := recordRuntime(t)
	cfg := madeConfig(t, r)
	for _, tier := range []string{"", "burstable/", "besteffort/"} {
		cfg.Cgroup.Path = "/agent-recordtest/" + tier + "pod-" + cfg.Pod.UID + "/" + cfg.Name
		if err := r.checkConfig(cfg.ID, cfg); err != nil {
			t.Errorf("cgroup %s: %v", cfg.Cgroup.Path, err)
		}
	}
}

// TestRemovalRefusesUnsafeNames: Cleanup and Remove refuse ids that are not one
// path component, and monitor records that name cgroups, a libcontainer state
// root or log and termination paths agentd would not have given that id; the
// record stays for the operator.
func TestRemovalRefusesUnsafeNames(t *testing.T) {
	ctx := context.Background()
	for _, id := range []string{"../x", "a/b", "..", ".", "", "/abs", "a\x00b"} {
		r := recordRuntime(t)
		if _, err := r.Cleanup(ctx, id); !errors.Is(err, ErrUnsafeName) {
			t.Errorf("Cleanup(%q) = %v, want ErrUnsafeName", id, err)
		}
		if err := r.Remove(id); !errors.Is(err, ErrUnsafeName) {
			t.Errorf("Remove(%q) = %v, want ErrUnsafeName", id, err)
		}
	}

	outside := t.TempDir()
	for _, tc := range []struct {
		name   string
		change func(*protocol.ContainerConfig)
		// removable: Remove takes the state dir (its own path) but leaves the
		// cgroups the record names alone: a changed cgroup-parent looks like this.
		removable bool
	}{
		{name: "another id", change: func(c *protocol.ContainerConfig) { c.ID = "other_app" }},
		{name: "id with a slash", change: func(c *protocol.ContainerConfig) { c.ID = "../../x" }},
		{name: "pod UID with a slash", change: func(c *protocol.ContainerConfig) { c.Pod.UID = "../x" }},
		{name: "container name of another id", change: func(c *protocol.ContainerConfig) { c.Name = "other" }},
		{name: "libcontainer state elsewhere", change: func(c *protocol.ContainerConfig) { c.StateRoot = outside }},
		{name: "libcontainer state root with ..", change: func(c *protocol.ContainerConfig) { c.StateRoot += "/../../.." }},
		{name: "log dir elsewhere", change: func(c *protocol.ContainerConfig) { c.Log.Dir = outside }},
		{name: "log root elsewhere", change: func(c *protocol.ContainerConfig) { c.Log.Root = "/" }},
		{name: "absolute log file", change: func(c *protocol.ContainerConfig) { c.Log.File = "/etc/shadow" }},
		{name: "log file with ..", change: func(c *protocol.ContainerConfig) { c.Log.File = "../../etc/shadow" }},
		{name: "unclean log file", change: func(c *protocol.ContainerConfig) { c.Log.File = "a/../b.log" }},
		{name: "log file without a root", change: func(c *protocol.ContainerConfig) { c.Log.Root, c.Log.File = "", "a.log" }},
		{name: "termination log elsewhere", change: func(c *protocol.ContainerConfig) { c.Termination.HostPath = filepath.Join(outside, "f") }},
		{name: "relative layer", change: func(c *protocol.ContainerConfig) { c.Rootfs.Layers = []string{"layers/1"} }},
		{name: "layer with ..", change: func(c *protocol.ContainerConfig) { c.Rootfs.Layers = []string{c.Rootfs.Layers[0] + "/../../../.."} }},
		{name: "cgroup outside the parent", change: func(c *protocol.ContainerConfig) { c.Cgroup.Path = "/system.slice" }, removable: true},
		{name: "cgroup escaping the parent", change: func(c *protocol.ContainerConfig) { c.Cgroup.Path += "/../../../system.slice" }, removable: true},
		{name: "relative cgroup", change: func(c *protocol.ContainerConfig) { c.Cgroup.Path = "system.slice" }, removable: true},
		{name: "cgroup in a tier kubelet has not", change: func(c *protocol.ContainerConfig) {
			c.Cgroup.Path = "/agent-recordtest/guaranteed/pod-" + c.Pod.UID + "/" + c.Name
		}, removable: true},
		{name: "cgroup of another pod in a tier", change: func(c *protocol.ContainerConfig) {
			c.Cgroup.Path = "/agent-recordtest/burstable/pod-other/" + c.Name
		}, removable: true},
		{name: "monitor cgroup is the root", change: func(c *protocol.ContainerConfig) { c.Cgroup.MonitorPath = "/" }, removable: true},
		{name: "runs elsewhere", change: func(c *protocol.ContainerConfig) { c.Rootfs.RunsDir = outside }, removable: true},
		{name: "runs under another root", change: func(c *protocol.ContainerConfig) {
			c.Rootfs.RunsDir = ContainerRunsDir(outside, c.ID)
		}, removable: true},
		{name: "monitor cgroup of another monitor", change: func(c *protocol.ContainerConfig) { c.Cgroup.MonitorPath += "x" }, removable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := recordRuntime(t)
			cfg := madeConfig(t, r)
			id := cfg.ID
			tc.change(cfg)
			if err := r.checkConfig(id, cfg); !errors.Is(err, ErrForeignRecord) && !errors.Is(err, ErrUnsafeName) {
				t.Fatalf("checkConfig = %v, want ErrForeignRecord", err)
			}
			dir := r.stateDir(id)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := protocol.WriteConfig(dir, cfg); err != nil {
				t.Fatal(err)
			}
			// A journal of a monitor long gone: without the check, Cleanup would
			// run `agent-monitor kill` on this record.
			if err := protocol.WriteJournal(dir, &protocol.Journal{ID: id, MonitorPid: 1 << 30, State: protocol.StateRunning}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Cleanup(ctx, id); !errors.Is(err, ErrForeignRecord) {
				t.Errorf("Cleanup = %v, want ErrForeignRecord", err)
			}
			if _, err := os.Stat(filepath.Join(dir, protocol.ConfigFile)); err != nil {
				t.Errorf("Cleanup touched the record: %v", err)
			}
			var canary string
			if rd := cfg.Rootfs.RunsDir; rd != "" && rd != r.runsDir(id) {
				canary = filepath.Join(rd, "run-1", "data")
				if err := os.MkdirAll(filepath.Dir(canary), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(canary, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := r.Remove(id)
			_, statErr := os.Stat(dir)
			switch {
			case tc.removable && (err != nil || !os.IsNotExist(statErr)):
				t.Errorf("Remove = %v (state dir: %v), want its own state dir removed", err, statErr)
			case !tc.removable && !errors.Is(err, ErrForeignRecord):
				t.Errorf("Remove = %v, want ErrForeignRecord", err)
			case !tc.removable && statErr != nil:
				t.Errorf("Remove did not leave the record for the operator: %v", statErr)
			}
			if _, err := os.Stat(outside); err != nil {
				t.Errorf("the directory outside agentd's is gone: %v", err)
			}
			if canary != "" {
				if _, err := os.Stat(canary); err != nil {
					t.Errorf("the runs directory the record names outside root lost its files: %v", err)
				}
			}
		})
	}
}

func TestCheckDirs(t *testing.T) {
	good := Config{Settings: Settings{Root: "/var/lib/agent", RunDir: "/run/agent", LogDir: "/var/log/pods", CgroupParent: "/agent"}}
	if err := checkDirs(&good); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Config){
		"relative root":      func(c *Config) { c.Root = "var/lib/agent" },
		"relative run-dir":   func(c *Config) { c.RunDir = "run" },
		"empty log-dir":      func(c *Config) { c.LogDir = "" },
		"relative cgroup":    func(c *Config) { c.CgroupParent = "agent" },
		"cgroup root":        func(c *Config) { c.CgroupParent = "/" },
		"cgroup with ..":     func(c *Config) { c.CgroupParent = "/agent/../x" },
		"cgroup not cleaned": func(c *Config) { c.CgroupParent = "/agent/" },
	} {
		c := good
		change(&c)
		if err := checkDirs(&c); err == nil {
			t.Errorf("%s: checkDirs accepted %+v", name, c)
		}
		if _, err := New(c, logr.Discard()); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestCheckSandbox: a pod record's sandbox passes only when it names what
// EnsureSandbox makes for that pod (or an older agentd made: hosts in run-dir, no
// DataDir); any other path, which a restarted container would get as a mount, is
// a foreign record.
func TestCheckSandbox(t *testing.T) {
	r := recordRuntime(t)
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, uid: 5f0c1b2e-7d1a-4c2b-9a8e-0e6f1d2c3b4a}
spec:
  containers: [{name: app, image: localhost/busybox:latest}]
  volumes:
  - {name: data, emptyDir: {}}
  - {name: host, hostPath: {path: /srv/data}}
  - {name: info, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}
`)
	uid := string(pod.UID)
	made := func() *Sandbox {
		dir, data := r.sandboxDir(uid), r.dataDir(uid)
		return &Sandbox{Dir: dir, DataDir: data, Hosts: filepath.Join(data, "hosts"),
			Hostname: filepath.Join(dir, "hostname"), ResolvConf: filepath.Join(dir, "resolv.conf"), Shm: filepath.Join(dir, "shm"),
			NetNS: filepath.Join(dir, "ns", "net"), IPCNS: filepath.Join(dir, "ns", "ipc"), UTSNS: filepath.Join(dir, "ns", "uts"),
			Volumes: map[string]string{"data": filepath.Join(r.volumeDir(uid), "data"), "host": "/srv/data",
				"info": filepath.Join(r.volumeDir(uid), "info")}}
	}
	if err := r.CheckSandbox(pod, made()); err != nil {
		t.Fatalf("CheckSandbox refuses what EnsureSandbox makes: %v", err)
	}
	older := made()
	older.DataDir, older.Hosts = "", filepath.Join(older.Dir, "hosts")
	if err := r.CheckSandbox(pod, older); err != nil {
		t.Errorf("CheckSandbox refuses an older agentd's sandbox: %v", err)
	}
	for name, change := range map[string]func(*Sandbox){
		"sandbox dir elsewhere":         func(s *Sandbox) { s.Dir = "/etc" },
		"data dir elsewhere":            func(s *Sandbox) { s.DataDir = "/etc" },
		"hosts is a host file":          func(s *Sandbox) { s.Hosts = "/etc/shadow" },
		"resolv.conf elsewhere":         func(s *Sandbox) { s.ResolvConf = "/etc/resolv.conf" },
		"shm is the host's":             func(s *Sandbox) { s.Shm = "/dev/shm" },
		"host's network namespace":      func(s *Sandbox) { s.NetNS = "/proc/1/ns/net" },
		"emptyDir is the host root":     func(s *Sandbox) { s.Volumes["data"] = "/" },
		"hostPath not the spec's":       func(s *Sandbox) { s.Volumes["host"] = "/" },
		"downwardAPI volume elsewhere":  func(s *Sandbox) { s.Volumes["info"] = "/etc" },
		"volume the spec does not have": func(s *Sandbox) { s.Volumes["extra"] = "/" },
	} {
		sb := made()
		change(sb)
		if err := r.CheckSandbox(pod, sb); !errors.Is(err, ErrForeignRecord) {
			t.Errorf("%s: CheckSandbox = %v, want ErrForeignRecord", name, err)
		}
	}
	bad := pod.DeepCopy()
	bad.UID = "../x"
	if err := r.CheckSandbox(bad, made()); !errors.Is(err, ErrUnsafeName) {
		t.Errorf("CheckSandbox of UID ../x = %v, want ErrUnsafeName", err)
	}
}
