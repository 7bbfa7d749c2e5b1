package admission

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"privileged", "baseline", "restricted"} {
		l, err := ParseLevel(s)
		if err != nil || string(l) != s {
			t.Errorf("ParseLevel(%q) = %q, %v; want %q", s, l, err, s)
		}
	}
	for _, s := range []string{"", "Baseline", "RESTRICTED", " baseline", "base", "latest", "privileged:latest"} {
		l, err := ParseLevel(s)
		if err == nil {
			t.Errorf("ParseLevel(%q) = %q, want an error", s, l)
			continue
		}
		for _, want := range []string{"privileged", "baseline", "restricted"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseLevel(%q) error %q does not list %q", s, err, want)
			}
		}
		if s != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
			t.Errorf("ParseLevel(%q) error %q does not name the value it got", s, err)
		}
	}
}

// busybox is a plain pod as people write it: nothing set about security.
func busybox() (*metav1.ObjectMeta, *corev1.PodSpec) {
	return &metav1.ObjectMeta{Labels: map[string]string{"app": "busybox"}},
		&corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sleep", "inf"}}}}
}

// restricted is busybox made to pass the restricted level, with the four settings the level requires.
func restricted() (*metav1.ObjectMeta, *corev1.PodSpec) {
	meta, spec := busybox()
	spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	return meta, spec
}

func main0(spec *corev1.PodSpec) *corev1.SecurityContext {
	if spec.Containers[0].SecurityContext == nil {
		spec.Containers[0].SecurityContext = &corev1.SecurityContext{}
	}
	return spec.Containers[0].SecurityContext
}

const c0 = "spec.template.spec.containers[0]"

// Violations expected at each level; nil is allowed.
type verdicts struct{ baseline, restricted []Violation }

// The violations of busybox at restricted, in upstream's order, which later cases build on.
var (
	apeUnset = Violation{Rule: "allowPrivilegeEscalation != false", Fields: []string{c0 + ".securityContext.allowPrivilegeEscalation"},
		Detail: `container "main" must set securityContext.allowPrivilegeEscalation=false`}
	dropUnset = Violation{Rule: "unrestricted capabilities", Fields: []string{c0 + ".securityContext.capabilities.drop"},
		Detail: `container "main" must set securityContext.capabilities.drop=["ALL"]`}
	nonRootUnset = Violation{Rule: "runAsNonRoot != true", Fields: []string{c0 + ".securityContext.runAsNonRoot"},
		Detail: `pod or container "main" must set securityContext.runAsNonRoot=true`}
	seccompUnset = Violation{Rule: "seccompProfile", Fields: []string{c0 + ".securityContext.seccompProfile"},
		Detail: `pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`}
)

func TestCheck(t *testing.T) {
	privileged := Violation{Rule: "privileged", Fields: []string{c0 + ".securityContext.privileged"},
		Detail: `container "main" must not set securityContext.privileged=true`}
	hostPath := Violation{Rule: "hostPath volumes", Fields: []string{"spec.template.spec.volumes[1].hostPath"}, Detail: `volume "root"`}
	restrictedHostPath := Violation{Rule: "restricted volume types", Fields: []string{"spec.template.spec.volumes[1].hostPath"},
		Detail: `volume "root" uses restricted volume type "hostPath"`}

	cases := []struct {
		name string
		pod  func() (*metav1.ObjectMeta, *corev1.PodSpec)
		want verdicts
	}{{
		name: "plain busybox passes baseline, not restricted",
		pod:  busybox,
		want: verdicts{restricted: []Violation{apeUnset, dropUnset, nonRootUnset, seccompUnset}},
	}, {
		name: "a pod made for restricted passes every level",
		pod:  restricted,
	}, {
		name: "restricted may add NET_BIND_SERVICE",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
			return meta, spec
		},
	}, {
		name: "privileged container",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).Privileged = ptr(true)
			return meta, spec
		},
		want: verdicts{baseline: []Violation{privileged}, restricted: []Violation{privileged}},
	}, {
		name: "privileged=false is allowed",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).Privileged = ptr(false)
			return meta, spec
		},
	}, {
		name: "host network and PID",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			spec.HostNetwork, spec.HostPID = true, true
			return meta, spec
		},
		want: verdicts{
			baseline: []Violation{{Rule: "host namespaces", Fields: []string{"spec.template.spec.hostNetwork", "spec.template.spec.hostPID"},
				Detail: "hostNetwork=true, hostPID=true"}},
			restricted: []Violation{{Rule: "host namespaces", Fields: []string{"spec.template.spec.hostNetwork", "spec.template.spec.hostPID"},
				Detail: "hostNetwork=true, hostPID=true"}},
		},
	}, {
		name: "hostPath volume; restricted words it as a volume type",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			spec.Volumes = []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}},
			}
			return meta, spec
		},
		want: verdicts{baseline: []Violation{hostPath}, restricted: []Violation{restrictedHostPath}},
	}, {
		name: "host port",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 8080, HostPort: 8080}}
			return meta, spec
		},
		want: verdicts{
			baseline:   []Violation{{Rule: "hostPort", Fields: []string{c0 + ".ports[1].hostPort"}, Detail: `container "main" uses hostPort 8080`}},
			restricted: []Violation{{Rule: "hostPort", Fields: []string{c0 + ".ports[1].hostPort"}, Detail: `container "main" uses hostPort 8080`}},
		},
	}, {
		name: "SYS_ADMIN added",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).Capabilities.Add = []corev1.Capability{"SYS_ADMIN"}
			return meta, spec
		},
		want: verdicts{
			baseline: []Violation{{Rule: "non-default capabilities", Fields: []string{c0 + ".securityContext.capabilities.add"},
				Detail: `container "main" must not include "SYS_ADMIN" in securityContext.capabilities.add`}},
			restricted: []Violation{{Rule: "unrestricted capabilities", Fields: []string{c0 + ".securityContext.capabilities.add"},
				Detail: `container "main" must not include "SYS_ADMIN" in securityContext.capabilities.add`}},
		},
	}, {
		name: "NET_RAW added: baseline forbids it though the runtime's default set has it",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := busybox()
			main0(spec).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW", "CHOWN"}}
			return meta, spec
		},
		want: verdicts{
			baseline: []Violation{{Rule: "non-default capabilities", Fields: []string{c0 + ".securityContext.capabilities.add"},
				Detail: `container "main" must not include "NET_RAW" in securityContext.capabilities.add`}},
			restricted: []Violation{apeUnset, {Rule: "unrestricted capabilities",
				Fields: []string{c0 + ".securityContext.capabilities.drop", c0 + ".securityContext.capabilities.add"},
				Detail: `container "main" must set securityContext.capabilities.drop=["ALL"]; container "main" must not include "CHOWN", "NET_RAW" in securityContext.capabilities.add`,
			}, nonRootUnset, seccompUnset},
		},
	}, {
		name: "restricted without runAsNonRoot",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			spec.SecurityContext.RunAsNonRoot = nil
			return meta, spec
		},
		want: verdicts{restricted: []Violation{nonRootUnset}},
	}, {
		name: "restricted with a container that sets runAsNonRoot=false over the pod's true",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).RunAsNonRoot = ptr(false)
			return meta, spec
		},
		want: verdicts{restricted: []Violation{{Rule: "runAsNonRoot != true", Fields: []string{c0 + ".securityContext.runAsNonRoot"},
			Detail: `container "main" must not set securityContext.runAsNonRoot=false`}}},
	}, {
		name: "restricted without drop ALL",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).Capabilities.Drop = []corev1.Capability{"NET_RAW"}
			return meta, spec
		},
		want: verdicts{restricted: []Violation{dropUnset}},
	}, {
		name: "restricted without a seccomp profile",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			spec.SecurityContext.SeccompProfile = nil
			return meta, spec
		},
		want: verdicts{restricted: []Violation{seccompUnset}},
	}, {
		name: "seccomp Unconfined on the pod",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			spec.SecurityContext.SeccompProfile.Type = corev1.SeccompProfileTypeUnconfined
			return meta, spec
		},
		want: verdicts{
			baseline: []Violation{{Rule: "seccompProfile", Fields: []string{"spec.template.spec.securityContext.seccompProfile"},
				Detail: `pod must not set securityContext.seccompProfile.type to "Unconfined"`}},
			restricted: []Violation{{Rule: "seccompProfile", Fields: []string{"spec.template.spec.securityContext.seccompProfile"},
				Detail: `pod must not set securityContext.seccompProfile.type to "Unconfined"`}},
		},
	}, {
		name: "restricted with allowPrivilegeEscalation=true",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			main0(spec).AllowPrivilegeEscalation = ptr(true)
			return meta, spec
		},
		want: verdicts{restricted: []Violation{apeUnset}},
	}, {
		name: "privileged init and ephemeral containers",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			sc := spec.Containers[0].SecurityContext.DeepCopy()
			sc.Privileged = ptr(true)
			spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", SecurityContext: sc}}
			spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: "busybox", SecurityContext: sc}}}
			return meta, spec
		},
		want: func() verdicts {
			v := Violation{Rule: "privileged", Fields: []string{
				"spec.template.spec.initContainers[0].securityContext.privileged",
				"spec.template.spec.ephemeralContainers[0].securityContext.privileged",
			}, Detail: `containers "init", "debug" must not set securityContext.privileged=true`}
			return verdicts{baseline: []Violation{v}, restricted: []Violation{v}}
		}(),
	}, {
		name: "AppArmor unconfined by annotation",
		pod: func() (*metav1.ObjectMeta, *corev1.PodSpec) {
			meta, spec := restricted()
			meta.Annotations = map[string]string{
				"container.apparmor.security.beta.kubernetes.io/main": "unconfined",
				"example.com/owner": "team-a",
			}
			return meta, spec
		},
		want: func() verdicts {
			v := Violation{Rule: "forbidden AppArmor profile",
				Fields: []string{"spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/main]"},
				Detail: `annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/main="unconfined""`}
			return verdicts{baseline: []Violation{v}, restricted: []Violation{v}}
		}(),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, lc := range []struct {
				level Level
				want  []Violation
			}{{Privileged, nil}, {Baseline, tc.want.baseline}, {Restricted, tc.want.restricted}} {
				meta, spec := tc.pod()
				got := Check(lc.level, meta, spec, "spec.template.")
				if !equalViolations(got, lc.want) {
					t.Errorf("%s:\ngot  %s\nwant %s", lc.level, describe(got), describe(lc.want))
				}
			}
		})
	}
}

func TestCheckPrivilegedAllowsEverything(t *testing.T) {
	_, spec := busybox()
	spec.HostNetwork, spec.HostPID, spec.HostIPC = true, true, true
	spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	main0(spec).Privileged = ptr(true)
	main0(spec).Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}
	main0(spec).RunAsUser = ptr(int64(0))
	spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
	if got := Check(Privileged, nil, spec, ""); got != nil {
		t.Errorf("privileged: got %s, want nothing", describe(got))
	}
	// The same pod, so that the case above is not passing for want of anything to find.
	if got := Check(Baseline, nil, spec, ""); len(got) != 5 {
		t.Errorf("baseline: got %s, want 5 violations", describe(got))
	}
}

func TestCheckUnknownLevelFailsClosed(t *testing.T) {
	meta, spec := busybox()
	got := Check(Level("Baseline"), meta, spec, "")
	if want := Check(Restricted, meta, spec, ""); !equalViolations(got, want) || len(want) == 0 {
		t.Errorf("unknown level: got %s, want restricted's %s", describe(got), describe(want))
	}
}

func TestCheckPodPaths(t *testing.T) {
	_, spec := busybox()
	main0(spec).Privileged = ptr(true)
	got := Check(Baseline, nil, spec, "")
	if len(got) != 1 || !slices.Equal(got[0].Fields, []string{"spec.containers[0].securityContext.privileged"}) {
		t.Errorf("got %s, want the field of a pod, spec.containers[0].securityContext.privileged", describe(got))
	}
}

func TestError(t *testing.T) {
	if err := Error(Baseline, nil); err != nil {
		t.Errorf("Error with no violations = %v, want nil", err)
	}

	_, spec := busybox()
	main0(spec).Privileged = ptr(true)
	spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	err := Error(Baseline, Check(Baseline, nil, spec, "spec.template."))
	want := `violates PodSecurity "baseline:latest": hostPath volumes (volume "root"), privileged (container "main" must not set securityContext.privileged=true)
- spec.template.spec.volumes[0].hostPath: hostPath volumes
- spec.template.spec.containers[0].securityContext.privileged: privileged`
	if err == nil || err.Error() != want {
		t.Errorf("Error:\n%v\nwant:\n%s", err, want)
	}
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("Error(...) is not ErrForbidden")
	}
	if !errors.Is(fmt.Errorf("daemonset default/agent: %w", err), ErrForbidden) {
		t.Errorf("a wrapped Error(...) is not ErrForbidden")
	}

	// A rule with no fields (and no detail) keeps its place in the sentence and adds no line.
	err = Error(Restricted, []Violation{{Rule: "seccompProfile"}, {Rule: "privileged", Fields: []string{"spec.x"}, Detail: "d"}})
	want = `violates PodSecurity "restricted:latest": seccompProfile, privileged (d)
- spec.x: privileged`
	if err.Error() != want {
		t.Errorf("Error:\n%v\nwant:\n%s", err, want)
	}
}

func equalViolations(a, b []Violation) bool {
	return slices.EqualFunc(a, b, func(x, y Violation) bool {
		return x.Rule == y.Rule && x.Detail == y.Detail && slices.Equal(x.Fields, y.Fields)
	})
}

func describe(vs []Violation) string {
	if len(vs) == 0 {
		return "(allowed)"
	}
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  %q %q %q", v.Rule, v.Detail, v.Fields)
	}
	return b.String()
}
