package daemonset

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/agentd-project/agentd/spec"
	appsv1 "k8s.io/api/apps/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxNameLength is the longest DaemonSet name. A pod is named <daemonset>-<node>; when
// that is longer than a pod name may be (253), the node's part is cut and a hash of the
// whole name appended (PodFor), and this length keeps the DaemonSet's whole name and at
// least one character of the node's in every pod name.
const MaxNameLength = validation.DNS1123SubdomainMaxLength - len("-n-") - nameHashLength

// DefaultMaxUnavailable is Kubernetes' default spec.updateStrategy.rollingUpdate.maxUnavailable.
var DefaultMaxUnavailable = intstr.FromInt32(1)

// setDefaults applies Kubernetes' DaemonSet defaults (pkg/apis/apps/v1/defaults.go);
// checkTemplate has defaulted the template.
func setDefaults(ds *appsv1.DaemonSet) {
	if ds.Namespace == "" {
		ds.Namespace = spec.DefaultNamespace
	}
	us := &ds.Spec.UpdateStrategy
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
	ds.Status = appsv1.DaemonSetStatus{} // output only: the cluster computes it (Status)
}

// validate checks a defaulted DaemonSet outside its template's pod rules (checkTemplate),
// as Kubernetes' ValidateDaemonSet does.
func validate(ds *appsv1.DaemonSet) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	if ds.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), "a DaemonSet needs a name"))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(ds.Name) {
			errs = append(errs, field.Invalid(meta.Child("name"), ds.Name, msg))
		}
		if n := len(ds.Name); n > MaxNameLength && n <= validation.DNS1123SubdomainMaxLength {
			e := field.TooLong(meta.Child("name"), ds.Name, MaxNameLength)
			e.Detail += fmt.Sprintf(": its pods are named <name>-<node>, in at most %d characters", validation.DNS1123SubdomainMaxLength)
			errs = append(errs, e)
		}
	}
	for _, msg := range validation.IsDNS1123Label(ds.Namespace) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), ds.Namespace, msg))
	}
	errs = append(errs, metav1validation.ValidateLabels(ds.Labels, meta.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(ds.Annotations, meta.Child("annotations"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(ds.Generation, meta.Child("generation"))...)
	if len(ds.UID) > 128 {
		errs = append(errs, field.TooLong(meta.Child("uid"), "", 128))
	}
	errs = append(errs, validateSelector(ds)...)
	errs = append(errs, validateUpdateStrategy(&ds.Spec.UpdateStrategy, field.NewPath("spec", "updateStrategy"))...)
	return errs
}

func validateSelector(ds *appsv1.DaemonSet) field.ErrorList {
	p := field.NewPath("spec", "selector")
	sel := ds.Spec.Selector
	if sel == nil {
		return field.ErrorList{field.Required(p, "must match spec.template.metadata.labels")}
	}
	var errs field.ErrorList
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(p, metav1.FormatLabelSelector(sel), "empty selector is invalid for daemonset"))
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, p)...)
	if s, err := metav1.LabelSelectorAsSelector(sel); err == nil && !s.Matches(labels.Set(ds.Spec.Template.Labels)) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "template", "metadata", "labels"), ds.Spec.Template.Labels,
			"`selector` does not match template `labels`"))
	}
	return errs
}

func validateUpdateStrategy(us *appsv1.DaemonSetUpdateStrategy, p *field.Path) field.ErrorList {
	switch us.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
		if us.RollingUpdate != nil {
			return field.ErrorList{field.Forbidden(p.Child("rollingUpdate"), "may not be set when type is OnDelete")}
		}
		return nil
	case appsv1.RollingUpdateDaemonSetStrategyType:
	default:
		return field.ErrorList{field.NotSupported(p.Child("type"), us.Type, []appsv1.DaemonSetUpdateStrategyType{
			appsv1.RollingUpdateDaemonSetStrategyType, appsv1.OnDeleteDaemonSetStrategyType})}
	}

	var errs field.ErrorList
	rp := p.Child("rollingUpdate")
	if mu := us.RollingUpdate.MaxUnavailable; mu != nil {
		n, _, msg := parseIntOrPercent(*mu)
		switch {
		case msg != "":
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), badValue(*mu), msg))
		case n == 0:
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), badValue(*mu),
				"may not be 0: maxSurge is not supported by agentd, so an update must be allowed to take a pod down"))
		}
	}
	if ms := us.RollingUpdate.MaxSurge; ms != nil {
		if n, _, msg := parseIntOrPercent(*ms); msg != "" || n != 0 {
			errs = append(errs, spec.UnsupportedField(rp.Child("maxSurge"),
				"an update takes the old pod down before it starts the new one; use maxUnavailable"))
		}
	}
	return errs
}

// parseIntOrPercent reads maxUnavailable or maxSurge as Kubernetes' validation does
// (ValidatePositiveIntOrPercent, IsNotMoreThan100Percent): a non-negative integer or
// "<n>%" with n at most 100. msg says what is wrong, or is empty.
func parseIntOrPercent(v intstr.IntOrString) (n int, percent bool, msg string) {
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return 0, false, "must be greater than or equal to 0"
		}
		return int(v.IntVal), false, ""
	}
	digits, ok := strings.CutSuffix(v.StrVal, "%")
	if !ok || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false, "must be an integer or percentage (e.g '5%')"
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > 100 {
		return 0, true, "must not be greater than 100%"
	}
	return n, true, ""
}

func badValue(v intstr.IntOrString) any {
	if v.Type == intstr.Int {
		return v.IntVal
	}
	return v.StrVal
}
