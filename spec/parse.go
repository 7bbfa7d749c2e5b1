package spec

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Annotations agentd sets on a static pod, as kubelet does.
const (
	AnnotationConfigHash   = "kubernetes.io/config.hash"
	AnnotationConfigSource = "kubernetes.io/config.source"
	AnnotationConfigFile   = "agentd.io/config.file"
)

// Source says where a manifest came from; it goes into the pod's UID.
type Source struct {
	// Path is the manifest file's path.
	Path string
	// NodeName is the name of the node the agent runs as.
	NodeName string
}

// Parse decodes, checks, defaults and validates one manifest, and returns a Pod ready
// to run: its UID is set, and so are spec.nodeName and kubelet's config annotations.
// All errors of the file come back at once in a *FieldErrors (errors.Is(err,
// ErrInvalid)); syntax problems are ErrSyntax and oversize files ErrTooLarge.
func Parse(data []byte, src Source) (*corev1.Pod, error) {
	pod, js, err := decode(data)
	if err != nil {
		return nil, err
	}
	return parsed(pod, js, src)
}

// parseJSON is Parse of a document documentJSON gave.
func parseJSON(js []byte, src Source) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := decodeStrictJSON(js, "Pod", "v1", pod); err != nil {
		return nil, err
	}
	return parsed(pod, js, src)
}

// parsed is the rest of Parse once pod is decoded from its document js.
func parsed(pod *corev1.Pod, js []byte, src Source) (*corev1.Pod, error) {
	errs := CheckSupported(pod)
	SetDefaults(pod)
	errs = append(errs, Validate(pod)...)
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	content, err := canonicalJSON(js)
	if err != nil {
		return nil, fieldErrors(field.ErrorList{field.InternalError(nil, err)})
	}
	if pod.UID == "" {
		pod.UID = PodUID(content, src.Path, src.NodeName)
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationConfigHash] = string(pod.UID)
	pod.Annotations[AnnotationConfigSource] = "file"
	if src.Path != "" {
		pod.Annotations[AnnotationConfigFile] = src.Path
	}
	pod.Spec.NodeName = src.NodeName
	return pod, nil
}

// ErrorList returns the field errors of an error returned by Parse or Decode, or nil.
func ErrorList(err error) field.ErrorList {
	var fe *FieldErrors
	if errors.As(err, &fe) {
		return fe.List
	}
	return nil
}
