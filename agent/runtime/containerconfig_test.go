package runtime

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/spec"
)

var busybox = &Image{Name: "localhost/busybox:latest", ID: "sha256:abc", Layers: []string{"/l/1"},
	Cmd: []string{"sh"}, Env: []string{"PATH=/bin", "FROM_IMAGE=1"}}

func parsePod(t *testing.T, m string) *corev1.Pod {
	t.Helper()
	pod, err := spec.Parse([]byte(m), spec.Source{Path: "/m/p.yaml", NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

var settings = &Settings{RunDir: "/run/agent", LogDir: "/var/log/pods", CgroupParent: "/agent", NodeName: "n1"}

func sandbox() *Sandbox {
	return &Sandbox{NetNS: "/ns/net", IPCNS: "/ns/ipc", UTSNS: "/ns/uts", Hosts: "/sb/hosts", Hostname: "/sb/hostname",
		ResolvConf: "/sb/resolv.conf", Shm: "/sb/shm", Volumes: map[string]string{"data": "/vol/data"}, PodIP: "10.77.0.5"}
}

func TestContainerConfig(t *testing.T) {
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 7
  volumes: [{name: data}]
  containers:
  - name: app
    image: localhost/busybox:latest
    args: ["echo", "$(GREETING) $(POD)", "$$(KEEP)", "$(UNDEFINED)"]
    env:
    - {name: GREETING, value: hello}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: COMBINED, value: "$(GREETING)-$(POD)"}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    resources:
      limits: {memory: 64Mi, cpu: 250m}
      requests: {cpu: 100m}
    volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
    securityContext:
      runAsUser: 1000
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [NET_RAW], add: [NET_ADMIN]}
`)
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, busybox, sandbox(), settings)
	if err != nil {
		t.Fatal(err)
	}
	uid := string(pod.UID)
	if cfg.ID != uid+"_app" || cfg.Pod.Name != "web" || cfg.Log.Dir != "/var/log/pods/prod_web_"+uid+"/app" {
		t.Errorf("identity: %s %+v %s", cfg.ID, cfg.Pod, cfg.Log.Dir)
	}
	if want := []string{"echo", "hello web", "$(KEEP)", "$(UNDEFINED)"}; !reflect.DeepEqual(cfg.Process.Args, want) {
		t.Errorf("args = %q, want %q (args replace the image's Cmd; the image has no Entrypoint)", cfg.Process.Args, want)
	}
	env := strings.Join(cfg.Process.Env, "\n")
	for _, want := range []string{"PATH=/bin", "FROM_IMAGE=1", "GREETING=hello", "POD=web", "COMBINED=hello-web", "IP=10.77.0.5", "HOSTNAME=web"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, env)
		}
	}
	if cfg.Process.UID != 1000 || cfg.Process.User != "1000" || !cfg.Process.NoNewPrivileges || !cfg.Rootfs.ReadOnly {
		t.Errorf("security: %+v readonly=%v", cfg.Process, cfg.Rootfs.ReadOnly)
	}
	caps := cfg.Process.Capabilities
	if slices.Contains(caps, "CAP_NET_RAW") || !slices.Contains(caps, "CAP_NET_ADMIN") || !slices.Contains(caps, "CAP_CHOWN") {
		t.Errorf("capabilities: %v", caps)
	}
	if cfg.Cgroup.Path != "/agent/burstable/pod-"+uid+"/app" || cfg.Cgroup.MemoryLimit != 64<<20 || cfg.Cgroup.CPUShares != 102 || cfg.Cgroup.CPUQuota != 25000 {
		t.Errorf("cgroup: %+v", cfg.Cgroup)
	}
	if strings.HasPrefix(cfg.Cgroup.MonitorPath, "/agent/pod-") {
		t.Errorf("the monitor's cgroup must not be inside the pod's: %s", cfg.Cgroup.MonitorPath)
	}
	if cfg.Restart.Policy != protocol.RestartOnFailure || cfg.Stop.GracePeriod.Seconds() != 7 {
		t.Errorf("restart/stop: %+v %+v", cfg.Restart, cfg.Stop)
	}
	if cfg.Namespaces.Net != "/ns/net" || cfg.Namespaces.PID != "" || cfg.Hostname != "web" {
		t.Errorf("namespaces: %+v %q", cfg.Namespaces, cfg.Hostname)
	}
	var dests []string
	for _, m := range cfg.Mounts {
		dests = append(dests, m.Destination)
		if m.Destination == "/data" && (m.Source != "/vol/data" || !slices.Contains(m.Options, "ro")) {
			t.Errorf("volume mount: %+v", m)
		}
	}
	if want := []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm", "/data"}; !reflect.DeepEqual(dests, want) {
		t.Errorf("mounts %v, want %v", dests, want)
	}
}

func TestContainerConfigCommandAndHostNamespaces(t *testing.T) {
	img := *busybox
	img.Entrypoint = []string{"/entry"}
	img.User = "app"
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: h}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  initContainers: [{name: init, image: x, command: ["true"]}]
  containers:
  - {name: a, image: x, command: [/bin/cmd, one], args: [two]}
  - {name: b, image: x, args: [two]}
  - {name: c, image: x, securityContext: {privileged: true}}
`)
	sb := sandbox()
	a, _ := ContainerConfig(pod, &pod.Spec.Containers[0], false, &img, sb, settings)
	b, _ := ContainerConfig(pod, &pod.Spec.Containers[1], false, &img, sb, settings)
	c, _ := ContainerConfig(pod, &pod.Spec.Containers[2], false, &img, sb, settings)
	in, _ := ContainerConfig(pod, &pod.Spec.InitContainers[0], true, &img, sb, settings)
	if !reflect.DeepEqual(a.Process.Args, []string{"/bin/cmd", "one", "two"}) ||
		!reflect.DeepEqual(b.Process.Args, []string{"/entry", "two"}) ||
		!reflect.DeepEqual(c.Process.Args, []string{"/entry", "sh"}) {
		t.Errorf("argv: %q %q %q", a.Process.Args, b.Process.Args, c.Process.Args)
	}
	if a.Process.User != "app" {
		t.Errorf("image user by name: %q, want the name for the monitor to resolve", a.Process.User)
	}
	want := protocol.Namespaces{Net: protocol.NamespaceHost, IPC: protocol.NamespaceHost, UTS: protocol.NamespaceHost, PID: protocol.NamespaceHost}
	if a.Namespaces != want || a.Hostname != "" {
		t.Errorf("host namespaces: %+v %q", a.Namespaces, a.Hostname)
	}
	if !c.Privileged {
		t.Error("privileged lost")
	}
	if in.Restart.Policy != protocol.RestartOnFailure {
		t.Errorf("init container under Always restarts OnFailure, got %s", in.Restart.Policy)
	}
}

// The user a container runs as: numbers known here, names left to the monitor;
// runAsNonRoot refuses what is root or cannot be verified, as kubelet does.
func TestContainerConfigUser(t *testing.T) {
	for _, tc := range []struct {
		name, imageUser, sc string
		user                string
		uid, gid            uint32
		err                 string
	}{
		{name: "image default is root", user: "", uid: 0, gid: 0},
		{name: "image user name", imageUser: "app", user: "app"},
		{name: "image user and group names", imageUser: "app:staff", user: "app:staff"},
		{name: "image numbers", imageUser: "1000:50", user: "1000:50", uid: 1000, gid: 50},
		{name: "runAsUser over a name", imageUser: "app:staff", sc: "runAsUser: 7", user: "7:staff", uid: 7},
		{name: "runAsUser and runAsGroup", imageUser: "app", sc: "{runAsUser: 7, runAsGroup: 8}", user: "7:8", uid: 7, gid: 8},
		{name: "nonRoot with a numeric user", imageUser: "1000", sc: "runAsNonRoot: true", user: "1000", uid: 1000},
		{name: "nonRoot with root", sc: "runAsNonRoot: true", err: "will run as root"},
		{name: "nonRoot with uid 0", imageUser: "0", sc: "runAsNonRoot: true", err: "will run as root"},
		{name: "nonRoot with a name", imageUser: "app", sc: "runAsNonRoot: true", err: `non-numeric user "app"`},
		{name: "nonRoot with a name and runAsUser", imageUser: "app", sc: "{runAsNonRoot: true, runAsUser: 5}", user: "5", uid: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := *busybox
			img.User = tc.imageUser
			sc := ""
			if tc.sc != "" {
				sc = "\n    securityContext: " + tc.sc
				if !strings.HasPrefix(tc.sc, "{") {
					sc = "\n    securityContext: {" + tc.sc + "}"
				}
			}
			pod := parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: x"+sc+"\n")
			cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, &img, sandbox(), settings)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := cfg.Process; p.User != tc.user || p.UID != tc.uid || p.GID != tc.gid {
				t.Errorf("user %q %d:%d, want %q %d:%d", p.User, p.UID, p.GID, tc.user, tc.uid, tc.gid)
			}
		})
	}
}

func TestContainerConfigRunAsNonRoot(t *testing.T) {
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {runAsNonRoot: true}
  containers: [{name: a, image: x}]
`)
	_, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, busybox, sandbox(), settings)
	if err == nil || !strings.Contains(err.Error(), "runAsNonRoot") {
		t.Errorf("err = %v", err)
	}
}

func TestMilliCPU(t *testing.T) {
	if MilliCPUToShares(0) != 2 || MilliCPUToShares(1) != 2 || MilliCPUToShares(1000) != 1024 || MilliCPUToShares(500) != 512 {
		t.Error("shares")
	}
	if MilliCPUToQuota(0, 100000) != 0 || MilliCPUToQuota(5, 100000) != 1000 || MilliCPUToQuota(1500, 100000) != 150000 {
		t.Error("quota")
	}
}

func TestResolvConf(t *testing.T) {
	host := "nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch lan\noptions edns0\n"
	pod := parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: x}]\n")
	got, _ := ResolvConf(pod, host)
	if got != "nameserver 9.9.9.9\nsearch lan\noptions edns0\n" {
		t.Errorf("ClusterFirst: %q", got)
	}
	pod = parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  dnsPolicy: None\n  dnsConfig: {nameservers: [1.1.1.1], options: [{name: ndots, value: \"2\"}]}\n  containers: [{name: a, image: x}]\n")
	got, _ = ResolvConf(pod, host)
	if got != "nameserver 1.1.1.1\noptions ndots:2\n" {
		t.Errorf("None: %q", got)
	}
}

// A subPath is handed to the monitor unresolved (it resolves it beneath the volume at
// every start), and the termination message file is a host file in the sandbox,
// mounted last.
func TestContainerConfigSubPathAndTerminationLog(t *testing.T) {
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes: [{name: data}]
  containers:
  - name: app
    image: localhost/busybox:latest
    volumeMounts: [{name: data, mountPath: /cfg, subPath: a/b}]
`)
	sb := sandbox()
	sb.Dir = "/run/agent/pods/" + string(pod.UID)
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, busybox, sb, settings)
	if err != nil {
		t.Fatal(err)
	}
	host := sb.Dir + "/containers/app/termination-log"
	if cfg.Termination.HostPath != host || cfg.Termination.MessagePath != "/dev/termination-log" {
		t.Errorf("termination: %+v", cfg.Termination)
	}
	n := len(cfg.Mounts)
	if last := cfg.Mounts[n-1]; last.Source != host || last.Destination != "/dev/termination-log" || slices.Contains(last.Options, "ro") {
		t.Errorf("termination log mount: %+v", last)
	}
	if sub := cfg.Mounts[n-2]; sub.Source != "/vol/data" || sub.SubPath != "a/b" || sub.Destination != "/cfg" {
		t.Errorf("subPath mount: %+v", sub)
	}
}

// What a container can write lands on disk under root, never in run-dir (a
// tmpfs): its runs under <root>/containers/<id>/runs, its termination log in the
// pod's data directory. A pod an older agentd set up (no DataDir in its record)
// keeps its termination logs in its sandbox, and without a root the runs stay in
// the monitor's state directory (no RunsDir).
func TestContainerConfigWritablePathsOnDisk(t *testing.T) {
	pod := parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: x}]\n")
	uid := string(pod.UID)
	c := &pod.Spec.Containers[0]
	withRoot := *settings
	withRoot.Root = "/var/lib/agent"
	for _, tc := range []struct {
		name            string
		s               *Settings
		dataDir         string
		runsDir, termTo string
	}{
		{name: "root and a data dir", s: &withRoot, dataDir: "/var/lib/agent/pods/" + uid,
			runsDir: "/var/lib/agent/containers/" + uid + "_app/runs", termTo: "/var/lib/agent/pods/" + uid + "/containers/app/termination-log"},
		{name: "a pod recorded by an older agentd", s: &withRoot,
			runsDir: "/var/lib/agent/containers/" + uid + "_app/runs", termTo: "/run/agent/pods/" + uid + "/containers/app/termination-log"},
		{name: "no root", s: settings, dataDir: "/var/lib/agent/pods/" + uid,
			termTo: "/var/lib/agent/pods/" + uid + "/containers/app/termination-log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandbox()
			sb.Dir, sb.DataDir = "/run/agent/pods/"+uid, tc.dataDir
			cfg, err := ContainerConfig(pod, c, false, busybox, sb, tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Rootfs.RunsDir != tc.runsDir {
				t.Errorf("RunsDir = %q, want %q", cfg.Rootfs.RunsDir, tc.runsDir)
			}
			if tc.runsDir != "" {
				if err := protocol.CheckRunsDir(cfg.Rootfs.RunsDir); err != nil {
					t.Error(err)
				}
			}
			if cfg.Termination.HostPath != tc.termTo {
				t.Errorf("termination log = %q, want %q", cfg.Termination.HostPath, tc.termTo)
			}
		})
	}
}

// launch creates a config's RunsDir only when it is the container's own directory
// under root: a config that names anything else is refused before anything is made.
func TestCheckRunsDir(t *testing.T) {
	r := &Runtime{cfg: Config{Settings: Settings{Root: "/var/lib/agent", RunDir: "/run/agent"}}}
	for runsDir, ok := range map[string]bool{
		"":                                        true, // a config without one: the state dir
		"/var/lib/agent/containers/u_c/runs":      true,
		"/var/lib/agent/containers/u_d/runs":      false, // another container's
		"/var/lib/agent/containers/u_c":           false,
		"/var/lib/agent/containers/u_c/runs/":     false,
		"/var/lib/agent/containers/x/../u_c/runs": false,
		"var/lib/agent/containers/u_c/runs":       false,
		"/run/agent/monitors/u_c/runs":            false,
	} {
		err := r.checkRunsDir(&protocol.ContainerConfig{ID: "u_c", Rootfs: protocol.Rootfs{RunsDir: runsDir}})
		if (err == nil) != ok {
			t.Errorf("checkRunsDir(%q) = %v, want ok=%v", runsDir, err, ok)
		}
	}
	if got := ContainerRunsDir("/var/lib/agent", "u_c"); got != "/var/lib/agent/containers/u_c/runs" {
		t.Errorf("ContainerRunsDir = %s", got)
	}
}

// cpu.shares are kubelet's: the request's, and 2 (its minimum, not the kernel's
// 1024) without one; a limit alone is also the request.
func TestCgroupCPUShares(t *testing.T) {
	for _, c := range []struct {
		resources string
		shares    uint64
		quota     int64
	}{
		{"{}", 2, 0},
		{"{requests: {memory: 10Mi}}", 2, 0},
		{"{requests: {cpu: 100m}}", 102, 0},
		{"{limits: {cpu: 500m}}", 512, 50000},
		{"{requests: {cpu: 1m}}", 2, 0},
	} {
		pod := parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: localhost/busybox, resources: "+c.resources+"}\n")
		cg := Cgroup(&pod.Spec.Containers[0], "/agent", pod)
		if cg.CPUShares != c.shares || cg.CPUQuota != c.quota {
			t.Errorf("resources %s: shares %d quota %d, want %d %d", c.resources, cg.CPUShares, cg.CPUQuota, c.shares, c.quota)
		}
	}
}

// Pods' cgroups are in kubelet's QoS tiers with kubelet's pod-level resources
// (ResourceConfigForPod), and the tiers' cpu.shares are kubelet's.
func TestPodCgroupQOS(t *testing.T) {
	for _, c := range []struct {
		name, containers string
		tier             string
		shares           uint64
		quota, memory    int64
	}{
		{"best effort", "[{name: a, image: i}, {name: b, image: i}]", "/agent/besteffort/", 2, 0, 0},
		{"burstable, one without limits", "[{name: a, image: i, resources: {requests: {cpu: 250m}, limits: {cpu: 500m, memory: 64Mi}}}, {name: b, image: i, resources: {requests: {cpu: 250m}}}]", "/agent/burstable/", 512, 0, 0},
		{"burstable, all limited", "[{name: a, image: i, resources: {requests: {cpu: 100m}, limits: {cpu: 500m, memory: 64Mi}}}, {name: b, image: i, resources: {limits: {cpu: 500m, memory: 32Mi}}}]", "/agent/burstable/", 614, 100000, 96 << 20},
		{"guaranteed", "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 64Mi}}}]", "/agent/", 1024, 100000, 64 << 20},
	} {
		pod := parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: u1}\nspec:\n  containers: "+c.containers+"\n")
		if got, want := Cgroup(&pod.Spec.Containers[0], "/agent", pod).Path, c.tier+"pod-u1/a"; got != want {
			t.Errorf("%s: container cgroup %s, want %s", c.name, got, want)
		}
		res := PodResources(pod)
		if res.CpuShares != c.shares || res.CpuQuota != c.quota || res.Memory != c.memory || !res.SkipDevices {
			t.Errorf("%s: pod resources shares %d quota %d memory %d, want %d %d %d", c.name, res.CpuShares, res.CpuQuota, res.Memory, c.shares, c.quota, c.memory)
		}
	}

	pod := func(yaml string) *corev1.Pod {
		return parsePod(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: "+yaml+"\n")
	}
	burstable, bestEffort := QOSTierShares([]*corev1.Pod{
		pod("[{name: a, image: i, resources: {requests: {cpu: 200m}}}]"),
		pod("[{name: a, image: i, resources: {requests: {cpu: 300m, memory: 1Mi}}}]"),
		pod("[{name: a, image: i}]"),
		pod("[{name: a, image: i, resources: {limits: {cpu: 2, memory: 1Gi}}}]"),
	})
	if burstable != 512 || bestEffort != 2 {
		t.Errorf("tier shares: burstable %d besteffort %d, want 512 (500m of Burstable requests) and 2", burstable, bestEffort)
	}
	if burstable, _ := QOSTierShares(nil); burstable != 2 {
		t.Errorf("burstable tier without pods: %d shares, want kubelet's minimum 2", burstable)
	}
}

func TestContainerConfigStdinTty(t *testing.T) {
	pod := parsePod(t, `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: plain, image: localhost/busybox:latest}
  - {name: interactive, image: localhost/busybox:latest, stdin: true, stdinOnce: true, tty: true}
  - {name: once-without-stdin, image: localhost/busybox:latest, stdinOnce: true}
`)
	for i, want := range []protocol.Process{{}, {Stdin: true, StdinOnce: true, Tty: true}, {}} {
		cfg, err := ContainerConfig(pod, &pod.Spec.Containers[i], false, busybox, sandbox(), settings)
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Process
		if p.Stdin != want.Stdin || p.StdinOnce != want.StdinOnce || p.Tty != want.Tty {
			t.Errorf("%s: stdin %v stdinOnce %v tty %v, want %+v", cfg.Name, p.Stdin, p.StdinOnce, p.Tty, want)
		}
	}
}
