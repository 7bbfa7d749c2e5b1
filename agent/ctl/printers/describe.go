package printers

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Describe output is indented by two spaces a level, like kubectl's PrefixWriter.
const (
	level0 = iota
	level1
	level2
	level3
)

// maxAnnotationLen is where kubectl starts folding an annotation onto its own lines.
const maxAnnotationLen = 140

// lastAppliedAnnotation is hidden by kubectl describe.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// DescribePod prints a pod as `kubectl describe pod` does: the pod's metadata and status,
// each init and app container (IDs, image, ports, command, state, last state, ready,
// restart count, resources, probes, environment, mounts), conditions, volumes, QoS class,
// node selectors, tolerations, and the events about it (events about other objects are
// skipped), oldest first, with "(xN over <age>)" for repeated ones. now is the time ages
// are measured against. Times are printed in their own location (kubectl prints local
// time because decoding makes times local).
func DescribePod(w io.Writer, pod *corev1.Pod, events []corev1.Event, now time.Time) error {
	return describe(w, now, func(d *describer) {
		d.pod(pod)
		d.events(podEvents(pod, events))
	})
}

// describer writes kubectl-describe lines into a tabwriter; its writes cannot fail (the
// tabwriter writes to a buffer), so errors surface at the final Flush.
type describer struct {
	tw  *tabwriter.Writer
	now time.Time
	// base is added to every level: a pod template is described one level in.
	base int
}

func (d *describer) write(level int, format string, args ...any) {
	s := strings.Repeat("  ", d.base+level) + fmt.Sprintf(format, args...)
	_, _ = terminalEscaper.WriteString(d.tw, s)
}

func (d *describer) pod(pod *corev1.Pod) {
	d.write(level0, "Name:\t%s\n", pod.Name)
	d.write(level0, "Namespace:\t%s\n", pod.Namespace)
	if pod.Spec.Priority != nil {
		d.write(level0, "Priority:\t%d\n", *pod.Spec.Priority)
	}
	if pod.Spec.PriorityClassName != "" {
		d.write(level0, "Priority Class Name:\t%s\n", pod.Spec.PriorityClassName)
	}
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		d.write(level0, "Runtime Class Name:\t%s\n", *rc)
	}
	if pod.Spec.ServiceAccountName != "" {
		d.write(level0, "Service Account:\t%s\n", pod.Spec.ServiceAccountName)
	}
	if pod.Spec.NodeName == "" {
		d.write(level0, "Node:\t<none>\n")
	} else {
		d.write(level0, "Node:\t%s\n", pod.Spec.NodeName+"/"+pod.Status.HostIP)
	}
	if pod.Status.StartTime != nil {
		d.write(level0, "Start Time:\t%s\n", pod.Status.StartTime.Format(time.RFC1123Z))
	}
	d.labels("Labels", pod.Labels)
	d.annotations(pod.Annotations)
	if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodFailed && pod.Status.Phase != corev1.PodSucceeded {
		d.write(level0, "Status:\tTerminating (lasts %s)\n", since(*pod.DeletionTimestamp, d.now))
		if pod.DeletionGracePeriodSeconds != nil {
			d.write(level0, "Termination Grace Period:\t%ds\n", *pod.DeletionGracePeriodSeconds)
		}
	} else {
		d.write(level0, "Status:\t%s\n", pod.Status.Phase)
	}
	if pod.Status.Reason != "" {
		d.write(level0, "Reason:\t%s\n", pod.Status.Reason)
	}
	if pod.Status.Message != "" {
		d.write(level0, "Message:\t%s\n", pod.Status.Message)
	}
	if sc := pod.Spec.SecurityContext; sc != nil && sc.SeccompProfile != nil {
		d.seccomp(level0, sc.SeccompProfile)
	}
	d.write(level0, "IP:\t%s\n", pod.Status.PodIP)
	if len(pod.Status.PodIPs) == 0 {
		d.write(level0, "IPs:\t<none>\n")
	} else {
		d.write(level0, "IPs:\n")
		for _, ip := range pod.Status.PodIPs {
			d.write(level1, "IP:\t%s\n", ip.IP)
		}
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		d.write(level0, "Controlled By:\t%s/%s\n", ref.Kind, ref.Name)
	}
	if pod.Status.NominatedNodeName != "" {
		d.write(level0, "NominatedNodeName:\t%s\n", pod.Status.NominatedNodeName)
	}

	if len(pod.Spec.InitContainers) > 0 {
		d.containers(pod, "Init Containers", pod.Spec.InitContainers, pod.Status.InitContainerStatuses)
	}
	d.containers(pod, "Containers", pod.Spec.Containers, pod.Status.ContainerStatuses)

	if len(pod.Spec.ReadinessGates) > 0 {
		d.write(level0, "Readiness Gates:\n  Type\tStatus\n")
		for _, g := range pod.Spec.ReadinessGates {
			status := "<none>"
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType {
					status = string(c.Status)
					break
				}
			}
			d.write(level1, "%v \t%v \n", g.ConditionType, status)
		}
	}
	if len(pod.Status.Conditions) > 0 {
		d.write(level0, "Conditions:\n  Type\tStatus\n")
		for _, c := range pod.Status.Conditions {
			d.write(level1, "%v \t%v \n", c.Type, c.Status)
		}
	}
	d.volumes(pod.Spec.Volumes)
	d.write(level0, "QoS Class:\t%s\n", PodQOSClass(pod))
	d.labels("Node-Selectors", pod.Spec.NodeSelector)
	d.tolerations(pod.Spec.Tolerations)
}

func (d *describer) seccomp(level int, p *corev1.SeccompProfile) {
	d.write(level, "SeccompProfile:\t%s\n", p.Type)
	if p.Type == corev1.SeccompProfileTypeLocalhost && p.LocalhostProfile != nil {
		d.write(level+1, "LocalhostProfile:\t%s\n", *p.LocalhostProfile)
	}
}

// labels prints "Title:\tk=v" lines, keys sorted, "<none>" when empty.
func (d *describer) labels(title string, labels map[string]string) {
	d.write(level0, "%s:\t", title)
	if len(labels) == 0 {
		d.write(level0, "<none>\n")
		return
	}
	for i, k := range sortedKeys(labels) {
		if i > 0 {
			d.write(level0, "\t")
		}
		d.write(level0, "%s=%s\n", k, labels[k])
	}
}

// annotations prints "Annotations:\tk: v" lines; a long or multi-line value is folded
// onto indented lines of its own, each cut at maxAnnotationLen.
func (d *describer) annotations(annotations map[string]string) {
	d.write(level0, "Annotations:\t")
	keys := slices.DeleteFunc(sortedKeys(annotations), func(k string) bool { return k == lastAppliedAnnotation })
	if len(keys) == 0 {
		d.write(level0, "<none>\n")
		return
	}
	for i, k := range keys {
		if i > 0 {
			d.write(level0, "\t")
		}
		v := strings.TrimSuffix(annotations[k], "\n")
		if len(v)+len(k)+2 > maxAnnotationLen || strings.Contains(v, "\n") {
			d.write(level0, "%s:\n", k)
			for _, s := range strings.Split(v, "\n") {
				d.write(level0, "\t  %s\n", shorten(s, maxAnnotationLen-2))
			}
		} else {
			d.write(level0, "%s: %s\n", k, v)
		}
	}
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (d *describer) containers(pod *corev1.Pod, label string, containers []corev1.Container, statuses []corev1.ContainerStatus) {
	byName := make(map[string]corev1.ContainerStatus, len(statuses))
	for _, s := range statuses {
		byName[s.Name] = s
	}
	none := ""
	if len(containers) == 0 {
		none = " <none>"
	}
	d.write(level0, "%s:%s\n", label, none)

	for i := range containers {
		c := &containers[i]
		status, ok := byName[c.Name]

		d.write(level1, "%s:\n", c.Name)
		if ok {
			d.write(level2, "Container ID:\t%s\n", status.ContainerID)
		}
		d.write(level2, "Image:\t%s\n", c.Image)
		if ok {
			d.write(level2, "Image ID:\t%s\n", status.ImageID)
		}
		ports, hostPorts := containerPorts(c.Ports)
		if strings.Contains(ports, ",") {
			d.write(level2, "Ports:\t%s\n", ports)
		} else {
			d.write(level2, "Port:\t%s\n", orNone(ports))
		}
		if strings.Contains(hostPorts, ",") {
			d.write(level2, "Host Ports:\t%s\n", hostPorts)
		} else {
			d.write(level2, "Host Port:\t%s\n", orNone(hostPorts))
		}
		if sc := c.SecurityContext; sc != nil && sc.SeccompProfile != nil {
			d.seccomp(level2, sc.SeccompProfile)
		}
		d.lines("Command", c.Command)
		d.lines("Args", c.Args)
		if ok {
			d.state("State", status.State)
			if status.LastTerminationState.Terminated != nil {
				d.state("Last State", status.LastTerminationState)
			}
			d.write(level2, "Ready:\t%s\n", printBool(status.Ready))
			d.write(level2, "Restart Count:\t%d\n", status.RestartCount)
		}
		d.resources("Limits", c.Resources.Limits)
		d.resources("Requests", c.Resources.Requests)
		if c.LivenessProbe != nil {
			d.write(level2, "Liveness:\t%s\n", DescribeProbe(c.LivenessProbe))
		}
		if c.ReadinessProbe != nil {
			d.write(level2, "Readiness:\t%s\n", DescribeProbe(c.ReadinessProbe))
		}
		if c.StartupProbe != nil {
			d.write(level2, "Startup:\t%s\n", DescribeProbe(c.StartupProbe))
		}
		if len(c.EnvFrom) > 0 {
			d.envFrom(c.EnvFrom)
		}
		d.env(pod, c)
		d.mounts(c)
	}
}

// containerPorts returns kubectl's "8080/TCP, 9090/UDP" for container and host ports.
// An unset protocol is shown as TCP, what the API server would have defaulted it to.
func containerPorts(ports []corev1.ContainerPort) (container, host string) {
	var cs, hs []string
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		cs = append(cs, fmt.Sprintf("%d/%s", p.ContainerPort, proto))
		hs = append(hs, fmt.Sprintf("%d/%s", p.HostPort, proto))
	}
	return strings.Join(cs, ", "), strings.Join(hs, ", ")
}

// lines prints Command/Args, one element (and one line of a multi-line element) a line.
func (d *describer) lines(title string, items []string) {
	if len(items) == 0 {
		return
	}
	d.write(level2, "%s:\n", title)
	for _, item := range items {
		for _, s := range strings.Split(item, "\n") {
			d.write(level3, "%s\n", s)
		}
	}
}

func (d *describer) state(title string, state corev1.ContainerState) {
	switch {
	case state.Running != nil:
		d.write(level2, "%s:\tRunning\n", title)
		d.write(level3, "Started:\t%s\n", state.Running.StartedAt.Format(time.RFC1123Z))
	case state.Waiting != nil:
		d.write(level2, "%s:\tWaiting\n", title)
		if state.Waiting.Reason != "" {
			d.write(level3, "Reason:\t%s\n", state.Waiting.Reason)
		}
	case state.Terminated != nil:
		t := state.Terminated
		d.write(level2, "%s:\tTerminated\n", title)
		if t.Reason != "" {
			d.write(level3, "Reason:\t%s\n", t.Reason)
		}
		if t.Message != "" {
			d.write(level3, "Message:\t%s\n", t.Message)
		}
		d.write(level3, "Exit Code:\t%d\n", t.ExitCode)
		if t.Signal > 0 {
			d.write(level3, "Signal:\t%d\n", t.Signal)
		}
		d.write(level3, "Started:\t%s\n", t.StartedAt.Format(time.RFC1123Z))
		d.write(level3, "Finished:\t%s\n", t.FinishedAt.Format(time.RFC1123Z))
	default:
		d.write(level2, "%s:\tWaiting\n", title)
	}
}

func printBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func (d *describer) resources(title string, list corev1.ResourceList) {
	if len(list) == 0 {
		return
	}
	d.write(level2, "%s:\n", title)
	names := make([]string, 0, len(list))
	for name := range list {
		names = append(names, string(name))
	}
	sort.Strings(names)
	for _, name := range names {
		q := list[corev1.ResourceName(name)]
		d.write(level3, "%s:\t%s\n", name, q.String())
	}
}

// DescribeProbe is kubectl's one-line probe description, e.g.
// "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3".
// An unset HTTP scheme is shown as http, what the API server would have defaulted it to.
func DescribeProbe(p *corev1.Probe) string {
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
	switch {
	case p.Exec != nil:
		return fmt.Sprintf("exec %v %s", p.Exec.Command, attrs)
	case p.HTTPGet != nil:
		scheme := strings.ToLower(string(p.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		u := url.URL{Scheme: scheme, Host: p.HTTPGet.Host, Path: p.HTTPGet.Path}
		if port := p.HTTPGet.Port.String(); port != "" {
			u.Host = net.JoinHostPort(p.HTTPGet.Host, port)
		}
		return fmt.Sprintf("http-get %s %s", u.String(), attrs)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.TCPSocket.Host, p.TCPSocket.Port.String(), attrs)
	case p.GRPC != nil:
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		return fmt.Sprintf("grpc <pod>:%d %s %s", p.GRPC.Port, service, attrs)
	}
	return "unknown " + attrs
}

func (d *describer) envFrom(sources []corev1.EnvFromSource) {
	d.write(level2, "Environment Variables from:\n")
	for _, e := range sources {
		var from, name string
		optional := false
		switch {
		case e.ConfigMapRef != nil:
			from, name = "ConfigMap", e.ConfigMapRef.Name
			optional = e.ConfigMapRef.Optional != nil && *e.ConfigMapRef.Optional
		case e.SecretRef != nil:
			from, name = "Secret", e.SecretRef.Name
			optional = e.SecretRef.Optional != nil && *e.SecretRef.Optional
		}
		if e.Prefix == "" {
			d.write(level3, "%s\t%s\tOptional: %t\n", name, from, optional)
		} else {
			d.write(level3, "%s\t%s with prefix '%s'\tOptional: %t\n", name, from, e.Prefix, optional)
		}
	}
}

func (d *describer) env(pod *corev1.Pod, c *corev1.Container) {
	if len(c.Env) == 0 {
		d.write(level2, "Environment:\t<none>\n")
	} else {
		d.write(level2, "Environment:\n")
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			for i, s := range strings.Split(e.Value, "\n") {
				if i == 0 {
					d.write(level3, "%s:\t%s\n", e.Name, s)
				} else {
					d.write(level3, "\t%s\n", s)
				}
			}
			continue
		}
		switch from := e.ValueFrom; {
		case from.FieldRef != nil:
			d.write(level3, "%s:\t%s (%s:%s)\n", e.Name, fieldPathValue(pod, from.FieldRef.FieldPath),
				from.FieldRef.APIVersion, from.FieldRef.FieldPath)
		case from.ResourceFieldRef != nil:
			d.write(level3, "%s:\t%s (%s)\n", e.Name, resourceFieldValue(c, from.ResourceFieldRef), from.ResourceFieldRef.Resource)
		case from.SecretKeyRef != nil:
			optional := from.SecretKeyRef.Optional != nil && *from.SecretKeyRef.Optional
			d.write(level3, "%s:\t<set to the key '%s' in secret '%s'>\tOptional: %t\n", e.Name, from.SecretKeyRef.Key, from.SecretKeyRef.Name, optional)
		case from.ConfigMapKeyRef != nil:
			optional := from.ConfigMapKeyRef.Optional != nil && *from.ConfigMapKeyRef.Optional
			d.write(level3, "%s:\t<set to the key '%s' of config map '%s'>\tOptional: %t\n", e.Name, from.ConfigMapKeyRef.Key, from.ConfigMapKeyRef.Name, optional)
		}
	}
}

// fieldPathValue resolves the downward-API field paths a pod's env can name; "" for
// one it does not know.
func fieldPathValue(pod *corev1.Pod, path string) string {
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key]
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key]
	}
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "status.hostIP":
		return pod.Status.HostIP
	case "status.podIP":
		return pod.Status.PodIP
	case "status.podIPs":
		ips := make([]string, 0, len(pod.Status.PodIPs))
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ",")
	}
	return ""
}

// subscript parses "prefix['key']" (or "prefix[\"key\"]").
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return "", false
	}
	rest = strings.TrimSuffix(rest, "]")
	if len(rest) >= 2 && (rest[0] == '\'' || rest[0] == '"') && rest[len(rest)-1] == rest[0] {
		return rest[1 : len(rest)-1], true
	}
	return "", false
}

// resourceFieldValue is the value a resourceFieldRef env var gets, in units of its
// divisor rounded up; an unset CPU or memory limit reads as "node allocatable".
func resourceFieldValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) string {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return ""
	}
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, set := list[corev1.ResourceName(name)]
	if !set || q.IsZero() {
		if ref.Resource == "limits.cpu" || ref.Resource == "limits.memory" {
			return "node allocatable"
		}
		return "0"
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == string(corev1.ResourceCPU) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10)
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10)
}

func (d *describer) mounts(c *corev1.Container) {
	if len(c.VolumeMounts) == 0 {
		d.write(level2, "Mounts:\t<none>\n")
		return
	}
	d.write(level2, "Mounts:\n")
	mounts := slices.Clone(c.VolumeMounts)
	sort.SliceStable(mounts, func(i, j int) bool { return mounts[i].MountPath < mounts[j].MountPath })
	for _, m := range mounts {
		flags := []string{"rw"}
		if m.ReadOnly {
			flags[0] = "ro"
		}
		if m.SubPath != "" {
			flags = append(flags, fmt.Sprintf("path=%q", m.SubPath))
		}
		d.write(level3, "%s from %s (%s)\n", m.MountPath, m.Name, strings.Join(flags, ","))
	}
}

func (d *describer) volumes(volumes []corev1.Volume) {
	if len(volumes) == 0 {
		d.write(level0, "Volumes:\t<none>\n")
		return
	}
	d.write(level0, "Volumes:\n")
	for _, v := range volumes {
		d.write(level1, "%s:\n", v.Name)
		switch s := v.VolumeSource; {
		case s.HostPath != nil:
			hostPathType := "<none>"
			if s.HostPath.Type != nil {
				hostPathType = string(*s.HostPath.Type)
			}
			d.write(level2, "Type:\tHostPath (bare host directory volume)\n")
			d.write(level2, "Path:\t%s\n", s.HostPath.Path)
			d.write(level2, "HostPathType:\t%s\n", hostPathType)
		case s.EmptyDir != nil:
			sizeLimit := "<unset>"
			if l := s.EmptyDir.SizeLimit; l != nil && l.Sign() > 0 {
				sizeLimit = l.String()
			}
			d.write(level2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n")
			d.write(level2, "Medium:\t%s\n", s.EmptyDir.Medium)
			d.write(level2, "SizeLimit:\t%s\n", sizeLimit)
		case s.Secret != nil:
			d.write(level2, "Type:\tSecret (a volume populated by a Secret)\n")
			d.write(level2, "SecretName:\t%s\n", s.Secret.SecretName)
			d.write(level2, "Optional:\t%t\n", s.Secret.Optional != nil && *s.Secret.Optional)
		case s.ConfigMap != nil:
			d.write(level2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n")
			d.write(level2, "Name:\t%s\n", s.ConfigMap.Name)
			d.write(level2, "Optional:\t%t\n", s.ConfigMap.Optional != nil && *s.ConfigMap.Optional)
		case s.PersistentVolumeClaim != nil:
			d.write(level2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n")
			d.write(level2, "ClaimName:\t%s\n", s.PersistentVolumeClaim.ClaimName)
			d.write(level2, "ReadOnly:\t%t\n", s.PersistentVolumeClaim.ReadOnly)
		case s.DownwardAPI != nil:
			d.write(level2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n")
			d.write(level2, "Items:\n")
			for _, item := range s.DownwardAPI.Items {
				if item.FieldRef != nil {
					d.write(level3, "%s -> %s\n", item.FieldRef.FieldPath, item.Path)
				}
				if item.ResourceFieldRef != nil {
					d.write(level3, "%s -> %s\n", item.ResourceFieldRef.Resource, item.Path)
				}
			}
		case s.Projected != nil:
			d.write(level2, "Type:\tProjected (a volume that contains injected data from multiple sources)\n")
			for _, p := range s.Projected.Sources {
				switch {
				case p.Secret != nil:
					d.write(level2, "SecretName:\t%s\n", p.Secret.Name)
					d.write(level2, "Optional:\t%t\n", p.Secret.Optional != nil && *p.Secret.Optional)
				case p.DownwardAPI != nil:
					d.write(level2, "DownwardAPI:\ttrue\n")
				case p.ConfigMap != nil:
					d.write(level2, "ConfigMapName:\t%s\n", p.ConfigMap.Name)
					d.write(level2, "Optional:\t%t\n", p.ConfigMap.Optional != nil && *p.ConfigMap.Optional)
				case p.ServiceAccountToken != nil && p.ServiceAccountToken.ExpirationSeconds != nil:
					d.write(level2, "TokenExpirationSeconds:\t%d\n", *p.ServiceAccountToken.ExpirationSeconds)
				}
			}
		case s.Image != nil:
			d.write(level2, "Type:\tImage (a container image or OCI artifact)\n")
			d.write(level2, "Reference:\t%s\n", s.Image.Reference)
			d.write(level2, "PullPolicy:\t%s\n", s.Image.PullPolicy)
		default:
			d.write(level1, "<unknown>\n")
		}
	}
}

func (d *describer) tolerations(tolerations []corev1.Toleration) {
	d.write(level0, "Tolerations:\t")
	if len(tolerations) == 0 {
		d.write(level0, "<none>\n")
		return
	}
	sorted := slices.Clone(tolerations)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })
	for i, t := range sorted {
		if i > 0 {
			d.write(level0, "\t")
		}
		var b strings.Builder
		b.WriteString(t.Key)
		if t.Value != "" {
			b.WriteString("=" + t.Value)
		}
		if t.Effect != "" {
			b.WriteString(":" + string(t.Effect))
		}
		if t.Operator == corev1.TolerationOpExists && t.Value == "" {
			if t.Key != "" || t.Effect != "" {
				b.WriteString(" ")
			}
			b.WriteString("op=Exists")
		}
		if t.TolerationSeconds != nil {
			fmt.Fprintf(&b, " for %ds", *t.TolerationSeconds)
		}
		d.write(level0, "%s\n", b.String())
	}
}

// podEvents returns the events about pod, oldest first by lastTimestamp (the order of
// kubectl describe).
func podEvents(pod *corev1.Pod, events []corev1.Event) []corev1.Event {
	var out []corev1.Event
	for _, e := range events {
		ref := e.InvolvedObject
		if ref.Name != pod.Name || (ref.Kind != "" && ref.Kind != "Pod") ||
			(ref.Namespace != "" && pod.Namespace != "" && ref.Namespace != pod.Namespace) {
			continue
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastTimestamp.Before(&out[j].LastTimestamp) })
	return out
}

func (d *describer) events(events []corev1.Event) {
	if len(events) == 0 {
		d.write(level0, "Events:\t<none>\n")
		return
	}
	d.write(level0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
	d.write(level1, "----\t------\t----\t----\t-------\n")
	for _, e := range events {
		first := sinceMicro(e.EventTime, d.now)
		if e.EventTime.IsZero() {
			first = since(e.FirstTimestamp, d.now)
		}
		age := first
		switch {
		case e.Series != nil:
			age = fmt.Sprintf("%s (x%d over %s)", sinceMicro(e.Series.LastObservedTime, d.now), e.Series.Count, first)
		case e.Count > 1:
			age = fmt.Sprintf("%s (x%d over %s)", since(e.LastTimestamp, d.now), e.Count, first)
		}
		source := e.Source.Component
		if source == "" {
			source = e.ReportingController
		}
		d.write(level1, "%s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, age, source, strings.TrimSpace(e.Message))
	}
}

// PodQOSClass is the pod's quality-of-service class as Kubernetes computes it
// (status.qosClass when set): BestEffort when no container requests or limits CPU or
// memory; Guaranteed when every container limits both CPU and memory and requests equal
// limits; Burstable otherwise. A limit without a request counts as a request of the same
// amount, as the API server's defaulting makes it.
func PodQOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests := corev1.ResourceList{}
	limits := corev1.ResourceList{}
	guaranteed := true
	add := func(sum corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		total := q.DeepCopy()
		if prev, ok := sum[name]; ok {
			total.Add(prev)
		}
		sum[name] = total
	}
	all := append(slices.Clone(pod.Spec.Containers), pod.Spec.InitContainers...)
	for _, c := range all {
		for name, q := range effectiveRequests(c.Resources) {
			if qosResource(name) && q.Sign() > 0 {
				add(requests, name, q)
			}
		}
		limitsFound := map[corev1.ResourceName]bool{}
		for name, q := range c.Resources.Limits {
			if qosResource(name) && q.Sign() > 0 {
				limitsFound[name] = true
				add(limits, name, q)
			}
		}
		if !limitsFound[corev1.ResourceCPU] || !limitsFound[corev1.ResourceMemory] {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func qosResource(name corev1.ResourceName) bool {
	return name == corev1.ResourceCPU || name == corev1.ResourceMemory
}

// effectiveRequests is r.Requests with each limit that has no request copied in.
func effectiveRequests(r corev1.ResourceRequirements) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, q := range r.Limits {
		out[name] = q
	}
	for name, q := range r.Requests {
		out[name] = q
	}
	return out
}
