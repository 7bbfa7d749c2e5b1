package daemonset

import (
	"github.com/agentd-project/agentd/spec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The kind and apiVersion a DaemonSet manifest must have.
const (
	Kind       = "DaemonSet"
	APIVersion = "apps/v1"
)

// SupportedFields lists the DaemonSet fields agentd implements, outside the pod template.
// The template (spec.template) supports spec.SupportedFields under spec.template.metadata
// (labels and annotations only) and spec.template.spec, plus spec.template.spec.nodeSelector.
// Any other field set in a manifest is refused with "<path>: not supported by agentd".
var SupportedFields = []spec.SupportedField{
	{Path: "apiVersion", Note: "must be `apps/v1`"},
	{Path: "kind", Note: "must be `DaemonSet`"},
	{Path: "status", Note: "output only: accepted and dropped"},

	{Path: "metadata.name", Note: "required, DNS-1123 subdomain of at most 240 characters (pods are named <name>-<node>)"},
	{Path: "metadata.namespace", Note: "defaults to `default`; the namespace of its pods"},
	{Path: "metadata.labels", Note: ""},
	{Path: "metadata.annotations", Note: ""},
	{Path: "metadata.resourceVersion", Note: "when given, `apply` fails if the stored DaemonSet has changed since"},
	{Path: "metadata.uid", Note: "output only: set by the cluster store; part of the UID of every pod"},
	{Path: "metadata.creationTimestamp", Note: "output only: set by the cluster store"},
	{Path: "metadata.generation", Note: "output only: set by the cluster store; status.observedGeneration"},

	{Path: "spec.selector", Note: "required, must match spec.template.metadata.labels"},
	{Path: "spec.template", Note: "a pod template: the fields of docs/manifest-fields.md, plus spec.nodeSelector"},
	{Path: "spec.updateStrategy.type", Note: "RollingUpdate (default) or OnDelete"},
	{Path: "spec.updateStrategy.rollingUpdate.maxUnavailable", Note: "a number or a percentage of the matching nodes, rounded up; default 1, never 0"},
	{Path: "spec.updateStrategy.rollingUpdate.maxSurge", Note: "only 0: agentd replaces a pod by taking it down first"},
}

var daemonSetFields = spec.NewFieldTree(SupportedFields, map[string]string{
	"metadata.generateName":     "a DaemonSet needs a fixed metadata.name",
	"spec.minReadySeconds":      "a pod counts as available as soon as it is ready",
	"spec.revisionHistoryLimit": "agentd keeps no ControllerRevisions; pods carry the template hash instead",
})

// templateMetaFields are the fields of spec.template.metadata agentd implements.
var templateMetaFields = spec.NewFieldTree([]spec.SupportedField{{Path: "labels"}, {Path: "annotations"}}, map[string]string{
	"name":         "the pods of a DaemonSet are named <daemonset>-<node>",
	"generateName": "the pods of a DaemonSet are named <daemonset>-<node>",
	"namespace":    "the pods of a DaemonSet run in its namespace",
	"uid":          "a pod's UID is derived from the DaemonSet's, its node and its template",
})

// Decode parses one apps/v1 DaemonSet from YAML or JSON, strictly: unknown and duplicate
// fields are errors naming their path, kind must be DaemonSet and apiVersion apps/v1, a
// file holds one document of at most spec.MaxManifestSize bytes. It checks that agentd
// implements every field that is set, validates the DaemonSet and its pod template with
// the spec package's rules, and returns it with Kubernetes' defaults applied (namespace,
// update strategy, and the pod defaults of spec.SetDefaults in the template).
//
// All errors of a manifest come back at once in a *spec.FieldErrors (errors.Is(err,
// spec.ErrInvalid), spec.ErrorList(err)); template errors have paths under spec.template.
// Syntax problems are spec.ErrSyntax and oversize input spec.ErrTooLarge.
func Decode(data []byte) (*appsv1.DaemonSet, error) {
	ds, err := decodeStrict(data)
	if err != nil {
		return nil, err
	}
	if errs := check(ds); len(errs) > 0 {
		return nil, &spec.FieldErrors{List: errs}
	}
	return ds, nil
}

// Validate checks a DaemonSet from the cluster store by Decode's rules and returns every
// error, with Decode's paths; ds is not changed. A node runs no pod of a DaemonSet that
// fails it, whoever wrote it: `agentctl apply` decoded it, but a write straight into etcd
// (an admin credential used past agentctl, an older agentd) was checked by nobody, and its
// names (metadata.name, container and volume names, images) become the pod's, which name
// directories, cgroups and log files on the node.
func Validate(ds *appsv1.DaemonSet) field.ErrorList {
	return check(ds.DeepCopy())
}

// check runs every rule of Decode on ds and applies the defaults to it.
func check(ds *appsv1.DaemonSet) field.ErrorList {
	errs := checkSupported(ds)
	errs = append(errs, checkTemplate(ds)...) // also defaults the template
	setDefaults(ds)
	return append(errs, validate(ds)...)
}

// decodeStrict is spec.Decode's strictness for a DaemonSet.
func decodeStrict(data []byte) (*appsv1.DaemonSet, error) {
	ds := &appsv1.DaemonSet{}
	if _, err := spec.DecodeStrict(data, Kind, APIVersion, ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// checkSupported returns an error for every field set in ds, outside spec.template.spec,
// that agentd does not implement.
func checkSupported(ds *appsv1.DaemonSet) field.ErrorList {
	errs := daemonSetFields.Check(ds, nil)
	return append(errs, templateMetaFields.Check(&ds.Spec.Template.ObjectMeta, field.NewPath("spec", "template", "metadata"))...)
}

// checkName is the name the template is validated under; the real pod names are
// checked through the DaemonSet's name (MaxNameLength).
const checkName = "daemonset-pod"

// checkTemplate runs the spec package's rules on the pod template, as a Pod, with paths
// under spec.template, and writes the defaulted template back into ds.
// spec.nodeSelector, which the spec package refuses for static pods, is checked here.
func checkTemplate(ds *appsv1.DaemonSet) field.ErrorList {
	t := &ds.Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: checkName, Labels: t.Labels, Annotations: t.Annotations},
		Spec:       *t.Spec.DeepCopy(),
	}
	nodeSelector := pod.Spec.NodeSelector
	pod.Spec.NodeSelector = nil

	errs := spec.CheckSupported(pod)
	spec.SetDefaults(pod)
	errs = append(errs, spec.Validate(pod)...)
	for _, e := range errs {
		if e.Field == "" {
			e.Field = "spec.template"
		} else {
			e.Field = "spec.template." + e.Field
		}
	}

	p := field.NewPath("spec", "template")
	errs = append(errs, metav1validation.ValidateLabels(nodeSelector, p.Child("spec", "nodeSelector"))...)
	switch rp := pod.Spec.RestartPolicy; rp {
	case corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
		// Kubernetes' rule: a DaemonSet's pod runs for as long as the node is selected.
		errs = append(errs, field.NotSupported(p.Child("spec", "restartPolicy"), rp, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if _, ok := t.Labels[LabelTemplateHash]; ok {
		errs = append(errs, field.Forbidden(p.Child("metadata", "labels").Key(LabelTemplateHash), "set by agentd on the pods of a DaemonSet"))
	}
	for _, k := range []string{AnnotationDaemonSet, AnnotationTemplateHash} {
		if _, ok := t.Annotations[k]; ok {
			errs = append(errs, field.Forbidden(p.Child("metadata", "annotations").Key(k), "set by agentd on the pods of a DaemonSet"))
		}
	}

	pod.Spec.NodeSelector = nodeSelector
	t.Spec = pod.Spec
	return errs
}
