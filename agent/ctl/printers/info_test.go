package printers

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/agent/api"
)

func testInfo() *api.Info {
	return &api.Info{
		ServerVersion:     "0.3.0",
		NodeName:          "node-a",
		ManifestDir:       "/etc/agent/manifests",
		Root:              "/var/lib/agent",
		RunDir:            "/run/agent",
		LogDir:            "/var/log/pods",
		StorageDriver:     "overlay",
		CgroupParent:      "/agent",
		CgroupVersion:     "2",
		KernelVersion:     "6.1.0-28-amd64",
		MonitorProtocol:   "1",
		Pods:              3,
		Containers:        5,
		ContainersRunning: 4,
		ContainersExited:  1,
		Images:            2,
	}
}

func TestPrintInfo(t *testing.T) {
	info := testInfo()
	info.LiveRestoreEnabled = true
	info.Warnings = []string{`restore-sensitive setting "cgroup-parent" changed from "/agent" to "/agent2"; affected pods are replaced`}

	var b bytes.Buffer
	if err := PrintInfo(&b, info); err != nil {
		t.Fatal(err)
	}
	want := `Server Version: 0.3.0
Node Name: node-a
Storage Driver: overlay
Cgroup Parent: /agent
Cgroup Version: 2
Kernel Version: 6.1.0-28-amd64
Root Dir: /var/lib/agent
Run Dir: /run/agent
Log Dir: /var/log/pods
Manifest Dir: /etc/agent/manifests
Monitor Protocol: 1
Pods: 3
Containers: 5
 Running: 4
 Exited: 1
Images: 2
Live Restore Enabled: true
Cluster: none
Warnings:
 restore-sensitive setting "cgroup-parent" changed from "/agent" to "/agent2"; affected pods are replaced
`
	if b.String() != want {
		t.Errorf("info:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintInfoLiveRestore(t *testing.T) {
	tests := []struct {
		name    string
		enabled bool
		reason  string
		want    string
	}{
		{"on", true, "", "Live Restore Enabled: true"},
		{"off", false, "", "Live Restore Enabled: false"},
		{"configured on but off", false, "cluster mode is on", "Live Restore Enabled: false (disabled: cluster mode is on)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := testInfo()
			info.LiveRestoreEnabled = tt.enabled
			info.LiveRestoreDisabledReason = tt.reason
			var b bytes.Buffer
			if err := PrintInfo(&b, info); err != nil {
				t.Fatal(err)
			}
			var found []string
			for _, line := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(line, "Live Restore Enabled:") {
					found = append(found, line)
				}
			}
			if len(found) != 1 || found[0] != tt.want {
				t.Errorf("live restore lines %q, want exactly %q", found, tt.want)
			}
			if strings.Contains(b.String(), "Warnings:") {
				t.Errorf("Warnings section printed without warnings:\n%s", b.String())
			}
		})
	}
}

func TestPrintInfoInCluster(t *testing.T) {
	info := testInfo()
	info.LiveRestoreDisabledReason = "cluster mode is on"
	info.Cluster = api.ClusterStatus{InCluster: true, ClusterID: "cdf818194e3a8c32", NodeName: "node-a", EtcdMember: true,
		PeerURL: "https://127.0.0.1:2380", ClientURL: "https://127.0.0.1:2379", Endpoints: []string{"https://127.0.0.1:2379"},
		Connected: true, Registered: true, DaemonSets: 2, NodeLabels: map[string]string{"zone": "a", "kubernetes.io/os": "linux"},
		PodSecurity: "baseline", JoinURL: "https://127.0.0.1:2377", ServesJoins: true, AdminCredential: true}
	var b bytes.Buffer
	if err := PrintInfo(&b, info); err != nil {
		t.Fatal(err)
	}
	want := `Live Restore Enabled: false (disabled: cluster mode is on)
Cluster:
 Cluster ID: cdf818194e3a8c32
 Node Name: node-a
 Etcd: embedded member (peer https://127.0.0.1:2380, client https://127.0.0.1:2379)
 Endpoints: https://127.0.0.1:2379
 State: connected, registered
 DaemonSets: 2
 Pod Security: baseline
 Join Service: https://127.0.0.1:2377 (served by this node)
 Admin Credential: yes
 Node Labels: kubernetes.io/os=linux,zone=a
`
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("info:\n%s\nwant it to end with:\n%s", got, want)
	}
}
