// Package record holds what agentd keeps of the objects a CRI client creates:
// sandbox records (the CRI part of a pod's record, <run-dir>/pods/<id>/pod.json)
// and container records (<run-dir>/pods/<sandbox>/cri/<id>.json), with the pure
// functions that check them and rebuild from them what the runtime needs
// (SandboxPod). Everything here is pure: no file is read or written.
//
// Records live in run-dir, as manifest pods' records do, and are read back by a
// restarted agentd: they are validated (ValidateSandbox, ValidateContainer)
// before anything in them becomes a path, so a record agentd did not write
// cannot make it touch anything outside its own directories.
package record

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// ErrInvalid is wrapped by every error of the checks below: a request or a
// record that is malformed.
var ErrInvalid = errors.New("invalid")

// Sandbox states as recorded.
const (
	StateReady    = "READY"
	StateNotReady = "NOTREADY"
)

// Annotations agentd sets on the corev1.Pod of a CRI sandbox (SandboxPod), as
// `agentctl get pods` shows it.
const (
	// AnnotationConfigSource is kubelet's config source annotation; static
	// pods carry "file", CRI sandboxes SourceCRI.
	AnnotationConfigSource = "kubernetes.io/config.source"
	SourceCRI              = "cri"
	// AnnotationSandboxID is the CRI sandbox ID.
	AnnotationSandboxID = "agentd.io/cri.sandbox-id"
)

// Sandbox is the CRI part of a sandbox's pod record.
type Sandbox struct {
	ID string `json:"id"`
	// Config is the request's config as given; the pod is rebuilt from it
	// (SandboxPod).
	Config         *runtimeapi.PodSandboxConfig `json:"config"`
	RuntimeHandler string                       `json:"runtimeHandler,omitempty"`
	CreatedAt      time.Time                    `json:"createdAt"`
	State          string                       `json:"state"`
	IP             string                       `json:"ip,omitempty"`
}

// Container is a CRI container's record.
type Container struct {
	ID        string                        `json:"id"`
	SandboxID string                        `json:"sandboxId"`
	Metadata  *runtimeapi.ContainerMetadata `json:"metadata"`
	Labels    map[string]string             `json:"labels,omitempty"`
	// Annotations are returned as given (the CRI's rule).
	Annotations map[string]string `json:"annotations,omitempty"`
	// Image is the image as the client named it; ImageID the image it resolved to.
	Image     string              `json:"image"`
	ImageID   string              `json:"imageId"`
	ImageRef  string              `json:"imageRef,omitempty"` // a name of the image (repo@digest when known)
	LogPath   string              `json:"logPath,omitempty"`  // as given: relative to the sandbox's LogDirectory
	Mounts    []*runtimeapi.Mount `json:"mounts,omitempty"`
	CreatedAt time.Time           `json:"createdAt"`
	// Config is the monitor's config, built at CreateContainer so that a bad
	// image or mount fails the create.
	Config *protocol.ContainerConfig `json:"config"`
	// StartedOnce is set before the container's monitor is started: a
	// container without a monitor that has it set has exited (its monitor
	// was lost), one without it is CREATED.
	StartedOnce bool `json:"startedOnce,omitempty"`
}

// NewID is a new sandbox or container ID: 64 random hex digits.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never on Linux
	}
	return hex.EncodeToString(b[:])
}

// ValidID says whether id has the shape of agentd's IDs (NewID): only such an
// ID ever becomes a path or a cgroup component.
func ValidID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ContainerName is the internal name of CRI container id: a DNS label (so a
// path and a cgroup component), unique within its sandbox for all practical
// purposes (60 random bits).
func ContainerName(id string) string { return "c" + id[:15] }

// SandboxKey is the name a sandbox reserves (containerd's and CRI-O's):
// <name>_<namespace>_<uid>_<attempt>.
func SandboxKey(md *runtimeapi.PodSandboxMetadata) string {
	return md.GetName() + "_" + md.GetNamespace() + "_" + md.GetUid() + "_" + strconv.FormatUint(uint64(md.GetAttempt()), 10)
}

// ContainerKey is the name a container reserves in its sandbox: <name>_<attempt>.
func ContainerKey(md *runtimeapi.ContainerMetadata) string {
	return md.GetName() + "_" + strconv.FormatUint(uint64(md.GetAttempt()), 10)
}

// checkDir proves that dir, a directory a CRI client names on the host, is a
// clean absolute path other than the root.
func checkDir(what, dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return fmt.Errorf("%w: %s %q is not a clean absolute path", ErrInvalid, what, dir)
	}
	return nil
}

// ValidateSandboxConfig checks a RunPodSandbox request's config: metadata with
// a name, a clean absolute LogDirectory (or none), namespace modes agentd
// supports, a hostname that is a DNS name.
func ValidateSandboxConfig(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil || cfg.Metadata == nil || cfg.Metadata.Name == "" {
		return fmt.Errorf("%w: sandbox config has no metadata name", ErrInvalid)
	}
	if d := cfg.LogDirectory; d != "" {
		if err := checkDir("log directory", d); err != nil {
			return err
		}
	}
	if h := cfg.Hostname; h != "" {
		if errs := validation.IsDNS1123Subdomain(h); len(errs) > 0 {
			return fmt.Errorf("%w: hostname %q: %s", ErrInvalid, h, strings.Join(errs, "; "))
		}
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	for what, m := range map[string]runtimeapi.NamespaceMode{"network": ns.GetNetwork(), "IPC": ns.GetIpc()} {
		if m != runtimeapi.NamespaceMode_POD && m != runtimeapi.NamespaceMode_NODE {
			return fmt.Errorf("%w: %s namespace mode %s is not supported", ErrInvalid, what, m)
		}
	}
	if m := ns.GetPid(); m == runtimeapi.NamespaceMode_TARGET {
		return fmt.Errorf("%w: PID namespace mode TARGET is not supported", ErrInvalid)
	}
	return nil
}

// SandboxPod is the pod agentd runs for CRI sandbox id: what the runtime's
// EnsureSandbox and ContainerConfig take. Its name and namespace are the
// metadata's when they are valid Kubernetes names, else cri-<id[:12]> in
// "default"; its UID is id. It has no containers and no volumes (CRI mounts are
// host paths, given per container), restartPolicy Never (the CRI client
// restarts containers), and the namespaces, hostname and DNS config asked for.
func SandboxPod(id string, cfg *runtimeapi.PodSandboxConfig) (*corev1.Pod, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: sandbox ID %q is not 64 hex digits", ErrInvalid, id)
	}
	if err := ValidateSandboxConfig(cfg); err != nil {
		return nil, err
	}
	md := cfg.Metadata
	name, namespace := md.Name, md.Namespace
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(name) > 200 {
		name = "cri-" + id[:12]
	}
	if namespace == "" || len(validation.IsDNS1123Label(namespace)) > 0 {
		namespace = "default"
	}
	annotations := map[string]string{}
	for k, v := range cfg.Annotations {
		annotations[k] = v
	}
	annotations[AnnotationConfigSource] = SourceCRI
	annotations[AnnotationSandboxID] = id
	labels := map[string]string{}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	grace := int64(30)
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace, UID: types.UID(id),
			Labels: labels, Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			DNSPolicy:                     corev1.DNSDefault,
		},
	}
	if len(pod.Labels) == 0 {
		pod.Labels = nil
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	pod.Spec.HostNetwork = ns.GetNetwork() == runtimeapi.NamespaceMode_NODE
	pod.Spec.HostIPC = ns.GetIpc() == runtimeapi.NamespaceMode_NODE
	pod.Spec.HostPID = ns.GetPid() == runtimeapi.NamespaceMode_NODE
	if !pod.Spec.HostNetwork {
		pod.Spec.Hostname = cfg.Hostname
	}
	if d := cfg.DnsConfig; d != nil {
		pod.Spec.DNSPolicy = corev1.DNSNone
		dc := &corev1.PodDNSConfig{Nameservers: d.Servers, Searches: d.Searches}
		for _, o := range d.Options {
			n, v, hasValue := strings.Cut(o, ":")
			opt := corev1.PodDNSConfigOption{Name: n}
			if hasValue {
				opt.Value = &v
			}
			dc.Options = append(dc.Options, opt)
		}
		pod.Spec.DNSConfig = dc
	}
	if sc := cfg.GetLinux().GetSysctls(); len(sc) > 0 {
		// TODO(criattach): runtime.ContainerConfig turns these into
		// protocol.ContainerConfig.Sysctls (checked there) once the monitor applies them.
		names := make([]string, 0, len(sc))
		for n := range sc {
			names = append(names, n)
		}
		sort.Strings(names)
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
		for _, n := range names {
			pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: sc[n]})
		}
	}
	return pod, nil
}

// ValidateSandbox proves that rec, read from sandbox id's record, is one
// agentd wrote: its ID and a config RunPodSandbox accepts.
func ValidateSandbox(id string, rec *Sandbox) error {
	if rec == nil {
		return fmt.Errorf("%w: sandbox %s: no CRI record", ErrInvalid, id)
	}
	if !ValidID(id) || rec.ID != id {
		return fmt.Errorf("%w: sandbox %q: the record is of sandbox %q", ErrInvalid, id, rec.ID)
	}
	if rec.State != StateReady && rec.State != StateNotReady {
		return fmt.Errorf("%w: sandbox %s: state %q", ErrInvalid, id, rec.State)
	}
	if err := ValidateSandboxConfig(rec.Config); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	return nil
}

// CheckLogPath proves that a container's LogPath, relative to its sandbox's
// LogDirectory, stays beneath it. Both empty is no log file of the client's.
func CheckLogPath(logDir, logPath string) error {
	if logPath == "" {
		return nil
	}
	if logDir == "" {
		return fmt.Errorf("%w: log path %q without a sandbox log directory", ErrInvalid, logPath)
	}
	if filepath.IsAbs(logPath) || !filepath.IsLocal(logPath) || filepath.Clean(logPath) != logPath || logPath == "." {
		return fmt.Errorf("%w: log path %q does not stay beneath the sandbox's log directory %s", ErrInvalid, logPath, logDir)
	}
	return nil
}

// ValidateContainerConfig checks a CreateContainer request's config: metadata
// with a name, an image, a log path beneath the sandbox's log directory, and
// mounts of absolute host paths at absolute container paths.
func ValidateContainerConfig(cfg *runtimeapi.ContainerConfig, logDir string) error {
	if cfg == nil || cfg.Metadata == nil || cfg.Metadata.Name == "" {
		return fmt.Errorf("%w: container config has no metadata name", ErrInvalid)
	}
	if cfg.Image.GetImage() == "" {
		return fmt.Errorf("%w: container %s: no image", ErrInvalid, cfg.Metadata.Name)
	}
	if err := CheckLogPath(logDir, cfg.LogPath); err != nil {
		return fmt.Errorf("container %s: %w", cfg.Metadata.Name, err)
	}
	for _, m := range cfg.Mounts {
		if !filepath.IsAbs(m.HostPath) || !filepath.IsAbs(m.ContainerPath) {
			return fmt.Errorf("%w: container %s: mount %q at %q: both paths must be absolute", ErrInvalid, cfg.Metadata.Name, m.HostPath, m.ContainerPath)
		}
		if m.Image != nil {
			return fmt.Errorf("%w: container %s: image volumes are not supported", ErrInvalid, cfg.Metadata.Name)
		}
	}
	return nil
}

// ValidateContainer proves that rec, read from sandbox sandboxID's record
// directory under the name id, is one agentd wrote: the IDs, the internal
// name, and a log file beneath logDir (the sandbox's LogDirectory) as the
// client gave it. The monitor config's paths are the runtime's to check.
func ValidateContainer(sandboxID, id string, rec *Container, logDir string) error {
	if rec == nil || rec.Config == nil || rec.Metadata == nil {
		return fmt.Errorf("%w: container %s: incomplete record", ErrInvalid, id)
	}
	if !ValidID(id) || rec.ID != id || rec.SandboxID != sandboxID {
		return fmt.Errorf("%w: container %q: the record is of container %q of sandbox %q", ErrInvalid, id, rec.ID, rec.SandboxID)
	}
	c := rec.Config
	if c.Pod.UID != sandboxID || c.Name != ContainerName(id) {
		return fmt.Errorf("%w: container %s: its monitor config is for %s of pod %s", ErrInvalid, id, c.Name, c.Pod.UID)
	}
	if err := CheckLogPath(logDir, rec.LogPath); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if rec.LogPath != "" && (c.Log.Root != logDir || c.Log.File != rec.LogPath) {
		return fmt.Errorf("%w: container %s: monitor log %s under %s, want %s under %s", ErrInvalid, id, c.Log.File, c.Log.Root, rec.LogPath, logDir)
	}
	for _, m := range c.Mounts {
		if !filepath.IsAbs(m.Source) || filepath.Clean(m.Source) != m.Source {
			return fmt.Errorf("%w: container %s: mount source %q is not a clean absolute path", ErrInvalid, id, m.Source)
		}
	}
	return nil
}
