package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/agentd-project/agentd/spec"
)

// The downward API: the values kubelet gives env fieldRefs and resourceFieldRefs
// and the files of downwardAPI and projected volumes
// (pkg/kubelet/kubelet_pods.go podFieldSelectorRuntimeValue,
// pkg/api/v1/resource ExtractResourceValueByContainerName, pkg/volume/downwardapi),
// computed by pure functions from the pod, its sandbox and the node.

// Allocatable is what the node offers a container that sets no limit: kubelet
// shows the node's allocatable for a resourceFieldRef to a limit not set. agentd
// reserves nothing, so allocatable is capacity.
type Allocatable struct {
	MilliCPU         int64
	Memory           int64 // bytes
	EphemeralStorage int64 // bytes, of the filesystem holding root
}

// allocatable is the node's, from the runtime's settings.
func (s *Settings) allocatable() Allocatable {
	return Allocatable{MilliCPU: s.NodeMilliCPU, Memory: s.NodeMemory, EphemeralStorage: s.NodeEphemeralStorage}
}

// EnvFieldValue is the value of an env var's fieldRef.
func EnvFieldValue(pod *corev1.Pod, fieldPath string, sb *Sandbox, nodeName string) (string, error) {
	if v, ok, err := metadataValue(pod, fieldPath); ok || err != nil {
		return v, err
	}
	switch fieldPath {
	case "spec.nodeName":
		return firstNonEmpty(pod.Spec.NodeName, nodeName), nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs": // one IP family: the list is the one address
		return sb.PodIP, nil
	case "status.hostIP", "status.hostIPs":
		return sb.HostIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", fieldPath)
}

// metadataValue is the value of a metadata fieldRef; ok is false for a path
// outside metadata. Whole label and annotation maps are formatted as kubelet
// writes them into a volume: `key="value"` lines, sorted by key.
func metadataValue(pod *corev1.Pod, fieldPath string) (value string, ok bool, err error) {
	if base, key, sub := spec.SplitSubscript(fieldPath); sub {
		switch base {
		case "metadata.labels":
			return pod.Labels[key], true, nil
		case "metadata.annotations":
			return pod.Annotations[key], true, nil
		}
		return "", false, fmt.Errorf("unsupported fieldPath %q", fieldPath)
	}
	switch fieldPath {
	case "metadata.name":
		return pod.Name, true, nil
	case "metadata.namespace":
		return pod.Namespace, true, nil
	case "metadata.uid":
		return string(pod.UID), true, nil
	case "metadata.labels":
		return formatMap(pod.Labels), true, nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), true, nil
	}
	return "", false, nil
}

// formatMap is kubelet's fieldpath.FormatMap.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = k + "=" + strconv.Quote(m[k])
	}
	return strings.Join(lines, "\n")
}

// ResourceFieldValue is the value of a resourceFieldRef to a container of pod
// (ref.ContainerName, or def when it names none): the container's request or
// limit divided by the divisor and rounded up, a limit not set being the node's
// allocatable, as kubelet computes it.
func ResourceFieldValue(pod *corev1.Pod, def string, ref *corev1.ResourceFieldSelector, alloc Allocatable) (string, error) {
	name := firstNonEmpty(ref.ContainerName, def)
	var c *corev1.Container
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				c = &list[i]
			}
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef: no container %q in the pod", name)
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	kind, res, _ := strings.Cut(ref.Resource, ".")
	rn := corev1.ResourceName(res)
	q, set := c.Resources.Requests[rn]
	if kind == "limits" {
		q, set = c.Resources.Limits[rn]
		if !set {
			switch rn {
			case corev1.ResourceCPU:
				q = *resource.NewMilliQuantity(alloc.MilliCPU, resource.DecimalSI)
			case corev1.ResourceMemory:
				q = *resource.NewQuantity(alloc.Memory, resource.BinarySI)
			case corev1.ResourceEphemeralStorage:
				q = *resource.NewQuantity(alloc.EphemeralStorage, resource.BinarySI)
			}
		}
	}
	switch {
	case kind != "limits" && kind != "requests":
	case rn == corev1.ResourceCPU:
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	case rn == corev1.ResourceMemory, rn == corev1.ResourceEphemeralStorage:
		return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
	}
	return "", fmt.Errorf("unsupported resource %q", ref.Resource)
}

// VolumeFile is one file of a downwardAPI or projected volume.
type VolumeFile struct {
	Path string // relative, clean, validated by spec
	Data []byte
	Mode os.FileMode
}

// IsDownwardVolume says whether v is a volume whose files agentd writes: a
// downwardAPI volume or a projected one (of downwardAPI sources).
func IsDownwardVolume(v *corev1.Volume) bool { return v.DownwardAPI != nil || v.Projected != nil }

// DownwardVolumeFiles are the files of a downwardAPI or projected volume of pod.
func DownwardVolumeFiles(pod *corev1.Pod, v *corev1.Volume, alloc Allocatable) ([]VolumeFile, error) {
	var items []corev1.DownwardAPIVolumeFile
	var defMode *int32
	switch {
	case v.DownwardAPI != nil:
		items, defMode = v.DownwardAPI.Items, v.DownwardAPI.DefaultMode
	case v.Projected != nil:
		defMode = v.Projected.DefaultMode
		for i, src := range v.Projected.Sources {
			if src.DownwardAPI == nil {
				return nil, fmt.Errorf("volume %q: projected source %d: only downwardAPI sources are supported", v.Name, i)
			}
			items = append(items, src.DownwardAPI.Items...)
		}
	default:
		return nil, fmt.Errorf("volume %q is not a downwardAPI or projected volume", v.Name)
	}
	mode := spec.DefaultVolumeFileMode
	if defMode != nil {
		mode = *defMode
	}
	out := make([]VolumeFile, 0, len(items))
	for _, it := range items {
		p := path.Clean(it.Path)
		if !isLocalPath(p) {
			return nil, fmt.Errorf("volume %q: %w: item path %q does not stay inside the volume", v.Name, ErrUnsafeName, it.Path)
		}
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			var ok bool
			val, ok, err = metadataValue(pod, it.FieldRef.FieldPath)
			if err == nil && !ok {
				err = fmt.Errorf("unsupported fieldPath %q in a volume", it.FieldRef.FieldPath)
			}
		case it.ResourceFieldRef != nil:
			val, err = ResourceFieldValue(pod, "", it.ResourceFieldRef, alloc)
		default:
			err = errors.New("neither fieldRef nor resourceFieldRef")
		}
		if err != nil {
			return nil, fmt.Errorf("volume %q item %q: %w", v.Name, it.Path, err)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		out = append(out, VolumeFile{Path: p, Data: []byte(val), Mode: os.FileMode(m) & fs.ModePerm})
	}
	return out, nil
}

// isLocalPath: relative, clean, not ".", no ".." element, no NUL.
func isLocalPath(p string) bool {
	return p != "" && p != "." && !path.IsAbs(p) && path.Clean(p) == p && !strings.ContainsRune(p, 0) &&
		!strings.HasPrefix(p, "..") && !strings.Contains("/"+p+"/", "/../")
}

// writeVolumeFiles writes files beneath dir, a directory only agentd writes to
// (containers get it read-only). Every file is written through an os.Root of dir,
// so no path, nor any symlink found on the way, leads outside it; each file is
// replaced atomically (a temporary file renamed over it), so a container
// reading it while a restart of a sibling rewrites it sees the old or the new
// content.
func writeVolumeFiles(dir string, files []VolumeFile) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// Modes as given, whatever the umask: containers of any user read them.
	if err := root.Chmod(".", 0o755); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, f := range files {
		if !isLocalPath(f.Path) {
			return fmt.Errorf("%w: volume file %q does not stay inside %s", ErrUnsafeName, f.Path, dir)
		}
		if d := path.Dir(f.Path); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%s: %w", dir, err)
			}
			for p := d; p != "."; p = path.Dir(p) {
				if err := root.Chmod(p, 0o755); err != nil {
					return fmt.Errorf("%s: %w", dir, err)
				}
			}
		}
		tmp := path.Join(path.Dir(f.Path), ".."+path.Base(f.Path)+".tmp")
		_ = root.Remove(tmp)
		if err := root.WriteFile(tmp, f.Data, 0o600); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if err := root.Chmod(tmp, f.Mode); err != nil {
			_ = root.Remove(tmp)
			return fmt.Errorf("%s: %w", dir, err)
		}
		if err := root.Rename(tmp, f.Path); err != nil {
			_ = root.Remove(tmp)
			return fmt.Errorf("%s: %w", dir, err)
		}
	}
	return nil
}
