package spec

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"

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
	{"kind", "must be `Pod`, or `PodList` with the pods in `items`"},
	{"status", "output only: accepted and ignored, as kubelet does for static pods"},

	{"metadata.name", "required, DNS-1123 subdomain"},
	{"metadata.namespace", "defaults to `default`"},
	{"metadata.uid", "kept when given (letters, digits, `-` and `.`, at most 128: it names directories and a cgroup); otherwise derived from content, file path and node name"},
	{"metadata.labels", ""},
	{"metadata.annotations", ""},
	{"metadata.creationTimestamp", "output only: accepted and ignored"},

	{"spec.volumes[*].name", ""},
	{"spec.volumes[*].hostPath.path", "absolute"},
	{"spec.volumes[*].hostPath.type", "`\"\"`, DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice"},
	{"spec.volumes[*].emptyDir.medium", "`\"\"` (disk) or Memory (tmpfs)"},
	{"spec.volumes[*].emptyDir.sizeLimit", ""},
	{"spec.volumes[*].downwardAPI.items[*]." + downwardItemField, "files written by agentd, mounted read-only"},
	{"spec.volumes[*].downwardAPI.defaultMode", "default 0644"},
	{"spec.volumes[*].projected.sources[*].downwardAPI.items[*]." + downwardItemField, "downwardAPI sources only: a static pod has no ConfigMaps, Secrets or service account tokens to project"},
	{"spec.volumes[*].projected.defaultMode", "default 0644"},

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
	{"spec.securityContext.runAsNonRoot", "an image user given by name is refused, as kubelet does: it cannot be verified"},
	{"spec.securityContext.supplementalGroups", ""},
	{"spec.securityContext.seccompProfile.type", "RuntimeDefault or Unconfined"},
	{"spec.securityContext.sysctls[*].name", "kubelet's safe sysctls only (kernel.shm_rmid_forced and net.ipv4's ip_local_port_range, ip_local_reserved_ports, ip_unprivileged_port_start, ping_group_range, tcp_syncookies, tcp_keepalive_*, tcp_fin_timeout, tcp_rmem, tcp_wmem); no net ones with hostNetwork, no ipc ones with hostIPC; set in the pod's namespaces at every container start"},
	{"spec.securityContext.sysctls[*].value", ""},

	{"spec.initContainers[*]." + containerField, "run in order before the app containers; no probes or lifecycle hooks unless a sidecar (restartPolicy Always)"},
	{"spec.containers[*]." + containerField, ""},
}

// containerField is a marker expanded into the container fields below for both
// spec.initContainers and spec.containers.
const containerField = "<container>"

var containerFields = []SupportedField{
	{"name", "required, DNS-1123 label, unique in the pod"},
	{"image", "required; a reference `[registry[:port]/]name[:tag][@digest]` (lower-case path elements, none empty, `.` or `..`) or an image ID"},
	{"imagePullPolicy", "Always, IfNotPresent, Never; default as kubelet's (Always for `:latest` or no tag)"},
	{"command", "replaces the image's Entrypoint"},
	{"args", "replaces the image's Cmd"},
	{"workingDir", ""},
	{"stdin", "a stdin pipe kept open by the container's monitor, for `agentctl attach -i`; without it stdin is /dev/null"},
	{"stdinOnce", "stdin is closed when the first attached client that wrote to it detaches"},
	{"tty", "a terminal for stdin, stdout and stderr (logged as stdout; TERM=xterm unless set)"},
	{"env[*].name", ""},
	{"env[*].value", "`$(VAR)` references expanded as Kubernetes does"},
	{"env[*].valueFrom.fieldRef.apiVersion", ""},
	{"env[*].valueFrom.fieldRef.fieldPath", "metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP, status.podIPs"},
	{"env[*].valueFrom.resourceFieldRef.containerName", "default: this container"},
	{"env[*].valueFrom.resourceFieldRef.resource", resourceFieldNote},
	{"env[*].valueFrom.resourceFieldRef.divisor", "default 1; cpu: 1 or 1m, else 1, 1k…1E, 1Ki…1Ei"},
	{"ports[*].name", ""},
	{"ports[*].containerPort", ""},
	{"ports[*].protocol", "TCP (default), UDP, SCTP"},
	{"ports[*].hostPort", "with hostNetwork: equal to containerPort (the default). On the pod network: forwarded (CNI portmap) from every node address, 127.0.0.1 included, to the pod's containerPort; app containers only; unique per hostPort/protocol/hostIP in the pod; not agentd's own ports (2377, 2379, 2380, the metrics port, a cluster's ports), nor one another pod or a process of the node has: the pod then waits, with a FailedCreatePodSandBox event, until the port is free"},
	{"ports[*].hostIP", "only with hostPort; on the pod network an IPv4 address of the node, to forward only connections to it"},
	{"resources.limits", "cpu, memory"},
	{"resources.requests", "cpu, memory; default to the limits"},
	{"volumeMounts[*].name", "must name a volume of the pod"},
	{"volumeMounts[*].mountPath", "absolute"},
	{"volumeMounts[*].readOnly", ""},
	{"volumeMounts[*].subPath", "relative, no `..`; resolved inside the volume at every start of the container, created when missing"},
	{"livenessProbe." + probeField, "failure restarts the container"},
	{"readinessProbe." + probeField, ""},
	{"startupProbe." + probeField, ""},
	{"lifecycle.postStart." + handlerField, ""},
	{"lifecycle.preStop." + handlerField, "runs before TERM, within the grace period"},
	{"lifecycle.postStart.sleep.seconds", ""},
	{"lifecycle.preStop.sleep.seconds", ""},
	{"restartPolicy", "init containers only, Always: a sidecar (KEP-753), started in order, kept running and restarted whatever the pod's policy, stopped after the app containers"},
	{"terminationMessagePath", "default /dev/termination-log; a host file mounted there, at most 4096 bytes read"},
	{"terminationMessagePolicy", "File (default) or FallbackToLogsOnError"},
	{"securityContext.runAsUser", ""},
	{"securityContext.runAsGroup", ""},
	{"securityContext.runAsNonRoot", "an image user given by name is refused, as kubelet does"},
	{"securityContext.privileged", ""},
	{"securityContext.readOnlyRootFilesystem", ""},
	{"securityContext.allowPrivilegeEscalation", "false sets no_new_privs"},
	{"securityContext.capabilities.add", "over Docker's default set"},
	{"securityContext.capabilities.drop", "`ALL` or names"},
	{"securityContext.seccompProfile.type", "RuntimeDefault or Unconfined"},
}

// downwardItemField is a marker expanded into the fields of a downwardAPI volume file.
const downwardItemField = "<downwardItem>"

const resourceFieldNote = "limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage; a limit not set is the node's allocatable, as in kubelet"

var downwardItemFields = []SupportedField{
	{"path", "relative, no `..`; written beneath the volume's directory"},
	{"mode", "0 to 0777; default the volume's defaultMode"},
	{"fieldRef.apiVersion", ""},
	{"fieldRef.fieldPath", "metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, metadata.labels['<key>'], metadata.annotations['<key>']"},
	{"resourceFieldRef.containerName", "required"},
	{"resourceFieldRef.resource", resourceFieldNote},
	{"resourceFieldRef.divisor", "default 1"},
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
	{"grpc.port", "probes only: the standard health-checking protocol (grpc.health.v1.Health) on the pod IP, plaintext"},
	{"grpc.service", "default \"\": the server as a whole"},
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
		if prefix, ok := strings.CutSuffix(f.Path, downwardItemField); ok {
			expand(prefix, downwardItemFields, f.Note)
			continue
		}
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

// FieldTree answers, for a generic path ("spec.containers[*].image"), whether it is
// supported as a whole (leaf) or has supported descendants (inner); Check walks a
// decoded object's Go types against it, so a field that a later k8s.io/api adds is
// refused rather than ignored.
type FieldTree struct {
	leaf  map[string]bool
	inner map[string]bool
	notes map[string]string // why an unsupported field is refused, when users commonly set it
}

// NewFieldTree builds a tree from a list of supported paths; notes, by generic path,
// are added to the message of an unsupported field.
func NewFieldTree(list []SupportedField, notes map[string]string) FieldTree {
	t := FieldTree{leaf: map[string]bool{}, inner: map[string]bool{}, notes: notes}
	for _, f := range list {
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
}

// supported is built on first use: a program that links spec and never checks a manifest (agentd --version,
// agent-etcd) does not pay for it at start.
var supported = sync.OnceValue(func() FieldTree { return NewFieldTree(supportedPaths(), refusedNotes()) })

// Why kubelet refuses these for static pods, too: a static pod is not an API
// object's child and may not refer to API objects (the API server refuses the
// mirror pod of one that does, and kubelet runs static pods without the API
// server). The messages say so and what to use instead.
const (
	noAPIObjects   = "a static pod cannot refer to API objects (kubelet refuses its mirror pod too)"
	noConfigMap    = noAPIObjects + "; put the files on the node and mount them with a hostPath volume"
	noEnvFromAPI   = noAPIObjects + "; set env values, or read a file from a hostPath volume"
	noSecretPull   = noAPIObjects + "; give registry credentials in agentd's configuration (registries)"
	noSA           = "a static pod has no service account and gets no token, as with kubelet (its mirror pod may not name one)"
	noEphemeral    = "ephemeral containers are added through the API server to a running pod, which a static pod is not; use agentctl exec"
	noClaims       = noAPIObjects + ": resource claims and volume claims are API objects"
	noFileKeyRef   = "env files (fileKeyRef) are not implemented by agentd"
	noTokenProject = noSA + "; a projected volume may hold downwardAPI sources only"
)

// refusedNotes are the notes of refused fields users commonly set, by generic path.
func refusedNotes() map[string]string {
	notes := map[string]string{
		"spec.volumes[*].configMap":                                noConfigMap,
		"spec.volumes[*].secret":                                   noConfigMap,
		"spec.volumes[*].persistentVolumeClaim":                    noClaims,
		"spec.volumes[*].ephemeral":                                noClaims,
		"spec.volumes[*].projected.sources[*].configMap":           noConfigMap,
		"spec.volumes[*].projected.sources[*].secret":              noConfigMap,
		"spec.volumes[*].projected.sources[*].serviceAccountToken": noTokenProject,
		"spec.volumes[*].projected.sources[*].clusterTrustBundle":  noAPIObjects,
		"spec.volumes[*].projected.sources[*].podCertificate":      noAPIObjects,
		"spec.serviceAccountName":                                  noSA,
		"spec.serviceAccount":                                      noSA,
		"spec.automountServiceAccountToken":                        noSA + "; leave the field out",
		"spec.imagePullSecrets":                                    noSecretPull,
		"spec.ephemeralContainers":                                 noEphemeral,
		"spec.resourceClaims":                                      noClaims,
	}
	for _, c := range []string{"spec.containers[*]", "spec.initContainers[*]"} {
		notes[c+".envFrom"] = noEnvFromAPI
		notes[c+".env[*].valueFrom.configMapKeyRef"] = noEnvFromAPI
		notes[c+".env[*].valueFrom.secretKeyRef"] = noEnvFromAPI
		notes[c+".env[*].valueFrom.fileKeyRef"] = noFileKeyRef
		notes[c+".resources.claims"] = noClaims
	}
	return notes
}

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// CheckSupported returns an error for every field set in pod that agentd does not
// implement, naming its path (spec.affinity: not supported by agentd).
func CheckSupported(pod *corev1.Pod) field.ErrorList {
	return supported().Check(pod, nil)
}

// Check returns an error for every set field of obj (a pointer to a struct) that the
// tree does not support; path is where obj sits in its manifest (nil: the top).
func (t FieldTree) Check(obj any, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	t.walk(reflect.ValueOf(obj).Elem(), path, "", &errs)
	return errs
}

func (t FieldTree) walk(v reflect.Value, path *field.Path, generic string, errs *field.ErrorList) {
	typ := v.Type()
	for i := 0; i < typ.NumField(); i++ {
		sf := typ.Field(i)
		fv := v.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if sf.Anonymous && name == "" {
			t.walk(fv, path, generic, errs) // inline (TypeMeta)
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
		t.check(fv, fpath, g, errs)
	}
}

func (t FieldTree) check(v reflect.Value, path *field.Path, generic string, errs *field.ErrorList) {
	if t.leaf[generic] {
		return
	}
	if !t.inner[generic] {
		*errs = append(*errs, t.unsupported(path, generic))
		return
	}
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	switch {
	case v.Kind() == reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			t.check(v.Index(i), path.Index(i), generic+"[*]", errs)
		}
	case v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(jsonMarshaler):
		t.walk(v, path, generic, errs)
	default:
		// A map or a value type (Quantity, IntOrString) with listed children only
		// cannot be partly supported; the table lists such fields whole.
		*errs = append(*errs, t.unsupported(path, generic))
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

// NotSupported is the message of a field agentd does not implement.
const NotSupported = "not supported by agentd"

func (t FieldTree) unsupported(path *field.Path, generic string) *field.Error {
	return UnsupportedField(path, t.notes[generic])
}

// UnsupportedField is the error for a field agentd does not implement, printed as
// `path: not supported by agentd` (and `: note` when a note says why).
func UnsupportedField(path *field.Path, note string) *field.Error {
	detail := NotSupported
	if note != "" {
		detail += ": " + note
	}
	return field.Forbidden(path, detail).WithOrigin(originUnsupported)
}
