package daemonset

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/agentd-project/agentd/spec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// What agentd puts on the pods of a DaemonSet. They carry no ownerReferences (the spec
// package refuses them in pods), so annotations name the owner; Decode refuses these keys
// in a template.
const (
	// LabelTemplateHash is Kubernetes' controller-revision-hash label, set to TemplateHash.
	LabelTemplateHash = appsv1.DefaultDaemonSetUniqueLabelKey
	// AnnotationDaemonSet is "<namespace>/<name>" of the DaemonSet that owns the pod.
	AnnotationDaemonSet = "agentd.io/daemonset"
	// AnnotationTemplateHash is TemplateHash of the template the pod was made from.
	AnnotationTemplateHash = "agentd.io/template-hash"
)

// ErrInvalidNodeName is returned (wrapped, with the name) by PodFor for a node name that
// is not a DNS-1123 subdomain, as Kubernetes requires of node names.
var ErrInvalidNodeName = errors.New("invalid node name")

const (
	// templateHashLength is the length of TemplateHash in hex digits (40 bits), about
	// as long as Kubernetes' controller-revision-hash values.
	templateHashLength = 10
	// nameHashLength is the length of the hash that replaces the cut end of a pod name.
	nameHashLength = 10
)

// Matches reports whether a node with these labels runs the DaemonSet: each label of
// spec.template.spec.nodeSelector is on the node with the same value. An empty node
// selector matches every node.
func Matches(ds *appsv1.DaemonSet, nodeLabels map[string]string) bool {
	for k, want := range ds.Spec.Template.Spec.NodeSelector {
		if got, ok := nodeLabels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// TemplateHash is a short hash of spec.template, the value of the controller-revision-hash
// label of the DaemonSet's pods: a pod whose hash differs from its DaemonSet's runs an old
// template and is replaced by a rolling update. It hashes the canonical JSON of the
// template (sorted keys), so it depends on the template's content only, and on the
// DaemonSet as Decode returned it: defaults applied, so spelling a default out or leaving it
// to Decode gives the same hash.
func TemplateHash(ds *appsv1.DaemonSet) string {
	js, err := json.Marshal(&ds.Spec.Template)
	if err != nil {
		panic(fmt.Sprintf("daemonset: a core/v1 PodTemplateSpec cannot fail to marshal: %v", err))
	}
	sum := sha256.Sum256(canonicalJSON(js))
	return hex.EncodeToString(sum[:])[:templateHashLength]
}

// canonicalJSON re-encodes a JSON document with sorted keys, so a hash does not depend
// on the field order of the k8s.io/api version that encoded it.
func canonicalJSON(js []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		panic(fmt.Sprintf("daemonset: re-decoding marshalled JSON: %v", err))
	}
	out, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("daemonset: re-encoding decoded JSON: %v", err))
	}
	return out
}

// PodName is the name of the DaemonSet's pod on a node: "<daemonset>-<node>". When that
// is longer than a pod name may be (253), the node's part is cut and "-" and a hash of
// the whole name appended, so two long node names with the same beginning still give two
// pods. A DaemonSet name of at most MaxNameLength always stays whole.
func PodName(daemonSet, nodeName string) string {
	name := daemonSet + "-" + nodeName
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:])[:nameHashLength]
	// A DNS-1123 subdomain's parts end in an alphanumeric character.
	prefix := strings.TrimRight(name[:validation.DNS1123SubdomainMaxLength-len(suffix)], "-.")
	return prefix + suffix
}

// PodFor builds the pod a node runs for a DaemonSet that Decode returned and that Matches
// the node: named PodName, in the DaemonSet's namespace, with the template's labels plus
// controller-revision-hash, the template's annotations plus agentd.io/daemonset and
// agentd.io/template-hash, spec.nodeName set to the node and the spec package's defaults
// applied. Its UID is derived from the DaemonSet's UID, namespace and name, the node and
// the template hash: stable while the template is unchanged, new when it changes, so the
// agent replaces the pod as it replaces a static pod whose file changed.
//
// The pod passes spec.Validate. It keeps the template's spec.nodeSelector, as
// Kubernetes' DaemonSet pods do, so it is not meant for spec.CheckSupported.
func PodFor(ds *appsv1.DaemonSet, nodeName string) (*corev1.Pod, error) {
	ns := ds.Namespace
	if ns == "" {
		ns = spec.DefaultNamespace
	}
	if msgs := validation.IsDNS1123Subdomain(nodeName); len(msgs) > 0 {
		return nil, fmt.Errorf("daemonset %s/%s: %w %q: %s", ns, ds.Name, ErrInvalidNodeName, nodeName, strings.Join(msgs, "; "))
	}
	hash := TemplateHash(ds)
	t := ds.Spec.Template.DeepCopy()

	labels := maps.Clone(t.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelTemplateHash] = hash
	annotations := maps.Clone(t.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationDaemonSet] = ns + "/" + ds.Name
	annotations[AnnotationTemplateHash] = hash

	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        PodName(ds.Name, nodeName),
			Namespace:   ns,
			UID:         podUID(ds.UID, ns, ds.Name, nodeName, hash),
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: t.Spec,
	}
	pod.Spec.NodeName = nodeName
	spec.SetDefaults(pod)
	if errs := spec.Validate(pod); len(errs) > 0 {
		return nil, fmt.Errorf("daemonset %s/%s: pod for node %s: %w", ns, ds.Name, nodeName, &spec.FieldErrors{List: errs})
	}
	return pod, nil
}

// podUID uses spec.PodUID, so a DaemonSet's pod has a UID of the same form as a static
// pod's. The "path" names the DaemonSet, which no manifest file path can equal, and keeps
// the UIDs of two DaemonSets apart when the cluster store has not given them UIDs.
func podUID(dsUID types.UID, namespace, name, nodeName, templateHash string) types.UID {
	content := []byte(string(dsUID) + "\x00" + templateHash)
	return spec.PodUID(content, "daemonset:"+namespace+"/"+name, nodeName)
}

// MaxUnavailable is how many of the DaemonSet's pods a rolling update may have down at
// once, among matchingNodes nodes: spec.updateStrategy.rollingUpdate.maxUnavailable (1 when
// unset), a percentage taken of matchingNodes and rounded up as Kubernetes does for
// DaemonSets, and at least 1 so that an update always progresses. With the OnDelete
// strategy it is 0: agentd replaces no pod by itself. An invalid value (which Decode
// refuses) is an error wrapping a *spec.FieldErrors.
func MaxUnavailable(ds *appsv1.DaemonSet, matchingNodes int) (int, error) {
	us := *ds.Spec.UpdateStrategy.DeepCopy()
	if us.Type == "" {
		us.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if us.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if us.RollingUpdate == nil {
			us.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if us.RollingUpdate.MaxUnavailable == nil {
			v := DefaultMaxUnavailable
			us.RollingUpdate.MaxUnavailable = &v
		}
	}
	if errs := validateUpdateStrategy(&us, field.NewPath("spec", "updateStrategy")); len(errs) > 0 {
		return 0, fmt.Errorf("daemonset %s/%s: %w", ds.Namespace, ds.Name, &spec.FieldErrors{List: errs})
	}
	if us.Type == appsv1.OnDeleteDaemonSetStrategyType {
		return 0, nil
	}
	n, percent, _ := parseIntOrPercent(*us.RollingUpdate.MaxUnavailable)
	if percent {
		n = (n*max(matchingNodes, 0) + 99) / 100 // ceil(n% of matchingNodes)
	}
	return max(n, 1), nil
}
