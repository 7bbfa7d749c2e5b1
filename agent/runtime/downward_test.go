package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const downwardPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  labels: {app: web, tier: front-end}
  annotations: {example.com/x: "y"}
spec:
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: sub/dir/name, fieldRef: {fieldPath: metadata.name}, mode: 0400}
      - {path: cpu, resourceFieldRef: {containerName: app, resource: limits.cpu, divisor: 1m}}
      - {path: mem-limit, resourceFieldRef: {containerName: side, resource: limits.memory}}
  - name: proj
    projected:
      defaultMode: 0440
      sources:
      - downwardAPI: {items: [{path: anno, fieldRef: {fieldPath: "metadata.annotations['example.com/x']"}}]}
  containers:
  - name: app
    image: localhost/busybox
    env:
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MISSING, valueFrom: {fieldRef: {fieldPath: "metadata.labels['nope']"}}}
    - {name: ANNO, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['example.com/x']"}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: HOSTIPS, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: CPU_REQ_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: SIDE_MEM, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.memory, divisor: 1Gi}}}
    - {name: SIDE_CPU, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.cpu}}}
    - {name: EPHEMERAL, valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage, divisor: 1M}}}
    - {name: EPHEMERAL_REQ, valueFrom: {resourceFieldRef: {resource: requests.ephemeral-storage}}}
    resources:
      limits: {cpu: 250m, memory: 100Mi}
      requests: {cpu: 100m}
    volumeMounts:
    - {name: info, mountPath: /etc/podinfo}
    - {name: proj, mountPath: /etc/proj, readOnly: false}
  - name: side
    image: localhost/busybox
`

var node = &Settings{RunDir: "/run/agent", LogDir: "/var/log/pods", CgroupParent: "/agent", NodeName: "n1",
	NodeMilliCPU: 4000, NodeMemory: 8 << 30, NodeEphemeralStorage: 50e9}

// Every fieldRef and resourceFieldRef gets kubelet's value: a label by key ("" when
// missing), the node's allocatable for a limit not set, the divisor's quotient
// rounded up (250m is 1 CPU).
func TestDownwardAPIEnv(t *testing.T) {
	pod := parsePod(t, downwardPod)
	sb := sandbox()
	sb.HostIP = "192.0.2.1"
	env, err := Env(pod, &pod.Spec.Containers[0], busybox, sb, node)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"APP=web", "MISSING=", "ANNO=y", "NODE=n1", "SA=", "IPS=10.77.0.5", "HOSTIPS=192.0.2.1",
		"CPU_LIMIT=1", "CPU_REQ_M=100", "MEM_MI=100", "SIDE_MEM=8", "SIDE_CPU=4", "EPHEMERAL=50000", "EPHEMERAL_REQ=0"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, strings.Join(env, "\n"))
		}
	}
}

func TestDownwardAPIVolumeFiles(t *testing.T) {
	pod := parsePod(t, downwardPod)
	files, err := DownwardVolumeFiles(pod, &pod.Spec.Volumes[0], node.allocatable())
	if err != nil {
		t.Fatal(err)
	}
	want := []VolumeFile{
		{"labels", []byte("app=\"web\"\ntier=\"front-end\""), 0o644},
		{"sub/dir/name", []byte("web"), 0o400},
		{"cpu", []byte("250"), 0o644},
		{"mem-limit", []byte("8589934592"), 0o644},
	}
	if len(files) != len(want) {
		t.Fatalf("files = %+v", files)
	}
	for i := range want {
		if files[i].Path != want[i].Path || string(files[i].Data) != string(want[i].Data) || files[i].Mode != want[i].Mode {
			t.Errorf("file %d = %s %q %o, want %s %q %o", i, files[i].Path, files[i].Data, files[i].Mode, want[i].Path, want[i].Data, want[i].Mode)
		}
	}
	proj, err := DownwardVolumeFiles(pod, &pod.Spec.Volumes[1], node.allocatable())
	if err != nil || len(proj) != 1 || proj[0].Path != "anno" || string(proj[0].Data) != "y" || proj[0].Mode != 0o440 {
		t.Errorf("projected files = %+v, %v", proj, err)
	}

	dir := t.TempDir()
	if err := writeVolumeFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	if err := writeVolumeFiles(dir, files); err != nil { // again, as at a restart of agentd
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sub", "dir", "name"))
	fi, _ := os.Stat(filepath.Join(dir, "sub", "dir", "name"))
	if err != nil || string(b) != "web" || fi.Mode().Perm() != 0o400 {
		t.Errorf("sub/dir/name: %q %v %v", b, fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"cpu", "labels", "mem-limit", "sub"}; !slices.Equal(names, want) {
		t.Errorf("volume holds %v, want %v (no temporary files left)", names, want)
	}
}

// A symlink in the volume's directory (which containers only get read-only, so
// only a bug could put one there) does not lead agentd's writes outside it.
func TestWriteVolumeFilesStaysInside(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	err := writeVolumeFiles(dir, []VolumeFile{{Path: "sub/x", Data: []byte("x"), Mode: 0o644}})
	if err == nil {
		t.Error("writing through a symlink that leads out succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("agentd wrote outside the volume: %v", entries)
	}
	for _, bad := range []string{"../x", "/abs", "a/../../x", "..data", ""} {
		if err := writeVolumeFiles(dir, []VolumeFile{{Path: bad, Data: []byte("x"), Mode: 0o644}}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

// A downward API volume is mounted read-only even when the mount asks for write.
func TestDownwardAPIMountsReadOnly(t *testing.T) {
	pod := parsePod(t, downwardPod)
	sb := sandbox()
	sb.Volumes = map[string]string{"info": "/vol/info", "proj": "/vol/proj"}
	mounts, err := Mounts(pod, &pod.Spec.Containers[0], sb)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range mounts {
		if m.Destination == "/etc/podinfo" || m.Destination == "/etc/proj" {
			n++
			if !slices.Contains(m.Options, "ro") {
				t.Errorf("%s mounted writable: %+v", m.Destination, m)
			}
		}
	}
	if n != 2 {
		t.Errorf("mounts: %+v", mounts)
	}
}
