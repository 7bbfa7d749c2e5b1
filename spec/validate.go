package spec

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks a defaulted Pod and returns every error, each with its field path.
// It assumes CheckSupported passed: it validates only fields agentd implements.
func Validate(pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateMeta(pod, field.NewPath("metadata"))...)
	errs = append(errs, validatePodSpec(&pod.Spec, field.NewPath("spec"))...)
	return errs
}

func validateMeta(pod *corev1.Pod, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if pod.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), "a pod needs a name"))
	}
	errs = append(errs, dnsErrors(p.Child("name"), pod.Name, validation.IsDNS1123Subdomain)...)
	errs = append(errs, dnsErrors(p.Child("namespace"), pod.Namespace, validation.IsDNS1123Label)...)
	errs = append(errs, metav1validation.ValidateLabels(pod.Labels, p.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(pod.Annotations, p.Child("annotations"))...)
	if pod.UID != "" {
		for _, msg := range IsPathSafeUID(string(pod.UID)) {
			errs = append(errs, field.Invalid(p.Child("uid"), string(pod.UID), msg))
		}
	}
	return errs
}

// MaxUIDLength bounds metadata.uid: it becomes part of directory and cgroup names.
const MaxUIDLength = 128

// uidPattern is what agentd accepts as a pod's UID. The UID names directories under
// run-dir, root and log-dir and a cgroup, so it must stay one path component that is
// neither "." nor "..": letters, digits, '-' and '.', beginning and ending with a
// letter or digit. Kubernetes' UIDs (UUIDs) and agentd's own are of this form.
var uidPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$`) })

// IsPathSafeUID returns why uid cannot be a pod's UID, or nothing when it can.
func IsPathSafeUID(uid string) []string {
	var msgs []string
	if len(uid) > MaxUIDLength {
		msgs = append(msgs, fmt.Sprintf("must be no more than %d characters", MaxUIDLength))
	}
	if !uidPattern().MatchString(uid) {
		msgs = append(msgs, "must consist of letters, digits, '-' and '.', and begin and end with a letter or digit (it names directories and cgroups on the node), e.g. '5f0c1b2e-7d1a-4c2b-9a8e-0e6f1d2c3b4a'")
	}
	return msgs
}

func dnsErrors(p *field.Path, value string, check func(string) []string) field.ErrorList {
	if value == "" {
		return nil
	}
	var errs field.ErrorList
	for _, msg := range check(value) {
		errs = append(errs, field.Invalid(p, value, msg))
	}
	return errs
}

func validatePodSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	volumes, verrs := validateVolumes(s, p.Child("volumes"))
	errs = append(errs, verrs...)

	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), "a pod needs at least one container"))
	}
	names := sets.New[string]()
	for i := range s.InitContainers {
		errs = append(errs, validateContainer(&s.InitContainers[i], true, s, volumes, names, p.Child("initContainers").Index(i))...)
	}
	for i := range s.Containers {
		errs = append(errs, validateContainer(&s.Containers[i], false, s, volumes, names, p.Child("containers").Index(i))...)
	}
	errs = append(errs, validateUniqueHostPorts(s, p)...)

	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy,
			[]corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *g, "must be greater than or equal to 0"))
	}
	errs = append(errs, validateDNS(s, p)...)
	errs = append(errs, dnsErrors(p.Child("hostname"), s.Hostname, validation.IsDNS1123Label)...)
	for i, ha := range s.HostAliases {
		hp := p.Child("hostAliases").Index(i)
		errs = append(errs, validation.IsValidIP(hp.Child("ip"), ha.IP)...)
		for j, h := range ha.Hostnames {
			errs = append(errs, dnsErrors(hp.Child("hostnames").Index(j), h, validation.IsDNS1123Subdomain)...)
		}
	}
	errs = append(errs, dnsErrors(p.Child("priorityClassName"), s.PriorityClassName, validation.IsDNS1123Subdomain)...)
	if sc := s.SecurityContext; sc != nil {
		sp := p.Child("securityContext")
		errs = append(errs, validateIDs(sc.RunAsUser, sc.RunAsGroup, sp)...)
		for i, g := range sc.SupplementalGroups {
			for _, msg := range validation.IsValidGroupID(g) {
				errs = append(errs, field.Invalid(sp.Child("supplementalGroups").Index(i), g, msg))
			}
		}
		errs = append(errs, validateSeccomp(sc.SeccompProfile, sp.Child("seccompProfile"))...)
		errs = append(errs, validateSysctls(s, sp.Child("sysctls"))...)
	}
	return errs
}

func validateDNS(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault:
	case corev1.DNSNone:
		if s.DNSConfig == nil {
			errs = append(errs, field.Required(p.Child("dnsConfig"), "must be given when dnsPolicy is None"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("dnsPolicy"), s.DNSPolicy, []corev1.DNSPolicy{
			corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone}))
	}
	if c := s.DNSConfig; c != nil {
		cp := p.Child("dnsConfig")
		if len(c.Nameservers) > 3 {
			errs = append(errs, field.TooMany(cp.Child("nameservers"), len(c.Nameservers), 3))
		}
		for i, ns := range c.Nameservers {
			errs = append(errs, validation.IsValidIP(cp.Child("nameservers").Index(i), ns)...)
		}
		if len(c.Searches) > 32 {
			errs = append(errs, field.TooMany(cp.Child("searches"), len(c.Searches), 32))
		}
		for i, d := range c.Searches {
			errs = append(errs, dnsErrors(cp.Child("searches").Index(i), strings.TrimSuffix(d, "."), validation.IsDNS1123Subdomain)...)
		}
		for i, o := range c.Options {
			if o.Name == "" {
				errs = append(errs, field.Required(cp.Child("options").Index(i).Child("name"), ""))
			}
		}
	}
	return errs
}

func validateVolumes(s *corev1.PodSpec, p *field.Path) (sets.Set[string], field.ErrorList) {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range s.Volumes {
		v := &s.Volumes[i]
		vp := p.Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(vp.Child("name"), ""))
		case names.Has(v.Name):
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		default:
			errs = append(errs, dnsErrors(vp.Child("name"), v.Name, validation.IsDNS1123Label)...)
		}
		names.Insert(v.Name)
		if n := countSources(v); n > 1 {
			errs = append(errs, field.Forbidden(vp, "may not specify more than one volume type"))
		}
		errs = append(errs, validateDownwardVolume(v, s, vp)...)
		if h := v.HostPath; h != nil {
			hp := vp.Child("hostPath")
			errs = append(errs, validateAbsPath(hp.Child("path"), h.Path, false)...)
			if h.Type != nil {
				switch *h.Type {
				case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
					corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket,
					corev1.HostPathCharDev, corev1.HostPathBlockDev:
				default:
					errs = append(errs, field.NotSupported(hp.Child("type"), *h.Type, []corev1.HostPathType{
						corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
						corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket,
						corev1.HostPathCharDev, corev1.HostPathBlockDev}))
				}
			}
		}
		if e := v.EmptyDir; e != nil {
			ep := vp.Child("emptyDir")
			if e.Medium != corev1.StorageMediumDefault && e.Medium != corev1.StorageMediumMemory {
				errs = append(errs, field.NotSupported(ep.Child("medium"), e.Medium,
					[]corev1.StorageMedium{corev1.StorageMediumDefault, corev1.StorageMediumMemory}))
			}
			if e.SizeLimit != nil && e.SizeLimit.Sign() < 0 {
				errs = append(errs, field.Invalid(ep.Child("sizeLimit"), e.SizeLimit.String(), "must be greater than or equal to 0"))
			}
		}
	}
	return names, errs
}

// validateAbsPath requires an absolute, clean-enough path; with allowDotDot false a
// ".." element is refused, as Kubernetes refuses it for hostPath.
// countSources counts the volume sources agentd implements that v sets.
func countSources(v *corev1.Volume) int {
	n := 0
	for _, set := range []bool{v.HostPath != nil, v.EmptyDir != nil, v.DownwardAPI != nil, v.Projected != nil} {
		if set {
			n++
		}
	}
	return n
}

func validateAbsPath(p *field.Path, value string, allowDotDot bool) field.ErrorList {
	switch {
	case value == "":
		return field.ErrorList{field.Required(p, "")}
	case !path.IsAbs(value):
		return field.ErrorList{field.Invalid(p, value, "must be an absolute path")}
	case !allowDotDot && hasDotDot(value):
		return field.ErrorList{field.Invalid(p, value, "must not contain '..'")}
	case strings.ContainsRune(value, 0):
		return field.ErrorList{field.Invalid(p, value, "must not contain a NUL byte")}
	}
	return nil
}

func hasDotDot(value string) bool {
	for _, part := range strings.Split(value, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

var pullPolicies = []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}

func validateContainer(c *corev1.Container, isInit bool, s *corev1.PodSpec, volumes sets.Set[string], names sets.Set[string], p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case c.Name == "":
		errs = append(errs, field.Required(p.Child("name"), ""))
	case names.Has(c.Name):
		errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
	default:
		errs = append(errs, dnsErrors(p.Child("name"), c.Name, validation.IsDNS1123Label)...)
	}
	names.Insert(c.Name)
	if c.Image == "" {
		errs = append(errs, field.Required(p.Child("image"), "a container needs an image"))
	} else if strings.TrimSpace(c.Image) != c.Image {
		errs = append(errs, field.Invalid(p.Child("image"), c.Image, "must not have leading or trailing whitespace"))
	} else {
		for _, msg := range IsImageReference(c.Image) {
			errs = append(errs, field.Invalid(p.Child("image"), c.Image, msg))
		}
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, pullPolicies))
	}
	if c.WorkingDir != "" && !path.IsAbs(c.WorkingDir) {
		errs = append(errs, field.Invalid(p.Child("workingDir"), c.WorkingDir, "must be an absolute path"))
	}
	errs = append(errs, validatePorts(c.Ports, s.HostNetwork, isInit, p.Child("ports"))...)
	errs = append(errs, validateEnv(c.Env, s, p.Child("env"))...)
	errs = append(errs, validateResources(&c.Resources, p.Child("resources"))...)
	errs = append(errs, validateMounts(c.VolumeMounts, volumes, p.Child("volumeMounts"))...)

	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	sidecar := isInit && IsSidecar(c)
	switch {
	case c.RestartPolicy == nil:
	case !isInit:
		errs = append(errs, field.Forbidden(p.Child("restartPolicy"), "may only be set for init containers"))
	case *c.RestartPolicy != corev1.ContainerRestartPolicyAlways:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), *c.RestartPolicy,
			[]corev1.ContainerRestartPolicy{corev1.ContainerRestartPolicyAlways}))
	}
	for _, pr := range probes {
		if pr.probe == nil {
			continue
		}
		if isInit && !sidecar {
			errs = append(errs, field.Forbidden(p.Child(pr.name), "may not be set for init containers"))
			continue
		}
		errs = append(errs, validateProbe(pr.probe, pr.name != "readinessProbe", c, p.Child(pr.name))...)
	}
	if c.Lifecycle != nil {
		if isInit && !sidecar {
			errs = append(errs, field.Forbidden(p.Child("lifecycle"), "may not be set for init containers"))
		} else {
			errs = append(errs, validateHandler(c.Lifecycle.PostStart, c, p.Child("lifecycle", "postStart"))...)
			errs = append(errs, validateHandler(c.Lifecycle.PreStop, c, p.Child("lifecycle", "preStop"))...)
		}
	}
	if c.TerminationMessagePath != "" {
		errs = append(errs, validateAbsPath(p.Child("terminationMessagePath"), c.TerminationMessagePath, true)...)
		if len(c.TerminationMessagePath) > 4096 {
			errs = append(errs, field.TooLong(p.Child("terminationMessagePath"), "", 4096))
		}
	}
	switch c.TerminationMessagePolicy {
	case corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError:
	default:
		errs = append(errs, field.NotSupported(p.Child("terminationMessagePolicy"), c.TerminationMessagePolicy,
			[]corev1.TerminationMessagePolicy{corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError}))
	}
	errs = append(errs, validateSecurityContext(c.SecurityContext, p.Child("securityContext"))...)
	return errs
}

var protocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

// ReservedHostPorts are agentd's own ports, which no pod on the pod network
// may take as a hostPort: cluster mode's join service (2377), etcd client
// (2379) and peer (2380) ports. A hostPort is forwarded also for connections
// the node makes to its own addresses (127.0.0.1 included), so it would take
// agentd's own traffic. agent/network refuses these too, and also the
// metrics port and the ports a cluster actually uses.
var ReservedHostPorts = []int32{2377, 2379, 2380}

func validatePorts(ports []corev1.ContainerPort, hostNetwork, isInit bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, port := range ports {
		pp := p.Index(i)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		if port.ContainerPort == 0 {
			errs = append(errs, field.Required(pp.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
				errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
			}
		}
		if port.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(port.HostPort)) {
				errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, msg))
			}
			switch {
			case hostNetwork && port.HostPort != port.ContainerPort:
				errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, "must match containerPort when hostNetwork is true"))
			case hostNetwork:
			case isInit:
				errs = append(errs, field.Forbidden(pp.Child("hostPort"),
					"the host ports of init containers are not forwarded (nor are they by kubelet): set it on an app container"))
			case slices.Contains(ReservedHostPorts, port.HostPort):
				errs = append(errs, field.Forbidden(pp.Child("hostPort"), fmt.Sprintf(
					"%d is one of agentd's own ports (%v: cluster join, etcd client and peer); a hostPort is forwarded also for the node's connections to itself and would take agentd's traffic",
					port.HostPort, ReservedHostPorts)))
			}
		}
		if port.HostIP != "" {
			ip, err := netip.ParseAddr(port.HostIP)
			switch {
			case port.HostPort == 0:
				errs = append(errs, field.Invalid(pp.Child("hostIP"), port.HostIP, "only with hostPort"))
			case err != nil || ip.Zone() != "":
				errs = append(errs, field.Invalid(pp.Child("hostIP"), port.HostIP, "must be an IP address"))
			case !hostNetwork && !ip.Is4():
				errs = append(errs, field.Invalid(pp.Child("hostIP"), port.HostIP, "must be an IPv4 address: the pod network is IPv4 only"))
			}
		}
		switch port.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, protocols))
		}
	}
	return errs
}

// validateUniqueHostPorts refuses two ports of a pod's app containers on the
// same hostPort and protocol where their hostIPs overlap (equal, or either
// unset or 0.0.0.0: every address), as kubelet refuses equal ones.
func validateUniqueHostPorts(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	type claim struct {
		port  int32
		proto corev1.Protocol
		ip    string
		path  *field.Path
	}
	anyIP := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	var errs field.ErrorList
	var seen []claim
	for i, c := range s.Containers {
		for j, port := range c.Ports {
			if port.HostPort == 0 {
				continue
			}
			cur := claim{port.HostPort, port.Protocol, port.HostIP, p.Child("containers").Index(i).Child("ports").Index(j).Child("hostPort")}
			for _, o := range seen {
				if o.port == cur.port && o.proto == cur.proto && (o.ip == cur.ip || anyIP(o.ip) || anyIP(cur.ip)) {
					errs = append(errs, field.Duplicate(cur.path, fmt.Sprintf("%d/%s (also %s)", cur.port, cur.proto, o.path)))
					break
				}
			}
			seen = append(seen, cur)
		}
	}
	return errs
}

func validateEnv(env []corev1.EnvVar, s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range env {
		ep := p.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(ep.Child("name"), ""))
		} else {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
			}
		}
		if e.ValueFrom == nil {
			continue
		}
		vp := ep.Child("valueFrom")
		if e.Value != "" {
			errs = append(errs, field.Invalid(vp, "", "may not be specified when `value` is not empty"))
		}
		switch ref, res := e.ValueFrom.FieldRef, e.ValueFrom.ResourceFieldRef; {
		case ref != nil && res != nil:
			errs = append(errs, field.Invalid(vp, "", "may not have more than one field specified at a time"))
		case ref != nil:
			errs = append(errs, validateFieldRef(ref, EnvFieldPaths, vp.Child("fieldRef"))...)
		case res != nil:
			errs = append(errs, validateResourceFieldRef(res, s, false, vp.Child("resourceFieldRef"))...)
		case *e.ValueFrom == (corev1.EnvVarSource{}): // other sources are refused by CheckSupported, with why
			errs = append(errs, field.Required(vp, "must specify fieldRef or resourceFieldRef"))
		}
	}
	return errs
}

var resourceNames = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}

func validateResources(r *corev1.ResourceRequirements, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(list corev1.ResourceList, lp *field.Path) {
		for name, q := range list {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory {
				errs = append(errs, field.NotSupported(lp.Key(string(name)), name, resourceNames))
				continue
			}
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(lp.Key(string(name)), q.String(), "must be greater than or equal to 0"))
			}
		}
	}
	check(r.Limits, p.Child("limits"))
	check(r.Requests, p.Child("requests"))
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p.Child("requests").Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
	}
	return errs
}

func validateMounts(mounts []corev1.VolumeMount, volumes sets.Set[string], p *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		mp := p.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(mp.Child("name"), ""))
		} else if !volumes.Has(m.Name) {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		errs = append(errs, validateAbsPath(mp.Child("mountPath"), m.MountPath, true)...)
		if m.MountPath != "" {
			clean := path.Clean(m.MountPath)
			if paths.Has(clean) {
				errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be unique"))
			}
			paths.Insert(clean)
		}
		if m.SubPath != "" {
			if path.IsAbs(m.SubPath) {
				errs = append(errs, field.Invalid(mp.Child("subPath"), m.SubPath, "must be a relative path"))
			} else if hasDotDot(m.SubPath) {
				errs = append(errs, field.Invalid(mp.Child("subPath"), m.SubPath, "must not contain '..'"))
			}
		}
	}
	return errs
}

func validateProbe(pr *corev1.Probe, mustSucceedOnce bool, c *corev1.Container, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	h := pr.ProbeHandler
	errs = append(errs, validateActions(h.Exec, h.HTTPGet, h.TCPSocket, nil, h.GRPC, c, p)...)
	nonNeg := func(name string, v int32) {
		if v < 0 {
			errs = append(errs, field.Invalid(p.Child(name), v, "must be greater than or equal to 0"))
		}
	}
	positive := func(name string, v int32) {
		if v < 1 {
			errs = append(errs, field.Invalid(p.Child(name), v, "must be greater than or equal to 1"))
		}
	}
	nonNeg("initialDelaySeconds", pr.InitialDelaySeconds)
	positive("timeoutSeconds", pr.TimeoutSeconds)
	positive("periodSeconds", pr.PeriodSeconds)
	positive("successThreshold", pr.SuccessThreshold)
	positive("failureThreshold", pr.FailureThreshold)
	if mustSucceedOnce && pr.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(p.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
	}
	if g := pr.TerminationGracePeriodSeconds; g != nil && *g <= 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *g, "must be greater than 0"))
	}
	return errs
}

func validateHandler(h *corev1.LifecycleHandler, c *corev1.Container, p *field.Path) field.ErrorList {
	if h == nil {
		return nil
	}
	var errs field.ErrorList
	if h.Sleep != nil && h.Sleep.Seconds < 0 {
		errs = append(errs, field.Invalid(p.Child("sleep", "seconds"), h.Sleep.Seconds, "must be greater than or equal to 0"))
	}
	return append(errs, validateActions(h.Exec, h.HTTPGet, nil, h.Sleep, nil, c, p)...)
}

// validateActions requires exactly one action of a probe or hook and checks it.
func validateActions(exec *corev1.ExecAction, httpGet *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction, sleep *corev1.SleepAction, grpc *corev1.GRPCAction, c *corev1.Container, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if exec != nil {
		n++
		if len(exec.Command) == 0 {
			errs = append(errs, field.Required(p.Child("exec", "command"), ""))
		}
	}
	if httpGet != nil {
		n++
		hp := p.Child("httpGet")
		errs = append(errs, validatePort(httpGet.Port, c, hp.Child("port"))...)
		if httpGet.Scheme != corev1.URISchemeHTTP && httpGet.Scheme != corev1.URISchemeHTTPS {
			errs = append(errs, field.NotSupported(hp.Child("scheme"), httpGet.Scheme, []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}))
		}
		for i, hdr := range httpGet.HTTPHeaders {
			for _, msg := range validation.IsHTTPHeaderName(hdr.Name) {
				errs = append(errs, field.Invalid(hp.Child("httpHeaders").Index(i).Child("name"), hdr.Name, msg))
			}
		}
	}
	if tcp != nil {
		n++
		errs = append(errs, validatePort(tcp.Port, c, p.Child("tcpSocket", "port"))...)
	}
	if sleep != nil {
		n++
	}
	if grpc != nil {
		n++
		for _, msg := range validation.IsValidPortNum(int(grpc.Port)) {
			errs = append(errs, field.Invalid(p.Child("grpc", "port"), grpc.Port, msg))
		}
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(p, "must specify a handler type"))
	case n > 1:
		errs = append(errs, field.Forbidden(p, "may not specify more than one handler type"))
	}
	return errs
}

func validatePort(port intstr.IntOrString, c *corev1.Container, p *field.Path) field.ErrorList {
	if port.Type == intstr.Int {
		var errs field.ErrorList
		for _, msg := range validation.IsValidPortNum(int(port.IntVal)) {
			errs = append(errs, field.Invalid(p, port.IntVal, msg))
		}
		return errs
	}
	if portValue(port, c) == 0 {
		return field.ErrorList{field.Invalid(p, port.StrVal, "must be a port number or the name of one of the container's ports")}
	}
	return nil
}

func validateIDs(user, group *int64, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if user != nil {
		for _, msg := range validation.IsValidUserID(*user) {
			errs = append(errs, field.Invalid(p.Child("runAsUser"), *user, msg))
		}
	}
	if group != nil {
		for _, msg := range validation.IsValidGroupID(*group) {
			errs = append(errs, field.Invalid(p.Child("runAsGroup"), *group, msg))
		}
	}
	return errs
}

func validateSeccomp(sp *corev1.SeccompProfile, p *field.Path) field.ErrorList {
	if sp == nil {
		return nil
	}
	switch sp.Type {
	case corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined:
		return nil
	}
	return field.ErrorList{field.NotSupported(p.Child("type"), sp.Type,
		[]corev1.SeccompProfileType{corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined})}
}

func validateSecurityContext(sc *corev1.SecurityContext, p *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	errs := validateIDs(sc.RunAsUser, sc.RunAsGroup, p)
	if sc.Privileged != nil && *sc.Privileged && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		errs = append(errs, field.Invalid(p, "", "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
	}
	if c := sc.Capabilities; c != nil {
		for i, name := range c.Add {
			errs = append(errs, validateCapability(string(name), false, p.Child("capabilities", "add").Index(i))...)
		}
		for i, name := range c.Drop {
			errs = append(errs, validateCapability(string(name), true, p.Child("capabilities", "drop").Index(i))...)
		}
	}
	return append(errs, validateSeccomp(sc.SeccompProfile, p.Child("seccompProfile"))...)
}

func validateCapability(name string, allowAll bool, p *field.Path) field.ErrorList {
	if strings.EqualFold(name, "ALL") {
		if allowAll {
			return nil
		}
		return field.ErrorList{field.Forbidden(p, "ALL may only be dropped; use privileged: true for every capability")}
	}
	if _, ok := KnownCapabilities[CapabilityName(name)]; !ok {
		return field.ErrorList{field.Invalid(p, name, "unknown Linux capability")}
	}
	return nil
}

// CapabilityName normalises "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" to "CAP_NET_ADMIN".
func CapabilityName(name string) string {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	return n
}

// KnownCapabilities lists the Linux capabilities (capability(7)) by their CAP_ names.
var KnownCapabilities = sets.New(
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
