package admission

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/policy"
)

// A fieldFinder lists the fields of a pod that one check reads, each with the smallest pod that holds just that
// field. It knows where a check looks, never which values it forbids: forbiddenFields asks the check itself about
// each candidate, so the rules are upstream's only and a new upstream version moves the fields with the rule.
type fieldFinder func(meta *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate

// candidate is one field a check may forbid, and a pod that holds nothing else the check reads.
type candidate struct {
	path string // from the pod: "spec.…" or "metadata.…"
	meta metav1.ObjectMeta
	spec corev1.PodSpec
}

// forbiddenFields are the fields of the pod that make rc forbid it: the candidates whose own pod rc forbids.
func forbiddenFields(rc ranCheck, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	find := finderFor(rc.id)
	if find == nil {
		return nil
	}
	var paths []string
	for _, c := range find(meta, spec) {
		// What a check relaxes for the whole pod (Windows pods, user namespaces) applies to each probe as well.
		c.spec.OS, c.spec.HostUsers = spec.OS, spec.HostUsers
		if !rc.check(&c.meta, &c.spec).Allowed {
			paths = append(paths, c.path)
		}
	}
	return paths
}

// finderFor is where each of upstream's checks (policy.DefaultChecks, by ID) looks in a pod, after the "Restricted
// Fields" of its documentation. A check without a finder still reports its violation, with no fields.
func finderFor(id policy.CheckID) fieldFinder {
	switch id {
	case "privileged":
		return containerSetting("securityContext.privileged", func(sc *corev1.SecurityContext) corev1.SecurityContext {
			return corev1.SecurityContext{Privileged: sc.Privileged}
		})
	case "allowPrivilegeEscalation":
		return containerSetting("securityContext.allowPrivilegeEscalation", func(sc *corev1.SecurityContext) corev1.SecurityContext {
			return corev1.SecurityContext{AllowPrivilegeEscalation: sc.AllowPrivilegeEscalation}
		})
	case "procMount", "procMount_restricted":
		return containerSetting("securityContext.procMount", func(sc *corev1.SecurityContext) corev1.SecurityContext {
			return corev1.SecurityContext{ProcMount: sc.ProcMount}
		})
	case "capabilities_baseline", "capabilities_restricted":
		return capabilityFields
	case "hostNamespaces":
		return hostNamespaceFields
	case "hostPathVolumes", "restrictedVolumes":
		return volumeFields
	case "hostPorts":
		return hostPortFields
	case "hostProbesAndHostLifecycle":
		return probeHostFields
	case "sysctls":
		return sysctlFields
	case "runAsNonRoot":
		return inheritedSetting("securityContext.runAsNonRoot",
			func(sc *corev1.PodSecurityContext) (corev1.PodSecurityContext, bool) {
				return corev1.PodSecurityContext{RunAsNonRoot: sc.RunAsNonRoot}, sc.RunAsNonRoot != nil
			},
			func(sc *corev1.SecurityContext) (corev1.SecurityContext, bool) {
				return corev1.SecurityContext{RunAsNonRoot: sc.RunAsNonRoot}, sc.RunAsNonRoot != nil
			})
	case "runAsUser":
		return inheritedSetting("securityContext.runAsUser",
			func(sc *corev1.PodSecurityContext) (corev1.PodSecurityContext, bool) {
				return corev1.PodSecurityContext{RunAsUser: sc.RunAsUser}, sc.RunAsUser != nil
			},
			func(sc *corev1.SecurityContext) (corev1.SecurityContext, bool) {
				return corev1.SecurityContext{RunAsUser: sc.RunAsUser}, sc.RunAsUser != nil
			})
	case "seLinuxOptions":
		return inheritedSetting("securityContext.seLinuxOptions",
			func(sc *corev1.PodSecurityContext) (corev1.PodSecurityContext, bool) {
				return corev1.PodSecurityContext{SELinuxOptions: sc.SELinuxOptions}, sc.SELinuxOptions != nil
			},
			func(sc *corev1.SecurityContext) (corev1.SecurityContext, bool) {
				return corev1.SecurityContext{SELinuxOptions: sc.SELinuxOptions}, sc.SELinuxOptions != nil
			})
	case "seccompProfile_baseline", "seccompProfile_restricted":
		return inheritedSetting("securityContext.seccompProfile",
			func(sc *corev1.PodSecurityContext) (corev1.PodSecurityContext, bool) {
				return corev1.PodSecurityContext{SeccompProfile: sc.SeccompProfile}, sc.SeccompProfile != nil
			},
			func(sc *corev1.SecurityContext) (corev1.SecurityContext, bool) {
				return corev1.SecurityContext{SeccompProfile: sc.SeccompProfile}, sc.SeccompProfile != nil
			})
	case "appArmorProfile":
		return both(annotationFields, inheritedSetting("securityContext.appArmorProfile",
			func(sc *corev1.PodSecurityContext) (corev1.PodSecurityContext, bool) {
				return corev1.PodSecurityContext{AppArmorProfile: sc.AppArmorProfile}, sc.AppArmorProfile != nil
			},
			func(sc *corev1.SecurityContext) (corev1.SecurityContext, bool) {
				return corev1.SecurityContext{AppArmorProfile: sc.AppArmorProfile}, sc.AppArmorProfile != nil
			}))
	case "windowsHostProcess":
		hostProcess := func(o *corev1.WindowsSecurityContextOptions) (*corev1.WindowsSecurityContextOptions, bool) {
			if o == nil || o.HostProcess == nil {
				return nil, false
			}
			return &corev1.WindowsSecurityContextOptions{HostProcess: o.HostProcess}, true
		}
		return inheritedSetting("securityContext.windowsOptions.hostProcess",
			func(sc *corev1.PodSecurityContext) (corev1.PodSecurityContext, bool) {
				o, set := hostProcess(sc.WindowsOptions)
				return corev1.PodSecurityContext{WindowsOptions: o}, set
			},
			func(sc *corev1.SecurityContext) (corev1.SecurityContext, bool) {
				o, set := hostProcess(sc.WindowsOptions)
				return corev1.SecurityContext{WindowsOptions: o}, set
			})
	}
	return nil
}

// eachContainer calls f with every container of the pod and its path, in the order upstream's checks visit them.
func eachContainer(spec *corev1.PodSpec, f func(path string, c *corev1.Container)) {
	for i := range spec.InitContainers {
		f(fmt.Sprintf("spec.initContainers[%d]", i), &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		f(fmt.Sprintf("spec.containers[%d]", i), &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		f(fmt.Sprintf("spec.ephemeralContainers[%d]", i), (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
}

// only is a pod with just the container c.
func only(c corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{c}}
}

func securityContext(c *corev1.Container) *corev1.SecurityContext {
	if c.SecurityContext == nil {
		return &corev1.SecurityContext{}
	}
	return c.SecurityContext
}

func podSecurityContext(spec *corev1.PodSpec) *corev1.PodSecurityContext {
	if spec.SecurityContext == nil {
		return &corev1.PodSecurityContext{}
	}
	return spec.SecurityContext
}

// containerSetting finds a securityContext setting only containers have (at field under the container): every
// container is a candidate, alone with its value of the setting, unset included (restricted forbids some unset).
func containerSetting(field string, setting func(*corev1.SecurityContext) corev1.SecurityContext) fieldFinder {
	return func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
		var cs []candidate
		eachContainer(spec, func(path string, c *corev1.Container) {
			sc := setting(securityContext(c))
			cs = append(cs, candidate{path: path + "." + field, spec: only(corev1.Container{Name: c.Name, SecurityContext: &sc})})
		})
		return cs
	}
}

// inheritedSetting finds a securityContext setting (at field under the pod's spec and under each container) that
// the pod sets for all its containers and a container may override. The pod's value is a candidate when it is
// set; a container's when it is set, or when neither it nor the pod sets it (restricted forbids some unset values:
// "pod or container "main" must set securityContext.runAsNonRoot=true"). A container that inherits the pod's value
// is left to the pod's candidate: that is the field to change.
func inheritedSetting(
	field string,
	pod func(*corev1.PodSecurityContext) (corev1.PodSecurityContext, bool),
	container func(*corev1.SecurityContext) (corev1.SecurityContext, bool),
) fieldFinder {
	return func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
		var cs []candidate
		psc, podSet := pod(podSecurityContext(spec))
		if podSet {
			cs = append(cs, candidate{path: "spec." + field, spec: corev1.PodSpec{SecurityContext: &psc}})
		}
		eachContainer(spec, func(path string, c *corev1.Container) {
			sc, set := container(securityContext(c))
			if !set && podSet {
				return
			}
			cs = append(cs, candidate{path: path + "." + field, spec: only(corev1.Container{Name: c.Name, SecurityContext: &sc})})
		})
		return cs
	}
}

// capabilityFields finds a container's capabilities.drop (restricted requires ALL) and capabilities.add. The add
// list is asked about with ALL dropped, so that a missing drop, its own candidate, does not make the add look
// forbidden.
func capabilityFields(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
	var cs []candidate
	eachContainer(spec, func(path string, c *corev1.Container) {
		var caps corev1.Capabilities
		if sc := securityContext(c); sc.Capabilities != nil {
			caps = *sc.Capabilities
		}
		field := path + ".securityContext.capabilities"
		cs = append(cs, candidate{path: field + ".drop", spec: only(corev1.Container{Name: c.Name,
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: caps.Drop}}})})
		if len(caps.Add) > 0 {
			cs = append(cs, candidate{path: field + ".add", spec: only(corev1.Container{Name: c.Name,
				SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps.Add}}})})
		}
	})
	return cs
}

func hostNamespaceFields(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
	return []candidate{
		{path: "spec.hostNetwork", spec: corev1.PodSpec{HostNetwork: spec.HostNetwork}},
		{path: "spec.hostPID", spec: corev1.PodSpec{HostPID: spec.HostPID}},
		{path: "spec.hostIPC", spec: corev1.PodSpec{HostIPC: spec.HostIPC}},
	}
}

// volumeFields finds each volume's source, "spec.volumes[i].<type>" (hostPath, nfs, ...).
func volumeFields(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
	var cs []candidate
	for i, v := range spec.Volumes {
		path := fmt.Sprintf("spec.volumes[%d]", i)
		if t := volumeType(&v.VolumeSource); t != "" {
			path += "." + t
		}
		cs = append(cs, candidate{path: path, spec: corev1.PodSpec{Volumes: []corev1.Volume{v}}})
	}
	return cs
}

// volumeType is the JSON name of the source a volume sets ("hostPath", "emptyDir", ...), read from the API type
// rather than listed here, so a volume type added to k8s.io/api is named too. "" when it sets none.
func volumeType(src *corev1.VolumeSource) string {
	v := reflect.ValueOf(src).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return ""
}

func hostPortFields(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
	var cs []candidate
	eachContainer(spec, func(path string, c *corev1.Container) {
		for j, p := range c.Ports {
			cs = append(cs, candidate{
				path: fmt.Sprintf("%s.ports[%d].hostPort", path, j),
				spec: only(corev1.Container{Name: c.Name, Ports: []corev1.ContainerPort{p}}),
			})
		}
	})
	return cs
}

// probeHostFields finds the host of each HTTP and TCP probe and lifecycle hook.
func probeHostFields(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
	var cs []candidate
	eachContainer(spec, func(path string, c *corev1.Container) {
		add := func(field string, holder corev1.Container) {
			holder.Name = c.Name
			cs = append(cs, candidate{path: path + "." + field, spec: only(holder)})
		}
		probes := []struct {
			field string
			probe *corev1.Probe
			put   func(*corev1.Container, *corev1.Probe)
		}{
			{"livenessProbe", c.LivenessProbe, func(c *corev1.Container, p *corev1.Probe) { c.LivenessProbe = p }},
			{"readinessProbe", c.ReadinessProbe, func(c *corev1.Container, p *corev1.Probe) { c.ReadinessProbe = p }},
			{"startupProbe", c.StartupProbe, func(c *corev1.Container, p *corev1.Probe) { c.StartupProbe = p }},
		}
		for _, p := range probes {
			if p.probe == nil {
				continue
			}
			if h := p.probe.HTTPGet; h != nil {
				var holder corev1.Container
				p.put(&holder, &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: h}})
				add(p.field+".httpGet.host", holder)
			}
			if h := p.probe.TCPSocket; h != nil {
				var holder corev1.Container
				p.put(&holder, &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: h}})
				add(p.field+".tcpSocket.host", holder)
			}
		}
		if c.Lifecycle == nil {
			return
		}
		hooks := []struct {
			field string
			hook  *corev1.LifecycleHandler
			put   func(*corev1.Lifecycle, *corev1.LifecycleHandler)
		}{
			{"lifecycle.postStart", c.Lifecycle.PostStart, func(l *corev1.Lifecycle, h *corev1.LifecycleHandler) { l.PostStart = h }},
			{"lifecycle.preStop", c.Lifecycle.PreStop, func(l *corev1.Lifecycle, h *corev1.LifecycleHandler) { l.PreStop = h }},
		}
		for _, k := range hooks {
			if k.hook == nil {
				continue
			}
			if h := k.hook.HTTPGet; h != nil {
				var l corev1.Lifecycle
				k.put(&l, &corev1.LifecycleHandler{HTTPGet: h})
				add(k.field+".httpGet.host", corev1.Container{Lifecycle: &l})
			}
			if h := k.hook.TCPSocket; h != nil {
				var l corev1.Lifecycle
				k.put(&l, &corev1.LifecycleHandler{TCPSocket: h})
				add(k.field+".tcpSocket.host", corev1.Container{Lifecycle: &l})
			}
		}
	})
	return cs
}

func sysctlFields(_ *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
	var cs []candidate
	for i, s := range podSecurityContext(spec).Sysctls {
		cs = append(cs, candidate{
			path: fmt.Sprintf("spec.securityContext.sysctls[%d].name", i),
			spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{s}}},
		})
	}
	return cs
}

// annotationFields finds the pod's annotations, which the AppArmor check reads
// (container.apparmor.security.beta.kubernetes.io/<container>). Each is asked about alone; one the check does not
// read is never forbidden.
func annotationFields(meta *metav1.ObjectMeta, _ *corev1.PodSpec) []candidate {
	var cs []candidate
	keys := make([]string, 0, len(meta.Annotations))
	for k := range meta.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cs = append(cs, candidate{
			path: "metadata.annotations[" + k + "]",
			meta: metav1.ObjectMeta{Annotations: map[string]string{k: meta.Annotations[k]}},
		})
	}
	return cs
}

// both finds a's fields and then b's.
func both(a, b fieldFinder) fieldFinder {
	return func(meta *metav1.ObjectMeta, spec *corev1.PodSpec) []candidate {
		return append(a(meta, spec), b(meta, spec)...)
	}
}
