package spec

import (
	"encoding/json"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// SupportedField is one entry of the list of core/v1 Pod fields agentd implements.
// A field is accepted when its path, or the path of one of its parents, is listed.
// Paths use json names with "[*]" for any list index.
type SupportedField struct {
	Path string
	Note string
}

// SupportedFields is the one place that says which Pod fields agentd implements.
// Anything else set in a manifest is rejected with "not supported by agentd", so
// no setting is ever silently ignored. docs/manifest-fields.md is generated from it
// (make docs); a unit test keeps the two in step.
var SupportedFields = []SupportedField{
	{"apiVersion", "must be `v1`"},
	{"kind", "must be `Pod`"},
	{"status", "output only: accepted and ignored, as kubelet does for static pods"},

	{"metadata.name", "required, DNS-1123 subdomain"},
	{"metadata.namespace", "defaults to `default`"},
	{"metadata.uid", "kept when given; otherwise derived from content, file path and node name"},
	{"metadata.labels", ""},
	{"metadata.annotations", ""},
	{"metadata.creationTimestamp", "output only: accepted and ignored"},

	{"spec.volumes[*].name", ""},
	{"spec.volumes[*].hostPath.path", "absolute"},
	{"spec.volumes[*].hostPath.type", "`\"\"`, DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice"},
	{"spec.volumes[*].emptyDir.medium", "`\"\"` (disk) or Memory (tmpfs)"},
	{"spec.volumes[*].emptyDir.sizeLimit", ""},

	{"spec.restartPolicy", "Always (default), OnFailure, Never; applied by the container's monitor"},
	{"spec.terminationGracePeriodSeconds", "default 30"},
	{"spec.dnsPolicy", "ClusterFirst (default; no cluster DNS, so the host's resolv.conf), ClusterFirstWithHostNet, Default, None"},
	{"spec.dnsConfig.nameservers", ""},
	{"spec.dnsConfig.searches", ""},
	{"spec.dnsConfig.options", ""},
	{"spec.hostNetwork", ""},
	{"spec.hostPID", ""},
	{"spec.hostIPC", ""},
	{"spec.hostname", ""},
	{"spec.hostAliases", "written to the pod's /etc/hosts"},
	{"spec.enableServiceLinks", "accepted; a single node has no services to link"},
	{"spec.priority", "recorded and shown; a single node does not preempt"},
	{"spec.priorityClassName", "recorded and shown; a single node does not preempt"},
	{"spec.securityContext.runAsUser", ""},
	{"spec.securityContext.runAsGroup", ""},
	{"spec.securityContext.runAsNonRoot", ""},
	{"spec.securityContext.supplementalGroups", ""},
	{"spec.securityContext.seccompProfile.type", "RuntimeDefault or Unconfined"},

	{"spec.initContainers[*]." + containerField, "run in order before the app containers; no probes or lifecycle hooks"},
	{"spec.containers[*]." + containerField, ""},
}

// containerField is a marker expanded into the container fields below for both
// spec.initContainers and spec.containers.
const containerField = "<container>"

var containerFields = []SupportedField{
	{"name", "required, DNS-1123 label, unique in the pod"},
	{"image", "required"},
	{"imagePullPolicy", "Always, IfNotPresent, Never; default as kubelet's (Always for `:latest` or no tag)"},
	{"command", "replaces the image's Entrypoint"},
	{"args", "replaces the image's Cmd"},
	{"workingDir", ""},
	{"env[*].name", ""},
	{"env[*].value", "`$(VAR)` references expanded as Kubernetes does"},
	{"env[*].valueFrom.fieldRef.apiVersion", ""},
	{"env[*].valueFrom.fieldRef.fieldPath", "metadata.name, metadata.namespace, metadata.uid, spec.nodeName, status.podIP, status.hostIP"},
	{"ports[*].name", ""},
	{"ports[*].containerPort", ""},
	{"ports[*].protocol", "TCP (default), UDP, SCTP"},
	{"ports[*].hostPort", "only with hostNetwork, equal to containerPort"},
	{"resources.limits", "cpu, memory"},
	{"resources.requests", "cpu, memory; default to the limits"},
	{"volumeMounts[*].name", "must name a volume of the pod"},
	{"volumeMounts[*].mountPath", "absolute"},
	{"volumeMounts[*].readOnly", ""},
	{"volumeMounts[*].subPath", "relative, no `..`"},
	{"livenessProbe." + probeField, "failure restarts the container"},
	{"readinessProbe." + probeField, ""},
	{"startupProbe." + probeField, ""},
	{"lifecycle.postStart." + handlerField, ""},
	{"lifecycle.preStop." + handlerField, "runs before TERM, within the grace period"},
	{"lifecycle.postStart.sleep.seconds", ""},
	{"lifecycle.preStop.sleep.seconds", ""},
	{"terminationMessagePath", "default /dev/termination-log"},
	{"terminationMessagePolicy", "File (default) or FallbackToLogsOnError"},
	{"securityContext.runAsUser", ""},
	{"securityContext.runAsGroup", ""},
	{"securityContext.runAsNonRoot", ""},
	{"securityContext.privileged", ""},
	{"securityContext.readOnlyRootFilesystem", ""},
	{"securityContext.allowPrivilegeEscalation", "false sets no_new_privs"},
	{"securityContext.capabilities.add", "over Docker's default set"},
	{"securityContext.capabilities.drop", "`ALL` or names"},
	{"securityContext.seccompProfile.type", "RuntimeDefault or Unconfined"},
}

const (
	probeField   = "<probe>"
	handlerField = "<handler>"
)

var probeFields = []SupportedField{
	{"initialDelaySeconds", ""},
	{"timeoutSeconds", "default 1"},
	{"periodSeconds", "default 10"},
	{"successThreshold", "default 1"},
	{"failureThreshold", "default 3"},
	{"terminationGracePeriodSeconds", ""},
}

var handlerFields = []SupportedField{
	{"exec.command", ""},
	{"httpGet.path", "default /"},
	{"httpGet.port", "number or a container port's name"},
	{"httpGet.host", "default: the pod IP"},
	{"httpGet.scheme", "HTTP (default) or HTTPS"},
	{"httpGet.httpHeaders", ""},
	{"tcpSocket.port", "probes only"},
	{"tcpSocket.host", "probes only"},
}

// supportedPaths returns the expanded list of supported paths, in table order.
func supportedPaths() []SupportedField {
	var out []SupportedField
	expand := func(prefix string, list []SupportedField, note string) {
		for _, f := range list {
			n := f.Note
			if n == "" {
				n = note
			}
			out = append(out, SupportedField{prefix + f.Path, n})
		}
	}
	for _, f := range SupportedFields {
		prefix, isContainer := strings.CutSuffix(f.Path, containerField)
		if !isContainer {
			out = append(out, f)
			continue
		}
		for _, c := range containerFields {
			switch {
			case strings.HasSuffix(c.Path, probeField):
				p := strings.TrimSuffix(c.Path, probeField)
				expand(prefix+p, probeFields, c.Note)
				expand(prefix+p, handlerFields, c.Note)
			case strings.HasSuffix(c.Path, handlerField):
				p := strings.TrimSuffix(c.Path, handlerField)
				for _, h := range handlerFields {
					if strings.HasPrefix(h.Path, "tcpSocket.") {
						continue // deprecated in lifecycle hooks; never honoured by kubelet either
					}
					out = append(out, SupportedField{prefix + p + h.Path, h.Note})
				}
			default:
				n := c.Note
				if n == "" {
					n = f.Note
				}
				out = append(out, SupportedField{prefix + c.Path, n})
			}
		}
	}
	return out
}

// fieldTree answers, for a generic path ("spec.containers[*].image"), whether it is
// supported as a whole (leaf) or has supported descendants (inner).
type fieldTree struct {
	leaf  map[string]bool
	inner map[string]bool
}

var supported = func() fieldTree {
	t := fieldTree{leaf: map[string]bool{}, inner: map[string]bool{}}
	for _, f := range supportedPaths() {
		t.leaf[f.Path] = true
		p := f.Path
		for {
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
			t.inner[p] = true
		}
	}
	return t
}()

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// CheckSupported returns an error for every field set in pod that agentd does not
// implement, naming its path (spec.affinity: not supported by agentd).
func CheckSupported(pod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	walkUnsupported(reflect.ValueOf(pod).Elem(), nil, "", &errs)
	return errs
}

func walkUnsupported(v reflect.Value, path *field.Path, generic string, errs *field.ErrorList) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		fv := v.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if sf.Anonymous && name == "" {
			walkUnsupported(fv, path, generic, errs) // inline (TypeMeta)
			continue
		}
		if name == "" || name == "-" || isUnset(fv) {
			continue
		}
		fpath := path.Child(name)
		if path == nil {
			fpath = field.NewPath(name)
		}
		g := name
		if generic != "" {
			g = generic + "." + name
		}
		checkValue(fv, fpath, g, errs)
	}
}

func checkValue(v reflect.Value, path *field.Path, generic string, errs *field.ErrorList) {
	if supported.leaf[generic] {
		return
	}
	if !supported.inner[generic] {
		*errs = append(*errs, unsupportedField(path))
		return
	}
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	switch {
	case v.Kind() == reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			checkValue(v.Index(i), path.Index(i), generic+"[*]", errs)
		}
	case v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(jsonMarshaler):
		walkUnsupported(v, path, generic, errs)
	default:
		// A map or a value type (Quantity, IntOrString) with listed children only
		// cannot be partly supported; the table lists such fields whole.
		*errs = append(*errs, unsupportedField(path))
	}
}

// isUnset treats empty lists and maps like absent ones: `tolerations: []` asks for nothing.
func isUnset(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func unsupportedField(path *field.Path) *field.Error {
	return field.Forbidden(path, "not supported by agentd").WithOrigin(originUnsupported)
}
