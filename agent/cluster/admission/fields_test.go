package admission

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// A new upstream check without a finder would report its violations with no fields: this names it.
func TestFinderForEveryDefaultCheck(t *testing.T) {
	for _, c := range policy.DefaultChecks() {
		if finderFor(c.ID) == nil {
			t.Errorf("upstream check %q has no field finder: add it to finderFor after its \"Restricted Fields\"", c.ID)
		}
	}
}

// Every check upstream runs at a level is recorded once, in the order of EvaluatePod's results.
func TestRecordRuns(t *testing.T) {
	u := upstreamChecks()
	for _, l := range []api.Level{api.LevelBaseline, api.LevelRestricted} {
		lv := api.LevelVersion{Level: l, Version: api.LatestVersion()}
		results := u.evaluator.EvaluatePod(lv, &metav1.ObjectMeta{}, &corev1.PodSpec{})
		if len(u.ran[l]) != len(results) || len(results) == 0 {
			t.Errorf("%s: recorded %d checks, EvaluatePod returns %d results", l, len(u.ran[l]), len(results))
		}
	}
	ids := func(l api.Level) (ids []policy.CheckID) {
		for _, rc := range u.ran[l] {
			ids = append(ids, rc.id)
		}
		return ids
	}
	// Restricted runs its own capabilities check instead of baseline's.
	if !slices.Contains(ids(api.LevelBaseline), "capabilities_baseline") || slices.Contains(ids(api.LevelRestricted), "capabilities_baseline") ||
		!slices.Contains(ids(api.LevelRestricted), "capabilities_restricted") {
		t.Errorf("baseline runs %v\nrestricted runs %v", ids(api.LevelBaseline), ids(api.LevelRestricted))
	}
}

// upstreamCheck is the check with id as upstream runs it at level "latest".
func upstreamCheck(t *testing.T, id policy.CheckID) ranCheck {
	t.Helper()
	u := upstreamChecks()
	for _, l := range []api.Level{api.LevelBaseline, api.LevelRestricted} {
		for _, rc := range u.ran[l] {
			if rc.id == id {
				return rc
			}
		}
	}
	t.Fatalf("upstream runs no check %q", id)
	return ranCheck{}
}

func container(name string, sc *corev1.SecurityContext) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", SecurityContext: sc}
}

func TestForbiddenFields(t *testing.T) {
	hostPath := corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}
	emptyDir := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	dropAll := []corev1.Capability{"ALL"}
	httpGet := func(host string) *corev1.HTTPGetAction { return &corev1.HTTPGetAction{Host: host} }

	cases := []struct {
		name string
		id   policy.CheckID
		meta metav1.ObjectMeta
		spec corev1.PodSpec
		want []string
	}{{
		name: "privileged: init, regular and ephemeral containers",
		id:   "privileged",
		spec: corev1.PodSpec{
			InitContainers: []corev1.Container{container("init", &corev1.SecurityContext{Privileged: ptr(true)})},
			Containers: []corev1.Container{
				container("a", &corev1.SecurityContext{Privileged: ptr(false)}),
				container("b", nil),
				container("c", &corev1.SecurityContext{Privileged: ptr(true)}),
			},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)}}}},
		},
		want: []string{
			"spec.initContainers[0].securityContext.privileged",
			"spec.containers[2].securityContext.privileged",
			"spec.ephemeralContainers[0].securityContext.privileged",
		},
	}, {
		name: "allowPrivilegeEscalation: unset and true",
		id:   "allowPrivilegeEscalation",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("a", &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false)}),
			container("b", nil),
			container("c", &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(true)}),
		}},
		want: []string{"spec.containers[1].securityContext.allowPrivilegeEscalation", "spec.containers[2].securityContext.allowPrivilegeEscalation"},
	}, {
		name: "procMount Unmasked",
		id:   "procMount",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("a", &corev1.SecurityContext{ProcMount: ptr(corev1.DefaultProcMount)}),
			container("b", &corev1.SecurityContext{ProcMount: ptr(corev1.UnmaskedProcMount)}),
		}},
		want: []string{"spec.containers[1].securityContext.procMount"},
	}, {
		name: "procMount Unmasked, restricted: not relaxed for user namespaces",
		id:   "procMount_restricted",
		spec: corev1.PodSpec{HostUsers: ptr(false), Containers: []corev1.Container{
			container("a", &corev1.SecurityContext{ProcMount: ptr(corev1.UnmaskedProcMount)}),
		}},
		want: []string{"spec.containers[0].securityContext.procMount"},
	}, {
		name: "baseline capabilities: only additions beyond the default set",
		id:   "capabilities_baseline",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("a", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE", "CHOWN"}}}),
			container("b", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}),
			container("c", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}}),
			container("d", nil),
		}},
		want: []string{"spec.containers[1].securityContext.capabilities.add", "spec.containers[2].securityContext.capabilities.add"},
	}, {
		name: "restricted capabilities: drop ALL, add at most NET_BIND_SERVICE",
		id:   "capabilities_restricted",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("ok", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: dropAll, Add: []corev1.Capability{"NET_BIND_SERVICE"}}}),
			container("nothing", nil),
			container("adds", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: dropAll, Add: []corev1.Capability{"CHOWN"}}}),
			container("both", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}, Add: []corev1.Capability{"SYS_ADMIN"}}}),
		}},
		want: []string{
			"spec.containers[1].securityContext.capabilities.drop",
			"spec.containers[2].securityContext.capabilities.add",
			"spec.containers[3].securityContext.capabilities.drop",
			"spec.containers[3].securityContext.capabilities.add",
		},
	}, {
		name: "host namespaces",
		id:   "hostNamespaces",
		spec: corev1.PodSpec{HostNetwork: true, HostIPC: true},
		want: []string{"spec.hostNetwork", "spec.hostIPC"},
	}, {
		name: "hostPath volumes",
		id:   "hostPathVolumes",
		spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: emptyDir}, {Name: "root", VolumeSource: hostPath}}},
		want: []string{"spec.volumes[1].hostPath"},
	}, {
		name: "restricted volume types",
		id:   "restrictedVolumes",
		spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "tmp", VolumeSource: emptyDir},
			{Name: "root", VolumeSource: hostPath},
			{Name: "share", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/"}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
			{Name: "nothing"},
		}},
		want: []string{"spec.volumes[1].hostPath", "spec.volumes[2].nfs", "spec.volumes[4]"},
	}, {
		name: "host ports of init and regular containers",
		id:   "hostPorts",
		spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{ContainerPort: 53, HostPort: 53}}}},
			Containers:     []corev1.Container{{Name: "main", Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 443, HostPort: 443}}}},
		},
		want: []string{"spec.initContainers[0].ports[0].hostPort", "spec.containers[0].ports[1].hostPort"},
	}, {
		name: "probe and lifecycle hosts",
		id:   "hostProbesAndHostLifecycle",
		spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:           "main",
			LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: httpGet("10.0.0.1")}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}},
			StartupProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: "metadata"}}},
			Lifecycle: &corev1.Lifecycle{
				PostStart: &corev1.LifecycleHandler{HTTPGet: httpGet("")},
				PreStop:   &corev1.LifecycleHandler{HTTPGet: httpGet("example.com")},
			},
		}}},
		want: []string{
			"spec.containers[0].livenessProbe.httpGet.host",
			"spec.containers[0].startupProbe.tcpSocket.host",
			"spec.containers[0].lifecycle.preStop.httpGet.host",
		},
	}, {
		name: "sysctls outside the safe set",
		id:   "sysctls",
		spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
			{Name: "kernel.shm_rmid_forced", Value: "1"}, {Name: "kernel.msgmax", Value: "65536"},
		}}},
		want: []string{"spec.securityContext.sysctls[1].name"},
	}, {
		name: "runAsNonRoot unset everywhere and false on a container",
		id:   "runAsNonRoot",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("unset", nil),
			container("true", &corev1.SecurityContext{RunAsNonRoot: ptr(true)}),
			container("false", &corev1.SecurityContext{RunAsNonRoot: ptr(false)}),
		}},
		want: []string{"spec.containers[0].securityContext.runAsNonRoot", "spec.containers[2].securityContext.runAsNonRoot"},
	}, {
		name: "runAsNonRoot true on the pod covers containers that inherit it",
		id:   "runAsNonRoot",
		spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, Containers: []corev1.Container{
			container("inherits", nil),
			container("false", &corev1.SecurityContext{RunAsNonRoot: ptr(false)}),
		}},
		want: []string{"spec.containers[1].securityContext.runAsNonRoot"},
	}, {
		name: "runAsNonRoot false on the pod is the field to change",
		id:   "runAsNonRoot",
		spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr(false)}, Containers: []corev1.Container{
			container("inherits", nil),
			container("true", &corev1.SecurityContext{RunAsNonRoot: ptr(true)}),
		}},
		want: []string{"spec.securityContext.runAsNonRoot"},
	}, {
		name: "runAsNonRoot is relaxed in a user namespace",
		id:   "runAsNonRoot",
		spec: corev1.PodSpec{HostUsers: ptr(false), Containers: []corev1.Container{container("unset", nil)}},
	}, {
		name: "runAsUser 0",
		id:   "runAsUser",
		spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr(int64(0))}, Containers: []corev1.Container{
			container("inherits", nil),
			container("1000", &corev1.SecurityContext{RunAsUser: ptr(int64(1000))}),
			container("0", &corev1.SecurityContext{RunAsUser: ptr(int64(0))}),
		}},
		want: []string{"spec.securityContext.runAsUser", "spec.containers[2].securityContext.runAsUser"},
	}, {
		name: "seLinuxOptions",
		id:   "seLinuxOptions",
		spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Type: "container_t"}}, Containers: []corev1.Container{
			container("user", &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{User: "system_u"}}),
			container("spc", &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Type: "spc_t"}}),
			container("engine", &corev1.SecurityContext{SELinuxOptions: &corev1.SELinuxOptions{Type: "container_engine_t"}}),
		}},
		want: []string{"spec.containers[0].securityContext.seLinuxOptions", "spec.containers[1].securityContext.seLinuxOptions"},
	}, {
		name: "baseline seccomp: unset is fine, Unconfined is not",
		id:   "seccompProfile_baseline",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("unset", nil),
			container("unconfined", &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}),
		}},
		want: []string{"spec.containers[1].securityContext.seccompProfile"},
	}, {
		name: "restricted seccomp: a container with no profile and none on the pod",
		id:   "seccompProfile_restricted",
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("default", &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}),
			container("unset", nil),
		}},
		want: []string{"spec.containers[1].securityContext.seccompProfile"},
	}, {
		name: "restricted seccomp: Unconfined on the pod",
		id:   "seccompProfile_restricted",
		spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			Containers:      []corev1.Container{container("inherits", nil)},
		},
		want: []string{"spec.securityContext.seccompProfile"},
	}, {
		name: "restricted seccomp: Windows pods are exempt",
		id:   "seccompProfile_restricted",
		spec: corev1.PodSpec{OS: &corev1.PodOS{Name: corev1.Windows}, Containers: []corev1.Container{container("unset", nil)}},
	}, {
		name: "AppArmor by annotation and by field",
		id:   "appArmorProfile",
		meta: metav1.ObjectMeta{Annotations: map[string]string{
			"container.apparmor.security.beta.kubernetes.io/b": "unconfined",
			"container.apparmor.security.beta.kubernetes.io/a": "runtime/default",
			"example.com/unconfined":                           "unconfined",
		}},
		spec: corev1.PodSpec{Containers: []corev1.Container{
			container("a", &corev1.SecurityContext{AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}}),
			container("b", nil),
		}},
		want: []string{
			"metadata.annotations[container.apparmor.security.beta.kubernetes.io/b]",
			"spec.containers[0].securityContext.appArmorProfile",
		},
	}, {
		name: "Windows hostProcess",
		id:   "windowsHostProcess",
		spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}},
			Containers: []corev1.Container{
				container("inherits", nil),
				container("false", &corev1.SecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptr(false)}}),
				container("true", &corev1.SecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}}),
			},
		},
		want: []string{"spec.securityContext.windowsOptions.hostProcess", "spec.containers[2].securityContext.windowsOptions.hostProcess"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := upstreamCheck(t, tc.id)
			got := forbiddenFields(rc, &tc.meta, &tc.spec)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			// The fields are those of a pod the check forbids; allowed pods have none.
			if allowed := rc.check(&tc.meta, &tc.spec).Allowed; allowed != (len(tc.want) == 0) {
				t.Errorf("upstream's %s allows the pod: %v, but want fields %q", tc.id, allowed, tc.want)
			}
		})
	}
}

func TestVolumeType(t *testing.T) {
	for _, tc := range []struct {
		src  corev1.VolumeSource
		want string
	}{
		{corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{}}, "hostPath"},
		{corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{}}, "persistentVolumeClaim"},
		{corev1.VolumeSource{Image: &corev1.ImageVolumeSource{}}, "image"},
		{corev1.VolumeSource{}, ""},
	} {
		if got := volumeType(&tc.src); got != tc.want {
			t.Errorf("volumeType(%+v) = %q, want %q", tc.src, got, tc.want)
		}
	}
}
