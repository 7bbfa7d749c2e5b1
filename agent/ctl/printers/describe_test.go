package printers

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func describeFixture() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "default", CreationTimestamp: ago(10 * time.Minute),
			Labels: map[string]string{"tier": "frontend", "app": "web"},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-a",
			Containers: []corev1.Container{{
				Name:  "nginx",
				Image: "nginx:1.25",
				Args:  []string{"-g", "daemon off;"},
				Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
				Env:   []corev1.EnvVar{{Name: "FOO", Value: "bar"}},
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi"), corev1.ResourceCPU: resource.MustParse("500m")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
				LivenessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/", Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTP,
					}},
					TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3,
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
		Status: corev1.PodStatus{
			Phase:     corev1.PodRunning,
			HostIP:    "192.168.1.10",
			PodIP:     "10.77.0.5",
			PodIPs:    []corev1.PodIP{{IP: "10.77.0.5"}},
			StartTime: agoPtr(10 * time.Minute),
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:        "nginx",
				ContainerID: "agent://abc123",
				Image:       "nginx:1.25",
				ImageID:     "sha256:deadbeef",
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(2 * time.Minute)}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					Reason: "Error", ExitCode: 1, StartedAt: ago(9*time.Minute + 55*time.Second), FinishedAt: ago(2*time.Minute + time.Second),
				}},
				Ready:        true,
				RestartCount: 3,
			}},
		},
	}
}

func TestDescribePod(t *testing.T) {
	events := testEvents() // BackOff and Pulled for web, Started for db (not shown)
	var b bytes.Buffer
	if err := DescribePod(&b, describeFixture(), events, now); err != nil {
		t.Fatal(err)
	}
	want := `Name:         web
Namespace:    default
Node:         node-a/192.168.1.10
Start Time:   Sat, 01 Mar 2025 11:50:00 +0000
Labels:       app=web
              tier=frontend
Annotations:  <none>
Status:       Running
IP:           10.77.0.5
IPs:
  IP:  10.77.0.5
Containers:
  nginx:
    Container ID:  agent://abc123
    Image:         nginx:1.25
    Image ID:      sha256:deadbeef
    Port:          80/TCP
    Host Port:     0/TCP
    Args:
      -g
      daemon off;
    State:          Running
      Started:      Sat, 01 Mar 2025 11:58:00 +0000
    Last State:     Terminated
      Reason:       Error
      Exit Code:    1
      Started:      Sat, 01 Mar 2025 11:50:05 +0000
      Finished:     Sat, 01 Mar 2025 11:57:59 +0000
    Ready:          True
    Restart Count:  3
    Limits:
      cpu:     500m
      memory:  128Mi
    Requests:
      cpu:     250m
      memory:  64Mi
    Liveness:  http-get http://:8080/ delay=0s timeout=1s period=10s #success=1 #failure=3
    Environment:
      FOO:  bar
    Mounts:
      /data from data (rw)
Conditions:
  Type              Status
  Initialized       True 
  Ready             True 
  ContainersReady   True 
  PodScheduled      True 
Volumes:
  data:
    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:      
    SizeLimit:   <unset>
QoS Class:       Burstable
Node-Selectors:  <none>
Tolerations:     <none>
Events:
  Type     Reason   Age              From    Message
  ----     ------   ----             ----    -------
  Normal   Pulled   10m              agentd  Container image "nginx:1.25" already present on machine
  Warning  BackOff  2m (x3 over 8m)  agentd  Back-off restarting failed container nginx in pod web_default
`
	if got := b.String(); got != want {
		t.Errorf("describe:\n%s\nwant:\n%s\ndiff: %s", got, want, firstDiff(got, want))
	}
}

// firstDiff names the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d: got %q, want %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}

// hasLine reports whether out has a line matching the regular expression re (anchored).
func hasLine(out, re string) bool {
	return regexp.MustCompile(`(?m)^` + re + `$`).MatchString(out)
}

func TestDescribePodStates(t *testing.T) {
	pod := withInit(newPod("job", corev1.PodPending,
		status("main", waiting("PodInitializing"), false)), 0,
		restarted(status("setup", terminated("", 3, 0), false), 2, time.Minute))
	pod.Spec.InitContainers[0].Command = []string{"sh", "-c", "exit 3"}
	pod.DeletionTimestamp = agoPtr(5 * time.Second)
	grace := int64(30)
	pod.DeletionGracePeriodSeconds = &grace
	pod.Status.Reason = "SomethingBad"
	pod.Status.Message = "it went wrong"
	prio := int32(1000)
	pod.Spec.Priority = &prio
	pod.Spec.PriorityClassName = "high"

	var b bytes.Buffer
	if err := DescribePod(&b, pod, nil, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()

	for _, re := range []string{
		`Priority:\s+1000`,
		`Priority Class Name:\s+high`,
		`Node:\s+<none>`,
		`Status:\s+Terminating \(lasts 5s\)`,
		`Termination Grace Period:\s+30s`,
		`Reason:\s+SomethingBad`,
		`Message:\s+it went wrong`,
		`IPs:\s+<none>`,
		`Init Containers:`,
		`  setup:`,
		`    Command:`,
		`      exit 3`,
		`    State:\s+Terminated`,
		`      Exit Code:\s+3`,
		`    Last State:\s+Terminated`,
		`      Reason:\s+Error`,
		`    Ready:\s+False`,
		`    Restart Count:\s+2`,
		`Containers:`,
		`  main:`,
		`    State:\s+Waiting`,
		`      Reason:\s+PodInitializing`,
		`    Environment:\s+<none>`,
		`    Mounts:\s+<none>`,
		`Volumes:\s+<none>`,
		`QoS Class:\s+BestEffort`,
		`Events:\s+<none>`,
	} {
		if !hasLine(out, re) {
			t.Errorf("describe output has no line matching %q:\n%s", re, out)
		}
	}
	// Init Containers come before Containers, and Priority Class Name right after Priority.
	if strings.Index(out, "Init Containers:") > strings.Index(out, "\nContainers:") {
		t.Errorf("Init Containers after Containers:\n%s", out)
	}
	if hasLine(out, `Service Account:.*`) {
		t.Errorf("Service Account printed although unset:\n%s", out)
	}
}

func TestDescribePodEventsOnlyForThePod(t *testing.T) {
	var b bytes.Buffer
	events := testEvents()[1:2] // only the db event
	if err := DescribePod(&b, describeFixture(), events, now); err != nil {
		t.Fatal(err)
	}
	if !hasLine(b.String(), `Events:\s+<none>`) || strings.Contains(b.String(), "postgres") {
		t.Errorf("another pod's event shown:\n%s", b.String())
	}
}

func TestDescribeProbe(t *testing.T) {
	svc := "health"
	tests := []struct {
		probe corev1.Probe
		want  string
	}{
		{corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
			InitialDelaySeconds: 5, TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3},
			"http-get http://:http/healthz delay=5s timeout=1s period=10s #success=1 #failure=3"},
		{corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "10.0.0.1", Path: "/", Port: intstr.FromInt32(443), Scheme: corev1.URISchemeHTTPS}},
			TimeoutSeconds: 2, PeriodSeconds: 5, SuccessThreshold: 1, FailureThreshold: 1},
			"http-get https://10.0.0.1:443/ delay=0s timeout=2s period=5s #success=1 #failure=1"},
		{corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}},
			TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3},
			"exec [cat /tmp/healthy] delay=0s timeout=1s period=10s #success=1 #failure=3"},
		{corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5432)}},
			TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3},
			"tcp-socket :5432 delay=0s timeout=1s period=10s #success=1 #failure=3"},
		{corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090, Service: &svc}},
			TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3},
			"grpc <pod>:9090 health delay=0s timeout=1s period=10s #success=1 #failure=3"},
	}
	for _, tt := range tests {
		if got := DescribeProbe(&tt.probe); got != tt.want {
			t.Errorf("DescribeProbe() = %q, want %q", got, tt.want)
		}
	}
}

func TestPodQOSClass(t *testing.T) {
	res := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	podWith := func(rs ...corev1.ResourceRequirements) *corev1.Pod {
		p := &corev1.Pod{}
		for _, r := range rs {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Resources: r})
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want corev1.PodQOSClass
	}{
		{"nothing set", podWith(corev1.ResourceRequirements{}), corev1.PodQOSBestEffort},
		{"only other resources", podWith(corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}), corev1.PodQOSBestEffort},
		{"requests only", podWith(corev1.ResourceRequirements{Requests: res("100m", "")}), corev1.PodQOSBurstable},
		{"limits equal requests", podWith(corev1.ResourceRequirements{Limits: res("1", "1Gi"), Requests: res("1000m", "1Gi")}), corev1.PodQOSGuaranteed},
		{"limits only (requests default to limits)", podWith(corev1.ResourceRequirements{Limits: res("1", "1Gi")}), corev1.PodQOSGuaranteed},
		{"requests below limits", podWith(corev1.ResourceRequirements{Limits: res("1", "1Gi"), Requests: res("500m", "1Gi")}), corev1.PodQOSBurstable},
		{"cpu limit without memory limit", podWith(corev1.ResourceRequirements{Limits: res("1", "")}), corev1.PodQOSBurstable},
		{"one guaranteed container, one best effort", podWith(corev1.ResourceRequirements{Limits: res("1", "1Gi")}, corev1.ResourceRequirements{}), corev1.PodQOSBurstable},
		{"status wins", func() *corev1.Pod {
			p := podWith(corev1.ResourceRequirements{})
			p.Status.QOSClass = corev1.PodQOSGuaranteed
			return p
		}(), corev1.PodQOSGuaranteed},
	}
	for _, tt := range tests {
		if got := PodQOSClass(tt.pod); got != tt.want {
			t.Errorf("%s: PodQOSClass() = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestDescribeEnvironmentAndTolerations(t *testing.T) {
	pod := describeFixture()
	c := &pod.Spec.Containers[0]
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels['app']"}}},
		corev1.EnvVar{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		corev1.EnvVar{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
		corev1.EnvVar{Name: "PASS", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
	)
	secs := int64(300)
	pod.Spec.Tolerations = []corev1.Toleration{
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs},
		{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web", Effect: corev1.TaintEffectNoSchedule},
	}
	var b bytes.Buffer
	if err := DescribePod(&b, pod, nil, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, re := range []string{
		`      POD_NAME:\s+web \(v1:metadata.name\)`,
		`      APP:\s+web \(v1:metadata.labels\['app'\]\)`,
		`      MEM:\s+128 \(limits.memory\)`,
		`      CPU:\s+1 \(limits.cpu\)`,
		`      PASS:\s+<set to the key 'password' in secret 'db'>\s+Optional: false`,
		`Tolerations:\s+dedicated=web:NoSchedule`,
		`\s+node.kubernetes.io/unreachable:NoExecute op=Exists for 300s`,
	} {
		if !hasLine(out, re) {
			t.Errorf("describe output has no line matching %q:\n%s", re, out)
		}
	}
}
