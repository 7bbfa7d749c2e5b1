package spec

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Kubelet's defaults, as the API server's defaulting (pkg/apis/core/v1/defaults.go) applies them.
const (
	DefaultNamespace                 = "default"
	DefaultTerminationGracePeriod    = int64(30)
	DefaultTerminationMessagePath    = "/dev/termination-log"
	DefaultProbeTimeoutSeconds       = int32(1)
	DefaultProbePeriodSeconds        = int32(10)
	DefaultProbeSuccessThreshold     = int32(1)
	DefaultProbeFailureThreshold     = int32(3)
	defaultHTTPGetPath               = "/"
	defaultImagePullPolicyLatestTag  = corev1.PullAlways
	defaultImagePullPolicyPinnedTags = corev1.PullIfNotPresent
)

// SetDefaults fills in what Kubernetes defaults for a Pod. It changes only unset
// fields, so it is idempotent.
func SetDefaults(pod *corev1.Pod) {
	if pod.Namespace == "" {
		pod.Namespace = DefaultNamespace
	}
	s := &pod.Spec
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.TerminationGracePeriodSeconds == nil {
		v := DefaultTerminationGracePeriod
		s.TerminationGracePeriodSeconds = &v
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.EnableServiceLinks == nil {
		v := true
		s.EnableServiceLinks = &v
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		if v.HostPath == nil && v.EmptyDir == nil && isOtherVolumeSourceUnset(v) {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{} // as Kubernetes: a volume without a source is an emptyDir
		}
		defaultDownwardVolume(v)
		if v.HostPath != nil && v.HostPath.Type == nil {
			t := corev1.HostPathUnset
			v.HostPath.Type = &t
		}
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i], s.HostNetwork)
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i], s.HostNetwork)
	}
}

// DefaultVolumeFileMode is the mode of a downwardAPI or projected volume's files
// that give none (the API server's default, 0644).
const DefaultVolumeFileMode = int32(0o644)

func defaultDownwardVolume(v *corev1.Volume) {
	var items []corev1.DownwardAPIVolumeFile
	switch {
	case v.DownwardAPI != nil:
		if v.DownwardAPI.DefaultMode == nil {
			m := DefaultVolumeFileMode
			v.DownwardAPI.DefaultMode = &m
		}
		items = v.DownwardAPI.Items
	case v.Projected != nil:
		if v.Projected.DefaultMode == nil {
			m := DefaultVolumeFileMode
			v.Projected.DefaultMode = &m
		}
		for _, src := range v.Projected.Sources {
			if src.DownwardAPI != nil {
				items = append(items, src.DownwardAPI.Items...)
			}
		}
	}
	for i := range items {
		if r := items[i].FieldRef; r != nil && r.APIVersion == "" {
			r.APIVersion = "v1"
		}
	}
}

func isOtherVolumeSourceUnset(v *corev1.Volume) bool {
	src := v.VolumeSource
	src.HostPath, src.EmptyDir = nil, nil
	return src == corev1.VolumeSource{}
}

func defaultContainer(c *corev1.Container, hostNetwork bool) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = DefaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = DefaultTerminationMessagePath
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if hostNetwork && p.HostPort == 0 {
			p.HostPort = p.ContainerPort
		}
	}
	for name, q := range c.Resources.Limits {
		if _, ok := c.Resources.Requests[name]; ok {
			continue
		}
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		c.Resources.Requests[name] = q.DeepCopy()
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.APIVersion == "" {
			e.ValueFrom.FieldRef.APIVersion = "v1"
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(p)
	}
	if c.Lifecycle != nil {
		defaultHTTPGet(handlerHTTPGet(c.Lifecycle.PostStart))
		defaultHTTPGet(handlerHTTPGet(c.Lifecycle.PreStop))
	}
}

func handlerHTTPGet(h *corev1.LifecycleHandler) *corev1.HTTPGetAction {
	if h == nil {
		return nil
	}
	return h.HTTPGet
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = DefaultProbeTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = DefaultProbePeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultProbeSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultProbeFailureThreshold
	}
	defaultHTTPGet(p.HTTPGet)
}

func defaultHTTPGet(h *corev1.HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = defaultHTTPGetPath
	}
	if h.Scheme == "" {
		h.Scheme = corev1.URISchemeHTTP
	}
}

// DefaultPullPolicy is Kubernetes' default imagePullPolicy for an image reference:
// Always for the `latest` tag or no tag, IfNotPresent for any other tag or a digest.
func DefaultPullPolicy(image string) corev1.PullPolicy {
	if strings.Contains(image, "@") {
		return defaultImagePullPolicyPinnedTags
	}
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:] // a registry port (host:5000/x) is not a tag
	}
	_, tag, hasTag := strings.Cut(name, ":")
	if !hasTag || tag == "latest" {
		return defaultImagePullPolicyLatestTag
	}
	return defaultImagePullPolicyPinnedTags
}

// portValue resolves an IntOrString port against a container's named ports; 0 if unknown.
func portValue(p intstr.IntOrString, c *corev1.Container) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}
