package daemonset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/agentd-project/agentd/spec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The kind and apiVersion a DaemonSet manifest must have.
const (
	Kind       = "DaemonSet"
	APIVersion = "apps/v1"
)

// Origins the spec package gives its own field errors, so that spec.FormatFieldError
// prints ours the same way ("spec.minReadySeconds: not supported by agentd"). They must
// equal spec's unexported originUnknown and originUnsupported; TestDecodeBad fails when
// they drift.
const (
	originUnknown     = "agentd:unknown-field"
	originUnsupported = "agentd:unsupported-field"
)

const notSupported = "not supported by agentd"

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

var daemonSetFields = newFieldTree(SupportedFields, map[string]string{
	"metadata.generateName":     "a DaemonSet needs a fixed metadata.name",
	"spec.minReadySeconds":      "a pod counts as available as soon as it is ready",
	"spec.revisionHistoryLimit": "agentd keeps no ControllerRevisions; pods carry the template hash instead",
})

// templateMetaFields are the fields of spec.template.metadata agentd implements.
var templateMetaFields = newFieldTree([]spec.SupportedField{{Path: "labels"}, {Path: "annotations"}}, map[string]string{
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
	errs := checkSupported(ds)
	errs = append(errs, checkTemplate(ds)...) // also defaults the template
	setDefaults(ds)
	errs = append(errs, validate(ds)...)
	if len(errs) > 0 {
		return nil, &spec.FieldErrors{List: errs}
	}
	return ds, nil
}

// decodeStrict is spec.Decode for a DaemonSet (spec's helpers are unexported and made
// for Pods); the messages are the same.
func decodeStrict(data []byte) (*appsv1.DaemonSet, error) {
	if len(data) > spec.MaxManifestSize {
		return nil, spec.ErrTooLarge
	}
	doc, err := singleDocument(data)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", spec.ErrSyntax, err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
		return nil, fmt.Errorf("%w: the document is not an object", spec.ErrSyntax)
	}

	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, &spec.FieldErrors{List: field.ErrorList{typeError(err)}}
	}
	var errs field.ErrorList
	switch tm.Kind {
	case Kind:
	case "":
		errs = append(errs, field.Required(field.NewPath("kind"), "must be "+Kind))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("kind"), tm.Kind, []string{Kind}))
	}
	switch tm.APIVersion {
	case APIVersion:
	case "":
		errs = append(errs, field.Required(field.NewPath("apiVersion"), "must be "+APIVersion))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{APIVersion}))
	}
	if len(errs) > 0 {
		return nil, &spec.FieldErrors{List: errs}
	}

	ds := &appsv1.DaemonSet{}
	strict, err := sigsjson.UnmarshalStrict(js, ds)
	if err != nil {
		return nil, &spec.FieldErrors{List: field.ErrorList{typeError(err)}}
	}
	for _, se := range strict {
		var fe sigsjson.FieldError
		if errors.As(se, &fe) {
			errs = append(errs, &field.Error{Type: field.ErrorTypeInvalid, Field: fe.FieldPath(),
				BadValue: field.OmitValueType{}, Detail: strictDetail(se), Origin: originUnknown})
			continue
		}
		errs = append(errs, field.InternalError(nil, se))
	}
	if len(errs) > 0 {
		return nil, &spec.FieldErrors{List: errs}
	}
	return ds, nil
}

// strictDetail turns `unknown field "x.y"` into a message that does not repeat the path.
func strictDetail(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unknown field"):
		return "unknown field"
	case strings.HasPrefix(msg, "duplicate field"):
		return "duplicate field"
	}
	return msg
}

// typeError converts a json type error (a string where a number belongs) into a field error.
func typeError(err error) *field.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return field.Invalid(field.NewPath(te.Field), te.Value, fmt.Sprintf("must be of type %s", te.Type))
	}
	return field.Invalid(nil, nil, err.Error())
}

// singleDocument returns the one non-empty YAML document in data. JSON is YAML, so it
// passes through unchanged.
func singleDocument(data []byte) ([]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var found []byte
	n := 0
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", spec.ErrSyntax, err)
		}
		if isEmptyDocument(doc) {
			continue
		}
		n++
		found = doc
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("%w: the file is empty", spec.ErrSyntax)
	case 1:
		return found, nil
	}
	return nil, fmt.Errorf("%w: a DaemonSet manifest holds one document, this one has %d YAML documents", spec.ErrSyntax, n)
}

func isEmptyDocument(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' || bytes.Equal(line, []byte("---")) {
			continue
		}
		return false
	}
	return true
}

// checkSupported returns an error for every field set in ds, outside spec.template.spec,
// that agentd does not implement.
func checkSupported(ds *appsv1.DaemonSet) field.ErrorList {
	var errs field.ErrorList
	daemonSetFields.walk(reflect.ValueOf(ds).Elem(), nil, "", &errs)
	meta := field.NewPath("spec", "template", "metadata")
	templateMetaFields.walk(reflect.ValueOf(&ds.Spec.Template.ObjectMeta).Elem(), meta, "", &errs)
	return errs
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

// fieldTree answers, for a generic path ("spec.updateStrategy.type"), whether it is
// supported as a whole (leaf) or has supported descendants (inner). It is the spec
// package's check of a Pod, for the other fields of a DaemonSet: walking the Go types
// means a field added to apps/v1 in a later k8s.io/api is refused, not ignored.
type fieldTree struct {
	leaf  map[string]bool
	inner map[string]bool
	notes map[string]string // why an unsupported field is refused, when users commonly set it
}

func newFieldTree(list []spec.SupportedField, notes map[string]string) fieldTree {
	t := fieldTree{leaf: map[string]bool{}, inner: map[string]bool{}, notes: notes}
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

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// walk reports every set field of the struct v that the tree does not support. path is
// where v is in the manifest; generic is v's path in the tree.
func (t fieldTree) walk(v reflect.Value, path *field.Path, generic string, errs *field.ErrorList) {
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

func (t fieldTree) check(v reflect.Value, path *field.Path, generic string, errs *field.ErrorList) {
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
		*errs = append(*errs, t.unsupported(path, generic))
	}
}

// isUnset treats empty lists and maps like absent ones.
func isUnset(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func (t fieldTree) unsupported(path *field.Path, generic string) *field.Error {
	detail := notSupported
	if note, ok := t.notes[generic]; ok {
		detail += ": " + note
	}
	return field.Forbidden(path, detail).WithOrigin(originUnsupported)
}
