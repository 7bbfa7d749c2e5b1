package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func readGood(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "good", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseGoodManifests(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good manifests: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			pod, err := Parse(data, Source{Path: "/etc/agent/manifests/" + filepath.Base(f), NodeName: "node1"})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if pod.UID == "" || pod.Spec.NodeName != "node1" || pod.Annotations[AnnotationConfigHash] != string(pod.UID) {
				t.Errorf("identity not set: uid=%q node=%q annotations=%v", pod.UID, pod.Spec.NodeName, pod.Annotations)
			}
		})
	}
}

func TestKubeadmEtcd(t *testing.T) {
	pod, err := Parse(readGood(t, "kubeadm-etcd.yaml"), Source{Path: "/etc/kubernetes/manifests/etcd.yaml", NodeName: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	switch {
	case pod.Namespace != "kube-system" || !pod.Spec.HostNetwork:
		t.Errorf("namespace/hostNetwork: %q %v", pod.Namespace, pod.Spec.HostNetwork)
	case c.LivenessProbe.HTTPGet.Port.IntVal != 2381 || c.LivenessProbe.FailureThreshold != 8:
		t.Errorf("liveness probe: %+v", c.LivenessProbe)
	case c.StartupProbe.SuccessThreshold != 1:
		t.Errorf("startup probe not defaulted: %+v", c.StartupProbe)
	case *pod.Spec.Volumes[0].HostPath.Type != corev1.HostPathDirectoryOrCreate:
		t.Errorf("hostPath type: %v", *pod.Spec.Volumes[0].HostPath.Type)
	case pod.Spec.PriorityClassName != "system-node-critical" || *pod.Spec.Priority != 2000001000:
		t.Errorf("priority: %q", pod.Spec.PriorityClassName)
	case c.Resources.Requests.Cpu().MilliValue() != 100:
		t.Errorf("cpu request: %v", c.Resources.Requests.Cpu())
	}
}

func TestDefaults(t *testing.T) {
	pod, err := Parse(readGood(t, "minimal.yaml"), Source{})
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	if pod.Namespace != "default" || pod.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		*pod.Spec.TerminationGracePeriodSeconds != 30 || pod.Spec.DNSPolicy != corev1.DNSClusterFirst ||
		c.ImagePullPolicy != corev1.PullAlways || c.TerminationMessagePath != "/dev/termination-log" ||
		c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
		t.Errorf("defaults not applied: %+v", pod.Spec)
	}

	full, err := Parse(readGood(t, "full.yaml"), Source{})
	if err != nil {
		t.Fatal(err)
	}
	httpd := full.Spec.Containers[0]
	if got := httpd.Resources.Requests[corev1.ResourceMemory]; got.Cmp(resource.MustParse("64Mi")) != 0 {
		t.Errorf("requests should default to limits, got %v", httpd.Resources.Requests)
	}
	if p := httpd.ReadinessProbe; p.TimeoutSeconds != 1 || p.PeriodSeconds != 10 || p.SuccessThreshold != 1 ||
		p.FailureThreshold != 3 || p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("probe defaults: %+v", p)
	}
	if httpd.LivenessProbe.PeriodSeconds != 5 {
		t.Errorf("a set probe field was overwritten: %d", httpd.LivenessProbe.PeriodSeconds)
	}
	if full.Spec.Volumes[1].EmptyDir == nil {
		t.Errorf("a volume without a source must default to emptyDir")
	}
	if httpd.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("port protocol: %q", httpd.Ports[0].Protocol)
	}
	if full.Spec.InitContainers[0].ImagePullPolicy != corev1.PullIfNotPresent ||
		full.Spec.Containers[1].ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("pinned images must default to IfNotPresent")
	}
}

func TestDefaultPullPolicy(t *testing.T) {
	for image, want := range map[string]corev1.PullPolicy{
		"busybox":                   corev1.PullAlways,
		"busybox:latest":            corev1.PullAlways,
		"busybox:1.36":              corev1.PullIfNotPresent,
		"localhost:5000/busybox":    corev1.PullAlways,
		"localhost:5000/busybox:v1": corev1.PullIfNotPresent,
		"busybox@sha256:" + strings.Repeat("a", 64): corev1.PullIfNotPresent,
	} {
		if got := DefaultPullPolicy(image); got != want {
			t.Errorf("DefaultPullPolicy(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestSetDefaultsIdempotent(t *testing.T) {
	pod, err := Decode(readGood(t, "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	SetDefaults(pod)
	once := pod.DeepCopy()
	SetDefaults(pod)
	for i := range pod.Spec.Containers {
		if ContainerHash(&pod.Spec.Containers[i]) != ContainerHash(&once.Spec.Containers[i]) {
			t.Errorf("SetDefaults twice changed container %d", i)
		}
	}
}

func TestUIDAndHashes(t *testing.T) {
	data := readGood(t, "minimal.yaml")
	src := Source{Path: "/m/hello.yaml", NodeName: "n1"}
	a, _ := Parse(data, src)
	b, _ := Parse(data, src)
	if a.UID != b.UID {
		t.Fatalf("UID not stable: %s vs %s", a.UID, b.UID)
	}
	// The same content in another format or layout is the same pod.
	reformatted := []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"hello"},` +
		`"spec":{"containers":[{"image":"localhost/busybox","name":"hello","command":["sh","-c","echo hello"]}]}}`)
	c, err := Parse(reformatted, src)
	if err != nil {
		t.Fatal(err)
	}
	if c.UID != a.UID {
		t.Errorf("the same pod as JSON got another UID: %s vs %s", c.UID, a.UID)
	}
	if d, _ := Parse(data, Source{Path: "/m/other.yaml", NodeName: "n1"}); d.UID == a.UID {
		t.Errorf("another path must give another UID")
	}
	if d, _ := Parse(data, Source{Path: "/m/hello.yaml", NodeName: "n2"}); d.UID == a.UID {
		t.Errorf("another node must give another UID")
	}
	changed, _ := Parse([]byte(strings.Replace(string(data), "echo hello", "echo bye", 1)), src)
	if changed.UID == a.UID {
		t.Errorf("changed content must give another UID")
	}
	if ContainerHash(&changed.Spec.Containers[0]) == ContainerHash(&a.Spec.Containers[0]) {
		t.Errorf("changed command must change the container hash")
	}
	// Pinned value: a UID must stay the same across agent versions.
	if a.UID != "32f6f3b7-520f-02ad-8313-4168893e49ea" {
		t.Errorf("UID of testdata/good/minimal.yaml changed to %s: pods would be restarted on upgrade", a.UID)
	}
	given, _ := Parse([]byte(strings.Replace(string(data), "name: hello\n", "name: hello\n  uid: my-uid\n", 1)), src)
	if given.UID != "my-uid" {
		t.Errorf("a given metadata.uid must be kept, got %s", given.UID)
	}
}

// withImage is base with its container's image replaced by image (a YAML scalar).
func withImage(image string) string {
	return strings.Replace(base, "    image: localhost/busybox\n", "    image: "+image+"\n", 1)
}

const base = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: c
    image: localhost/busybox
`

// A sidecar (an init container with restartPolicy Always) may have probes and
// lifecycle hooks, as in Kubernetes.
func TestSidecarAccepted(t *testing.T) {
	m := base + `  initContainers:
  - name: proxy
    image: localhost/busybox
    restartPolicy: Always
    startupProbe: {exec: {command: ["true"]}}
    readinessProbe: {exec: {command: ["true"]}}
    livenessProbe: {exec: {command: ["true"]}}
    lifecycle: {preStop: {exec: {command: ["true"]}}}
`
	p, err := Parse([]byte(m), Source{Path: "/m/p.yaml", NodeName: "n"})
	if err != nil {
		t.Fatalf("a sidecar with probes and hooks is refused: %v", err)
	}
	if !IsSidecar(&p.Spec.InitContainers[0]) {
		t.Error("IsSidecar is false for an init container with restartPolicy Always")
	}
}

// A hostPort on the pod network is forwarded (agent/network's portmap); the
// same port over another protocol or on other host addresses is another port.
func TestHostPortAccepted(t *testing.T) {
	m := base + `    ports:
    - {containerPort: 80, hostPort: 18080}
    - {containerPort: 80, hostPort: 18080, protocol: UDP}
    - {containerPort: 81, hostPort: 18081, hostIP: 127.0.0.1}
    - {containerPort: 82, hostPort: 18081, hostIP: 10.0.0.1}
`
	p, err := Parse([]byte(m), Source{Path: "/m/p.yaml", NodeName: "n"})
	if err != nil {
		t.Fatalf("hostPorts refused: %v", err)
	}
	if got := p.Spec.Containers[0].Ports[0]; got.HostPort != 18080 || got.Protocol != corev1.ProtocolTCP {
		t.Errorf("port %+v", got)
	}
}

// TestBadManifests asserts the field path (and a word of the message) of every error.
func TestBadManifests(t *testing.T) {
	cases := []struct {
		name     string
		manifest string
		want     []string // each must appear in the error, in order of the file's errors
		sentinel error
	}{
		{"typo in a container field", base + "    imagePullPolcy: Always\n",
			[]string{"spec.containers[0].imagePullPolcy: unknown field"}, ErrInvalid},
		{"typo at top level", base + "spek: {}\n", []string{`spek: unknown field`}, ErrInvalid},
		{"restartPolicy on an app container", base + "    restartPolicy: Always\n",
			[]string{"spec.containers[0].restartPolicy: Forbidden: may only be set for init containers"}, ErrInvalid},
		{"init container restartPolicy other than Always", base + "  initContainers: [{name: i, image: localhost/busybox, restartPolicy: OnFailure}]\n",
			[]string{`spec.initContainers[0].restartPolicy: Unsupported value: "OnFailure"`}, ErrInvalid},
		{"probe on an init container that is not a sidecar", base + "  initContainers: [{name: i, image: localhost/busybox, startupProbe: {exec: {command: [x]}}}]\n",
			[]string{"spec.initContainers[0].startupProbe: Forbidden"}, ErrInvalid},
		{"duplicate key", base + "    image: other\n", []string{"already set in map"}, ErrSyntax},
		{"wrong kind", strings.Replace(base, "kind: Pod", "kind: Deployment", 1), []string{`kind: Unsupported value: "Deployment"`}, ErrInvalid},
		{"wrong apiVersion", strings.Replace(base, "apiVersion: v1", "apiVersion: apps/v1", 1), []string{`apiVersion: Unsupported value: "apps/v1"`}, ErrInvalid},
		{"no kind", strings.Replace(base, "kind: Pod\n", "", 1), []string{"kind: Required value"}, ErrInvalid},
		{"affinity", base + "  affinity: {nodeAffinity: {}}\n", []string{"spec.affinity: not supported by agentd"}, ErrInvalid},
		{"tolerations", base + "  tolerations: [{operator: Exists}]\n", []string{"spec.tolerations: not supported by agentd"}, ErrInvalid},
		{"configMap volume", base + "  volumes: [{name: v, configMap: {name: x}}]\n", []string{"spec.volumes[0].configMap: not supported by agentd"}, ErrInvalid},
		{"envFrom", base + "    envFrom: [{prefix: X}]\n", []string{"spec.containers[0].envFrom: not supported by agentd"}, ErrInvalid},
		{"grpc probe without a port", base + "    livenessProbe: {grpc: {service: x}}\n", []string{"spec.containers[0].livenessProbe.grpc.port: Invalid value: 0"}, ErrInvalid},
		{"grpc probe and another action", base + "    livenessProbe: {grpc: {port: 9}, tcpSocket: {port: 9}}\n", []string{"spec.containers[0].livenessProbe: Forbidden: may not specify more than one handler type"}, ErrInvalid},
		{"grpc in a lifecycle hook", base + "    lifecycle: {postStart: {grpc: {port: 9}}}\n", []string{"unknown field"}, ErrInvalid},
		{"resource claims", base + "    resources: {claims: [{name: x}]}\n", []string{"spec.containers[0].resources.claims: not supported by agentd"}, ErrInvalid},
		{"ownerReferences", strings.Replace(base, "  name: p\n", "  name: p\n  ownerReferences: [{name: x}]\n", 1), []string{"metadata.ownerReferences: not supported by agentd"}, ErrInvalid},
		{"bad name", strings.Replace(base, "name: p\n", "name: Not_Valid\n", 1), []string{`metadata.name: Invalid value: "Not_Valid"`}, ErrInvalid},
		{"uid leads out of run-dir", strings.Replace(base, "name: p\n", "name: p\n  uid: ../../x\n", 1), []string{`metadata.uid: Invalid value: "../../x"`}, ErrInvalid},
		{"uid is dot-dot", strings.Replace(base, "name: p\n", "name: p\n  uid: \"..\"\n", 1), []string{`metadata.uid: Invalid value: ".."`}, ErrInvalid},
		{"uid with a slash", strings.Replace(base, "name: p\n", "name: p\n  uid: a/b\n", 1), []string{`metadata.uid: Invalid value: "a/b"`}, ErrInvalid},
		{"uid with an underscore", strings.Replace(base, "name: p\n", "name: p\n  uid: a_b\n", 1), []string{`metadata.uid: Invalid value: "a_b"`}, ErrInvalid},
		{"uid too long", strings.Replace(base, "name: p\n", "name: p\n  uid: "+strings.Repeat("a", 129)+"\n", 1), []string{"metadata.uid: Invalid value", "no more than 128"}, ErrInvalid},
		{"no name", strings.Replace(base, "  name: p\n", "  labels: {a: b}\n", 1), []string{"metadata.name: Required value"}, ErrInvalid},
		{"bad label", strings.Replace(base, "name: p\n", "name: p\n  labels: {\"-bad\": x}\n", 1), []string{"metadata.labels: Invalid value: \"-bad\""}, ErrInvalid},
		{"no containers", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n", []string{"spec.containers: Required value"}, ErrInvalid},
		{"no image", strings.Replace(base, "    image: localhost/busybox\n", "", 1), []string{"spec.containers[0].image: Required value"}, ErrInvalid},

		// Identifiers that become paths, or could be read as one, are refused at the edge (issue 10).
		{"image leads out", withImage("../../x"), []string{`spec.containers[0].image: Invalid value: "../../x": must not have an empty, '.' or '..' path element`}, ErrInvalid},
		{"image with .. inside", withImage("a/../b:1"), []string{`spec.containers[0].image: Invalid value: "a/../b:1": must not have an empty, '.' or '..' path element`}, ErrInvalid},
		{"image with . element", withImage("localhost/./b"), []string{`spec.containers[0].image: Invalid value: "localhost/./b": must not have an empty, '.' or '..' path element`}, ErrInvalid},
		{"image .. tagged", withImage("..:1"), []string{`spec.containers[0].image: Invalid value: "..:1": must not have an empty, '.' or '..' path element`}, ErrInvalid},
		{"image with an empty element", withImage("a//b"), []string{`spec.containers[0].image: Invalid value: "a//b": must not have an empty`}, ErrInvalid},
		{"image registry ..", withImage("..:5000/x"), []string{`spec.containers[0].image: Invalid value: "..:5000/x": must not have an empty`}, ErrInvalid},
		{"image in upper case", withImage("UPPER/x"), []string{`spec.containers[0].image: Invalid value: "UPPER/x": is not a valid image reference`}, ErrInvalid},
		{"image tag with a space", withImage(`"x:tag with space"`), []string{`spec.containers[0].image: Invalid value: "x:tag with space": must not contain whitespace`}, ErrInvalid},
		{"image with a control character", withImage(`"x\tb"`), []string{`spec.containers[0].image: Invalid value: "x\tb": must not contain whitespace, control`}, ErrInvalid},
		{"image with a short digest", withImage("x@sha256:short"), []string{`spec.containers[0].image: Invalid value: "x@sha256:short": is not a valid image reference`}, ErrInvalid},
		{"image element starts with a dash", withImage("x/-y"), []string{`spec.containers[0].image: Invalid value: "x/-y": path element "-y" must be lower-case`}, ErrInvalid},
		{"image registry not a host", withImage("a_b.io:1/x"), []string{`spec.containers[0].image: Invalid value: "a_b.io:1/x"`}, ErrInvalid},
		{"image name too long", withImage("x/" + strings.Repeat("a", 254)), []string{"spec.containers[0].image: Invalid value", "no more than 255 characters"}, ErrInvalid},
		{"init container image", base + "  initContainers: [{name: i, image: ../../x}]\n", []string{`spec.initContainers[0].image: Invalid value: "../../x"`}, ErrInvalid},
		{"container name leads out", strings.Replace(base, "  - name: c\n", "  - name: ../x\n", 1), []string{`spec.containers[0].name: Invalid value: "../x"`}, ErrInvalid},
		{"container name with a slash", strings.Replace(base, "  - name: c\n", "  - name: a/b\n", 1), []string{`spec.containers[0].name: Invalid value: "a/b"`}, ErrInvalid},
		{"container name in upper case", strings.Replace(base, "  - name: c\n", "  - name: A\n", 1), []string{`spec.containers[0].name: Invalid value: "A"`}, ErrInvalid},
		{"container name too long", strings.Replace(base, "  - name: c\n", "  - name: "+strings.Repeat("c", 64)+"\n", 1), []string{"spec.containers[0].name: Invalid value", "must be no more than 63 characters"}, ErrInvalid},
		{"init container name leads out", base + "  initContainers: [{name: ../x, image: x}]\n", []string{`spec.initContainers[0].name: Invalid value: "../x"`}, ErrInvalid},
		{"volume name leads out", base + "  volumes: [{name: ../x}]\n", []string{`spec.volumes[0].name: Invalid value: "../x"`}, ErrInvalid},
		{"volume name with a slash", base + "  volumes: [{name: a/b}]\n", []string{`spec.volumes[0].name: Invalid value: "a/b"`}, ErrInvalid},
		{"volume name is ..", base + "  volumes: [{name: \"..\"}]\n", []string{`spec.volumes[0].name: Invalid value: ".."`}, ErrInvalid},
		{"volume name in upper case", base + "  volumes: [{name: Data}]\n", []string{`spec.volumes[0].name: Invalid value: "Data"`}, ErrInvalid},
		{"namespace leads out", strings.Replace(base, "name: p\n", "name: p\n  namespace: ../x\n", 1), []string{`metadata.namespace: Invalid value: "../x"`}, ErrInvalid},
		{"namespace with a slash", strings.Replace(base, "name: p\n", "name: p\n  namespace: a/b\n", 1), []string{`metadata.namespace: Invalid value: "a/b"`}, ErrInvalid},
		{"namespace in upper case", strings.Replace(base, "name: p\n", "name: p\n  namespace: Kube\n", 1), []string{`metadata.namespace: Invalid value: "Kube"`}, ErrInvalid},
		{"name leads out", strings.Replace(base, "name: p\n", "name: ../x\n", 1), []string{`metadata.name: Invalid value: "../x"`}, ErrInvalid},
		{"name with a slash", strings.Replace(base, "name: p\n", "name: a/b\n", 1), []string{`metadata.name: Invalid value: "a/b"`}, ErrInvalid},
		{"duplicate container", base + "  - name: c\n    image: x\n", []string{`spec.containers[1].name: Duplicate value: "c"`}, ErrInvalid},
		{"init and app share a name", base + "  initContainers: [{name: c, image: x}]\n", []string{`spec.containers[0].name: Duplicate value: "c"`}, ErrInvalid},
		{"bad restartPolicy", base + "  restartPolicy: Sometimes\n", []string{`spec.restartPolicy: Unsupported value: "Sometimes"`}, ErrInvalid},
		{"negative grace", base + "  terminationGracePeriodSeconds: -1\n", []string{"spec.terminationGracePeriodSeconds: Invalid value: -1"}, ErrInvalid},
		{"string where a number belongs", base + "  terminationGracePeriodSeconds: soon\n", []string{"spec.terminationGracePeriodSeconds: Invalid value"}, ErrInvalid},
		{"bad port", base + "    ports: [{containerPort: 70000}]\n", []string{"spec.containers[0].ports[0].containerPort: Invalid value: 70000"}, ErrInvalid},
		{"hostPort out of range", base + "    ports: [{containerPort: 80, hostPort: 70000}]\n", []string{"spec.containers[0].ports[0].hostPort: Invalid value: 70000"}, ErrInvalid},
		{"hostPort of etcd", base + "    ports: [{containerPort: 80, hostPort: 2379}]\n", []string{"spec.containers[0].ports[0].hostPort: Forbidden: 2379 is one of agentd's own ports"}, ErrInvalid},
		{"hostPort of the join service", base + "    ports: [{containerPort: 80, hostPort: 2377, protocol: UDP}]\n", []string{"spec.containers[0].ports[0].hostPort: Forbidden: 2377"}, ErrInvalid},
		{"hostPort on an init container", base + "  initContainers: [{name: i, image: x, ports: [{containerPort: 80, hostPort: 18080}]}]\n", []string{"spec.initContainers[0].ports[0].hostPort: Forbidden"}, ErrInvalid},
		{"hostPort twice", base + "    ports: [{containerPort: 80, hostPort: 18080}, {containerPort: 81, hostPort: 18080}]\n", []string{"spec.containers[0].ports[1].hostPort: Duplicate value"}, ErrInvalid},
		{"hostPort twice across containers", base + "    ports: [{containerPort: 80, hostPort: 18080, hostIP: 10.0.0.1}]\n  - name: d\n    image: x\n    ports: [{containerPort: 81, hostPort: 18080}]\n", []string{"spec.containers[1].ports[0].hostPort: Duplicate value"}, ErrInvalid},
		{"hostIP without hostPort", base + "    ports: [{containerPort: 80, hostIP: 127.0.0.1}]\n", []string{"spec.containers[0].ports[0].hostIP: Invalid value"}, ErrInvalid},
		{"IPv6 hostIP", base + "    ports: [{containerPort: 80, hostPort: 18080, hostIP: \"::1\"}]\n", []string{"spec.containers[0].ports[0].hostIP: Invalid value", "IPv4"}, ErrInvalid},
		{"bad hostIP", base + "    ports: [{containerPort: 80, hostPort: 18080, hostIP: node}]\n", []string{"spec.containers[0].ports[0].hostIP: Invalid value"}, ErrInvalid},
		{"hostNetwork hostPort not containerPort", base + "    ports: [{containerPort: 80, hostPort: 8080}]\n  hostNetwork: true\n", []string{"spec.containers[0].ports[0].hostPort: Invalid value: 8080"}, ErrInvalid},
		{"bad env name", base + "    env: [{name: \"1X\", value: \"y\"}]\n", []string{`spec.containers[0].env[0].name: Invalid value: "1X"`}, ErrInvalid},
		{"bad fieldRef", base + "    env: [{name: X, valueFrom: {fieldRef: {fieldPath: spec.hostname}}}]\n", []string{`spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.hostname"`}, ErrInvalid},
		{"gpu resource", base + "    resources: {limits: {nvidia.com/gpu: 1}}\n", []string{`spec.containers[0].resources.limits[nvidia.com/gpu]: Unsupported value`}, ErrInvalid},
		{"request over limit", base + "    resources: {limits: {memory: 1Mi}, requests: {memory: 2Mi}}\n", []string{"spec.containers[0].resources.requests[memory]: Invalid value"}, ErrInvalid},
		{"bad quantity", base + "    resources: {limits: {memory: lots}}\n", []string{"quantities must match the regular expression"}, ErrInvalid},
		{"mount of an undeclared volume", base + "    volumeMounts: [{name: data, mountPath: /data}]\n", []string{`spec.containers[0].volumeMounts[0].name: Not found: "data"`}, ErrInvalid},
		{"relative mountPath", base + "    volumeMounts: [{name: v, mountPath: data}]\n  volumes: [{name: v}]\n", []string{`spec.containers[0].volumeMounts[0].mountPath: Invalid value: "data": must be an absolute path`}, ErrInvalid},
		{"subPath escapes", base + "    volumeMounts: [{name: v, mountPath: /d, subPath: ../x}]\n  volumes: [{name: v}]\n", []string{"spec.containers[0].volumeMounts[0].subPath: Invalid value"}, ErrInvalid},
		{"relative hostPath", base + "  volumes: [{name: v, hostPath: {path: var/lib}}]\n", []string{`spec.volumes[0].hostPath.path: Invalid value: "var/lib"`}, ErrInvalid},
		{"hostPath with ..", base + "  volumes: [{name: v, hostPath: {path: /var/../etc}}]\n", []string{`spec.volumes[0].hostPath.path: Invalid value: "/var/../etc"`}, ErrInvalid},
		{"bad hostPath type", base + "  volumes: [{name: v, hostPath: {path: /x, type: Dir}}]\n", []string{`spec.volumes[0].hostPath.type: Unsupported value: "Dir"`}, ErrInvalid},
		{"duplicate volume", base + "  volumes: [{name: v}, {name: v}]\n", []string{`spec.volumes[1].name: Duplicate value: "v"`}, ErrInvalid},
		{"probe without handler", base + "    livenessProbe: {periodSeconds: 5}\n", []string{"spec.containers[0].livenessProbe: Required value: must specify a handler type"}, ErrInvalid},
		{"probe with two handlers", base + "    readinessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}\n", []string{"spec.containers[0].readinessProbe: Forbidden"}, ErrInvalid},
		{"liveness success threshold", base + "    livenessProbe: {exec: {command: [x]}, successThreshold: 2}\n", []string{"spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"}, ErrInvalid},
		{"negative initial delay", base + "    readinessProbe: {exec: {command: [x]}, initialDelaySeconds: -5}\n", []string{"spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -5"}, ErrInvalid},
		{"unknown named port", base + "    readinessProbe: {httpGet: {port: web}}\n", []string{`spec.containers[0].readinessProbe.httpGet.port: Invalid value: "web"`}, ErrInvalid},
		{"probe on an init container", base + "  initContainers: [{name: i, image: x, readinessProbe: {exec: {command: [x]}}}]\n", []string{"spec.initContainers[0].readinessProbe: Forbidden"}, ErrInvalid},
		{"tcpSocket hook", base + "    lifecycle: {preStop: {tcpSocket: {port: 1}}}\n", []string{"spec.containers[0].lifecycle.preStop.tcpSocket: not supported by agentd"}, ErrInvalid},
		{"unknown capability", base + "    securityContext: {capabilities: {add: [NET_FLY]}}\n", []string{`spec.containers[0].securityContext.capabilities.add[0]: Invalid value: "NET_FLY"`}, ErrInvalid},
		{"privileged without escalation", base + "    securityContext: {privileged: true, allowPrivilegeEscalation: false}\n", []string{"spec.containers[0].securityContext: Invalid value"}, ErrInvalid},
		{"negative runAsUser", base + "  securityContext: {runAsUser: -1}\n", []string{"spec.securityContext.runAsUser: Invalid value: -1"}, ErrInvalid},
		{"localhost seccomp", base + "  securityContext: {seccompProfile: {type: Localhost, localhostProfile: x.json}}\n", []string{"spec.securityContext.seccompProfile.localhostProfile: not supported by agentd", `spec.securityContext.seccompProfile.type: Unsupported value: "Localhost"`}, ErrInvalid},
		{"dnsPolicy None without config", base + "  dnsPolicy: None\n", []string{"spec.dnsConfig: Required value"}, ErrInvalid},
		{"bad nameserver", base + "  dnsConfig: {nameservers: [not-an-ip]}\n", []string{`spec.dnsConfig.nameservers[0]: Invalid value: "not-an-ip"`}, ErrInvalid},
		{"two documents", base + "---\n" + base, []string{"has 2 YAML documents"}, ErrSyntax},
		{"empty file", "# nothing here\n", []string{"the file is empty"}, ErrSyntax},
		{"not a mapping", "- a\n- b\n", []string{"not an object"}, ErrSyntax},
		{"garbage", "{{{ :::", []string{"not valid YAML or JSON"}, ErrSyntax},
		{"tab-indented yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: p\n", []string{"not valid YAML or JSON"}, ErrSyntax},
		{"too large", base + "# " + strings.Repeat("x", MaxManifestSize) + "\n", []string{"larger than 10 MiB"}, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.manifest), Source{Path: "/m/p.yaml", NodeName: "n"})
			if err == nil {
				t.Fatal("Parse accepted a bad manifest")
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %q is not %v", err, tc.sentinel)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, w)
				}
			}
		})
	}
}

// TestAllErrorsAtOnce: a file with several problems reports all of them.
func TestAllErrorsAtOnce(t *testing.T) {
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: BAD}
spec:
  affinity: {}
  restartPolicy: Sometimes
  containers:
  - name: a
  - name: a
    image: x
    volumeMounts: [{name: nope, mountPath: rel}]
`
	_, err := Parse([]byte(manifest), Source{})
	list := ErrorList(err)
	want := []string{
		"spec.affinity", "metadata.name", "spec.containers[0].image", "spec.containers[1].name",
		"spec.containers[1].volumeMounts[0].name", "spec.containers[1].volumeMounts[0].mountPath", "spec.restartPolicy",
	}
	got := map[string]bool{}
	for _, fe := range list {
		got[fe.Field] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing error for %s; got %v", w, err)
		}
	}
	// Unknown fields are reported all at once too.
	_, err = Parse([]byte(base+"    imagePullPolcy: x\n    comand: [x]\n"), Source{})
	if n := len(ErrorList(err)); n != 2 {
		t.Errorf("want 2 unknown-field errors, got %d: %v", n, err)
	}
}

// TestEveryDocumentedFieldIsAccepted walks the expanded table: no listed path may be
// rejected as unsupported (a guard against a typo in the table).
func TestSupportedTableMatchesAPI(t *testing.T) {
	for _, f := range supportedPaths() {
		if strings.ContainsAny(f.Path, "<>") {
			t.Errorf("unexpanded marker in %q", f.Path)
		}
	}
	// A field known to exist must be reachable through the table's tree.
	for _, p := range []string{"spec.containers[*].livenessProbe.httpGet.port", "spec.initContainers[*].env[*].valueFrom.fieldRef.fieldPath"} {
		if !supported().leaf[p] {
			t.Errorf("%s is not supported", p)
		}
	}
}

func TestFieldDocsUpToDate(t *testing.T) {
	want := FieldDocs()
	got, err := os.ReadFile("../docs/manifest-fields.md")
	if err != nil {
		t.Fatalf("%v (run `make docs`)", err)
	}
	if string(got) != want {
		t.Errorf("docs/manifest-fields.md is out of date with spec.SupportedFields: run `make docs`")
	}
}

// The examples `make run` starts must all parse.
func TestExampleManifests(t *testing.T) {
	files, _ := filepath.Glob("../manifests/examples/*.yaml")
	if len(files) < 5 {
		t.Fatalf("expected the five example pods, found %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data, Source{Path: f, NodeName: "n"}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestGRPCProbeParses(t *testing.T) {
	pod, err := Parse([]byte(base+"    readinessProbe: {grpc: {port: 9090, service: api}}\n"), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if g := pod.Spec.Containers[0].ReadinessProbe.GRPC; g == nil || g.Port != 9090 || *g.Service != "api" || pod.Spec.Containers[0].ReadinessProbe.PeriodSeconds != 10 {
		t.Errorf("grpc probe: %+v", pod.Spec.Containers[0].ReadinessProbe)
	}
}
