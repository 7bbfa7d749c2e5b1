package agent

import (
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/cri/record"
)

func TestCRIStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &record.Container{ID: testSandboxID, CreatedAt: t0, LogPath: "app/0.log", Image: "busybox", ImageID: "sha256:1",
		Config: &protocol.ContainerConfig{Log: protocol.LogConfig{Root: "/logs/p", File: "app/0.log"}}}
	started := *c
	started.StartedOnce = true
	run := protocol.Run{StartedAt: t0.Add(time.Second)}
	exited := run
	exited.Exit = &protocol.Exit{ExitCode: 3, Reason: protocol.ReasonError, FinishedAt: t0.Add(2 * time.Second)}
	for _, tc := range []struct {
		name     string
		c        *record.Container
		j        *protocol.Journal
		want     runtimeapi.ContainerState
		code     int32
		reason   string
		started  bool
		finished bool
	}{
		{"created", c, nil, runtimeapi.ContainerState_CONTAINER_CREATED, 0, "", false, false},
		{"being created by its monitor", &started, &protocol.Journal{State: protocol.StateCreating}, runtimeapi.ContainerState_CONTAINER_RUNNING, 0, "", false, false},
		{"running", &started, &protocol.Journal{State: protocol.StateRunning, Runs: []protocol.Run{run}}, runtimeapi.ContainerState_CONTAINER_RUNNING, 0, "", true, false},
		{"exited", &started, &protocol.Journal{State: protocol.StateExited, Runs: []protocol.Run{exited}}, runtimeapi.ContainerState_CONTAINER_EXITED, 3, "Error", true, true},
		{"started, monitor gone", &started, nil, runtimeapi.ContainerState_CONTAINER_EXITED, 255, protocol.ReasonMonitorLost, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := criStatus(tc.c, tc.j)
			if st.State != tc.want || st.ExitCode != tc.code || st.Reason != tc.reason || (st.StartedAt != 0) != tc.started || (st.FinishedAt != 0) != tc.finished {
				t.Errorf("criStatus = %v", st)
			}
			if st.LogPath != "/logs/p/app/0.log" || st.ImageRef != "sha256:1" || st.CreatedAt != t0.UnixNano() {
				t.Errorf("criStatus = %v: log path, image or creation time", st)
			}
		})
	}
}

func TestCRIContainerConfig(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "default"}, LogDirectory: "/logs/p"}
	pod, err := record.SandboxPod(testSandboxID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sb := &runtime.Sandbox{Dir: "/run/agent/pods/" + testSandboxID, Hosts: "/x/hosts", Hostname: "/x/hostname", ResolvConf: "/x/resolv.conf", Shm: "/x/shm", NetNS: "/x/ns/net"}
	img := &runtime.Image{ID: "sha256:1", Cmd: []string{"sh"}, Layers: []string{"/l/1"}}
	s := &runtime.Settings{RunDir: "/run/agent", LogDir: "/var/log/pods", CgroupParent: "/agent", Root: "/var/lib/agent"}
	id := "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
		Command: []string{"echo"}, Args: []string{"hi"}, Envs: []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b")}},
		LogPath: "app/0.log",
		Mounts: []*runtimeapi.Mount{{HostPath: "/data", ContainerPath: "/data", Readonly: true},
			{HostPath: "/my/hosts", ContainerPath: "/etc/hosts", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}},
	}
	pc, err := criContainerConfig(pod, sb, id, cc, img, s, cfg.LogDirectory)
	if err != nil {
		t.Fatal(err)
	}
	if pc.ID != runtime.MonitorID(testSandboxID, "cfedcba987654321") || pc.Name != "cfedcba987654321" || pc.Pod.UID != testSandboxID {
		t.Errorf("IDs: %s %s %s", pc.ID, pc.Name, pc.Pod.UID)
	}
	if !slices.Equal(pc.Process.Args, []string{"echo", "hi"}) || !slices.Contains(pc.Process.Env, "A=b") {
		t.Errorf("process %+v", pc.Process)
	}
	if pc.Log.Root != "/logs/p" || pc.Log.File != "app/0.log" || pc.Restart.Policy != protocol.RestartNever || pc.Cgroup.MemoryLimit != 64<<20 {
		t.Errorf("log %+v restart %+v cgroup %+v", pc.Log, pc.Restart, pc.Cgroup)
	}
	var hosts, data []protocol.Mount
	for _, m := range pc.Mounts {
		switch m.Destination {
		case "/etc/hosts":
			hosts = append(hosts, m)
		case "/data":
			data = append(data, m)
		}
	}
	if len(hosts) != 1 || hosts[0].Source != "/my/hosts" || !slices.Contains(hosts[0].Options, "rslave") {
		t.Errorf("/etc/hosts mounts %+v, want the client's only, rslave", hosts)
	}
	if len(data) != 1 || !slices.Contains(data[0].Options, "ro") || !slices.Contains(data[0].Options, "rprivate") {
		t.Errorf("/data mounts %+v, want one read-only bind", data)
	}
}
