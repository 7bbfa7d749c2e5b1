package spec

import (
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The downward API as kubelet implements it (pkg/apis/core/validation's field
// selectors, pkg/kubelet's podFieldSelectorRuntimeValue): which pod fields an env
// var and a downwardAPI volume file may show, and which resources.

// EnvFieldPaths are the fieldRef paths an env var may refer to, besides
// metadata.labels['<key>'] and metadata.annotations['<key>'].
var EnvFieldPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.uid",
	"spec.nodeName", "spec.serviceAccountName",
	"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}

// VolumeFieldPaths are the fieldRef paths a downwardAPI volume file may show,
// besides metadata.labels['<key>'] and metadata.annotations['<key>']: only the
// pod's metadata, as kubelet allows.
var VolumeFieldPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations",
}

// ResourceFieldNames are the resources a resourceFieldRef may name.
var ResourceFieldNames = []string{
	"limits.cpu", "limits.memory", "limits.ephemeral-storage",
	"requests.cpu", "requests.memory", "requests.ephemeral-storage",
}

// Divisors kubelet accepts for a resourceFieldRef, by resource.
var (
	cpuDivisors    = []string{"1m", "1"}
	memoryDivisors = []string{"1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"}
)

// SplitSubscript splits `metadata.labels['key']` into `metadata.labels` and
// `key`; a path without a subscript comes back whole with ok false.
func SplitSubscript(fieldPath string) (base, key string, ok bool) {
	base, rest, found := strings.Cut(fieldPath, "['")
	if !found || !strings.HasSuffix(rest, "']") {
		return fieldPath, "", false
	}
	return base, strings.TrimSuffix(rest, "']"), true
}

// validateFieldRef checks a fieldRef against the paths allowed where it is used.
func validateFieldRef(ref *corev1.ObjectFieldSelector, allowed []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ref.APIVersion != "" && ref.APIVersion != "v1" {
		errs = append(errs, field.NotSupported(p.Child("apiVersion"), ref.APIVersion, []string{"v1"}))
	}
	fp := p.Child("fieldPath")
	if ref.FieldPath == "" {
		return append(errs, field.Required(fp, ""))
	}
	base, key, sub := SplitSubscript(ref.FieldPath)
	if sub {
		switch base {
		case "metadata.labels":
			for _, msg := range validation.IsQualifiedName(key) {
				errs = append(errs, field.Invalid(fp, ref.FieldPath, "invalid label key: "+msg))
			}
		case "metadata.annotations":
			for _, msg := range validation.IsQualifiedName(strings.ToLower(key)) {
				errs = append(errs, field.Invalid(fp, ref.FieldPath, "invalid annotation key: "+msg))
			}
		default:
			errs = append(errs, field.Invalid(fp, ref.FieldPath, "a subscript is allowed only on metadata.labels and metadata.annotations"))
		}
		return errs
	}
	if !sets.New(allowed...).Has(ref.FieldPath) {
		shown := append(append([]string{}, allowed...), "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']")
		errs = append(errs, field.NotSupported(fp, ref.FieldPath, shown))
	}
	return errs
}

// validateResourceFieldRef checks a resourceFieldRef: a known resource, a
// divisor kubelet accepts for it, and a container of the pod (required in a
// volume, where there is no container to default to).
func validateResourceFieldRef(ref *corev1.ResourceFieldSelector, s *corev1.PodSpec, needContainer bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case ref.ContainerName == "" && needContainer:
		errs = append(errs, field.Required(p.Child("containerName"), "a volume file must name the container whose resources it shows"))
	case ref.ContainerName != "" && !hasContainer(s, ref.ContainerName):
		errs = append(errs, field.NotFound(p.Child("containerName"), ref.ContainerName))
	}
	if !sets.New(ResourceFieldNames...).Has(ref.Resource) {
		if ref.Resource == "" {
			errs = append(errs, field.Required(p.Child("resource"), ""))
		} else {
			errs = append(errs, field.NotSupported(p.Child("resource"), ref.Resource, ResourceFieldNames))
		}
		return errs
	}
	if ref.Divisor.IsZero() {
		return errs // unset: 1
	}
	valid := memoryDivisors
	if strings.HasSuffix(ref.Resource, ".cpu") {
		valid = cpuDivisors
	}
	for _, d := range valid {
		if ref.Divisor.Cmp(resource.MustParse(d)) == 0 {
			return errs
		}
	}
	return append(errs, field.NotSupported(p.Child("divisor"), ref.Divisor.String(), valid))
}

func hasContainer(s *corev1.PodSpec, name string) bool {
	for _, list := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range list {
			if list[i].Name == name {
				return true
			}
		}
	}
	return false
}

// MaxFileMode is the largest mode a volume file may have.
const MaxFileMode = 0o777

func validateMode(mode *int32, p *field.Path) field.ErrorList {
	if mode != nil && (*mode < 0 || *mode > MaxFileMode) {
		return field.ErrorList{field.Invalid(p, *mode, "must be a number between 0 and 0777 (octal), both inclusive")}
	}
	return nil
}

// validateDownwardAPIItems checks the files of a downwardAPI volume or a
// projected volume's downwardAPI source. paths collects the files of the whole
// volume: agentd writes each where its path says, beneath the volume's
// directory, so a path must stay there (relative, no '..') and name one file.
func validateDownwardAPIItems(items []corev1.DownwardAPIVolumeFile, s *corev1.PodSpec, paths map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		ip := p.Index(i)
		pp := ip.Child("path")
		if perrs := validateLocalPath(pp, it.Path); len(perrs) > 0 {
			errs = append(errs, perrs...)
		} else {
			clean := path.Clean(it.Path)
			for other, where := range paths {
				switch {
				case other == clean:
					errs = append(errs, field.Duplicate(pp, it.Path))
				case strings.HasPrefix(other, clean+"/") || strings.HasPrefix(clean, other+"/"):
					errs = append(errs, field.Invalid(pp, it.Path, "conflicts with "+where+": one file's path may not be a directory of another's"))
				}
			}
			paths[clean] = pp.String()
		}
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef != nil:
			errs = append(errs, field.Invalid(ip, "", "fieldRef and resourceFieldRef can not be specified simultaneously"))
		case it.FieldRef != nil:
			errs = append(errs, validateFieldRef(it.FieldRef, VolumeFieldPaths, ip.Child("fieldRef"))...)
		case it.ResourceFieldRef != nil:
			errs = append(errs, validateResourceFieldRef(it.ResourceFieldRef, s, true, ip.Child("resourceFieldRef"))...)
		default:
			errs = append(errs, field.Required(ip, "one of fieldRef and resourceFieldRef is required"))
		}
		errs = append(errs, validateMode(it.Mode, ip.Child("mode"))...)
	}
	return errs
}

// validateLocalPath requires a path that stays beneath the directory it is
// joined to: relative, not empty, no '..' element, no NUL (kubelet's
// validateLocalNonReservedPath, which also keeps names starting with '..' for
// its own use).
func validateLocalPath(p *field.Path, value string) field.ErrorList {
	switch {
	case value == "":
		return field.ErrorList{field.Required(p, "")}
	case path.IsAbs(value):
		return field.ErrorList{field.Invalid(p, value, "must be a relative path")}
	case hasDotDot(value):
		return field.ErrorList{field.Invalid(p, value, "must not contain '..'")}
	case strings.HasPrefix(value, ".."):
		return field.ErrorList{field.Invalid(p, value, "must not start with '..'")}
	case strings.ContainsRune(value, 0):
		return field.ErrorList{field.Invalid(p, value, "must not contain a NUL byte")}
	case path.Clean(value) == ".":
		return field.ErrorList{field.Invalid(p, value, "must name a file")}
	}
	return nil
}

// validateDownwardVolume checks a downwardAPI or projected volume.
func validateDownwardVolume(v *corev1.Volume, s *corev1.PodSpec, vp *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := map[string]string{}
	if d := v.DownwardAPI; d != nil {
		dp := vp.Child("downwardAPI")
		errs = append(errs, validateMode(d.DefaultMode, dp.Child("defaultMode"))...)
		errs = append(errs, validateDownwardAPIItems(d.Items, s, paths, dp.Child("items"))...)
	}
	if pr := v.Projected; pr != nil {
		pp := vp.Child("projected")
		errs = append(errs, validateMode(pr.DefaultMode, pp.Child("defaultMode"))...)
		for i, src := range pr.Sources {
			sp := pp.Child("sources").Index(i)
			if src.DownwardAPI == nil {
				if src == (corev1.VolumeProjection{}) { // other sources are refused by CheckSupported, with why
					errs = append(errs, field.Required(sp.Child("downwardAPI"), "agentd projects downwardAPI sources only"))
				}
				continue
			}
			errs = append(errs, validateDownwardAPIItems(src.DownwardAPI.Items, s, paths, sp.Child("downwardAPI", "items"))...)
		}
	}
	return errs
}
