package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EDownwardAPI: env fieldRefs and resourceFieldRefs, a downwardAPI volume
// and a projected one show kubelet's values inside a real container; the
// volume is read-only there, so the container cannot change what agentd wrote
// (or plant a link for it to follow), even when its mount asks for write.
func TestE2EDownwardAPI(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("dapi.yaml", `apiVersion: v1
kind: Pod
metadata:
  name: dapi
  labels: {app: web, tier: front}
  annotations: {example.com/build: "42"}
spec:
  terminationGracePeriodSeconds: 3
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: deep/name, fieldRef: {fieldPath: metadata.name}, mode: 0400}
      - {path: mem, resourceFieldRef: {containerName: main, resource: limits.memory, divisor: 1Mi}}
  - name: proj
    projected:
      sources:
      - downwardAPI: {items: [{path: build, fieldRef: {fieldPath: "metadata.annotations['example.com/build']"}}]}
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "env | sort; echo ---; cat /etc/podinfo/labels; echo; echo name=$(cat /etc/podinfo/deep/name) mem=$(cat /etc/podinfo/mem) build=$(cat /etc/proj/build); stat -c 'mode=%a' /etc/podinfo/deep/name; ln -s /etc /etc/podinfo/evil 2>/dev/null || echo volume-read-only; echo x > /etc/proj/build 2>/dev/null || echo proj-read-only; echo done; exec sleep 3600"]
    env:
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: BUILD, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['example.com/build']"}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    resources:
      limits: {cpu: 250m, memory: 64Mi}
    volumeMounts:
    - {name: info, mountPath: /etc/podinfo}
    - {name: proj, mountPath: /etc/proj, readOnly: false}
`)
	a.waitStatus("dapi", "Running", 60*time.Second)
	var out string
	a.eventually(30*time.Second, "the container's report", func() (bool, string) {
		out, _ = a.try("logs", "dapi")
		return strings.Contains(out, "done"), out
	})
	pod := a.pod("dapi")
	if pod == nil || pod.Status.PodIP == "" {
		t.Fatalf("pod has no IP: %+v", pod)
	}
	for _, want := range []string{
		"APP=web", "BUILD=42", "NS=default", "POD_IPS=" + pod.Status.PodIP, "HOST_IP=" + pod.Status.HostIP,
		"CPU_M=250", "MEM_MI=64",
		"app=\"web\"\ntier=\"front\"",
		"name=dapi mem=64 build=42", "mode=400", "volume-read-only", "proj-read-only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	// The files are agentd's, on disk under the pod's data directory.
	vol := filepath.Join(a.dir, "root", "pods", string(pod.UID), "volumes", "info")
	if b, err := os.ReadFile(filepath.Join(vol, "deep", "name")); err != nil || string(b) != "dapi" {
		t.Errorf("%s/deep/name: %q %v", vol, b, err)
	}
	if _, err := os.Lstat(filepath.Join(vol, "evil")); err == nil {
		t.Errorf("the container created a link in its downward API volume")
	}

	// A manifest whose item path leads out of the volume is refused, naming
	// the field, and agentd writes nothing there.
	canary := filepath.Join(a.dir, "root", "canary")
	a.write("escape.yaml", simplePod("escape", "sleep 3600",
		"  volumes:\n  - name: info\n    downwardAPI:\n      items:\n      - {path: ../../../canary, fieldRef: {fieldPath: metadata.name}}"))
	a.eventually(30*time.Second, "InvalidManifest event for escape.yaml", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Contains(out, "InvalidManifest") && strings.Contains(out, "escape.yaml") &&
			strings.Contains(out, "spec.volumes[0].downwardAPI.items[0].path") && strings.Contains(out, "must not contain '..'"), out
	})
	if _, err := os.Lstat(canary); err == nil {
		t.Errorf("agentd wrote %s for a downward API item leading out of its volume", canary)
	}
	if a.pod("escape") != nil {
		t.Errorf("the pod of a refused manifest runs")
	}
}
