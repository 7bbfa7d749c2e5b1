// Package admission applies the Kubernetes Pod Security Standards (privileged, baseline, restricted) to the pods
// agentd's cluster mode runs from DaemonSets, with exactly the meaning kube-apiserver's PodSecurity admission gives
// them: the rules are upstream's own (k8s.io/pod-security-admission/policy, each level at version "latest"), and a
// violation is worded as the API server words it. What this package adds is where: each violation names the fields
// of the pod (or the DaemonSet's pod template) that break the rule, so a user sees what to change.
//
// The caller picks the level (Default when none is configured); nothing else configures this package. Upstream's
// checks are set up on the first Check, not at program start, so an agentd that never evaluates a pod never pays
// for them.
package admission

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// Level is a Pod Security Standards level.
type Level string

const (
	// Privileged allows everything.
	Privileged Level = "privileged"
	// Baseline forbids the known privilege escalations: privileged containers, host namespaces, hostPath volumes,
	// host ports, capabilities beyond the default set, and the rest of the baseline policy.
	Baseline Level = "baseline"
	// Restricted is Baseline plus the hardening best practices: run as non-root, drop ALL capabilities, a
	// RuntimeDefault or Localhost seccomp profile, allowPrivilegeEscalation=false, and only non-host volume types.
	Restricted Level = "restricted"
)

// Default is the level applied when none is configured: Baseline stops the escalations a DaemonSet author can ask
// for by accident without requiring every image to run as non-root, as Restricted would.
const Default = Baseline

// ParseLevel reads a level as Kubernetes spells it (lower case, no abbreviations), so a level configured here means
// what the same word means in a pod-security.kubernetes.io/enforce label.
func ParseLevel(s string) (Level, error) {
	if s == "" {
		return "", errors.New("no Pod Security level given: use privileged, baseline or restricted")
	}
	l, err := api.ParseLevel(s)
	if err != nil {
		return "", fmt.Errorf("unknown Pod Security level %q: use privileged, baseline or restricted", s)
	}
	return Level(l), nil
}

// Violation is one rule a pod breaks, as the API server's admission words it.
type Violation struct {
	// Rule is the check's reason, e.g. "host namespaces", "privileged", "hostPath volumes".
	Rule string
	// Fields are the paths of the fields that break the rule, e.g.
	// "spec.template.spec.containers[0].securityContext.privileged", "spec.template.spec.volumes[0].hostPath".
	// Empty when this package cannot tell which fields they are; the violation stands all the same.
	Fields []string
	// Detail is upstream's forbiddenDetail, e.g. `container "main" must not set securityContext.privileged=true`.
	Detail string
}

// Check evaluates a pod spec (and its metadata, whose annotations some rules read) against level; fieldPrefix is
// prepended to field paths ("spec.template." for a DaemonSet template, "" for a pod). It returns nil when level
// allows the pod. A level ParseLevel would reject is evaluated as Restricted, failing closed as upstream does with
// a namespace label it cannot parse.
func Check(level Level, meta *metav1.ObjectMeta, spec *corev1.PodSpec, fieldPrefix string) []Violation {
	if meta == nil {
		meta = &metav1.ObjectMeta{}
	}
	if spec == nil {
		spec = &corev1.PodSpec{}
	}
	lv := levelVersion(level)
	u := upstreamChecks()
	results := u.evaluator.EvaluatePod(lv, meta, spec)
	ran := u.ran[lv.Level]
	var violations []Violation
	for i, r := range results {
		if r.Allowed {
			continue
		}
		v := Violation{Rule: r.ForbiddenReason, Detail: r.ForbiddenDetail}
		if v.Rule == "" {
			v.Rule = policy.UnknownForbiddenReason // as upstream's AggregateCheckResults words it
		}
		if len(ran) == len(results) { // always, unless upstream changes how it evaluates; then no fields, same verdict
			for _, f := range forbiddenFields(ran[i], meta, spec) {
				v.Fields = append(v.Fields, fieldPrefix+f)
			}
		}
		violations = append(violations, v)
	}
	return violations
}

// ErrForbidden is wrapped by every error Error returns: the pod breaks the Pod Security level it is evaluated at.
var ErrForbidden = errors.New("forbidden by the Pod Security Standards")

// Error formats violations like kube-apiserver does:
//
//	violates PodSecurity "baseline:latest": privileged (container "main" must not set securityContext.privileged=true), hostPath volumes (volume "root")
//
// and then lists each field on its own line, "- <field>: <rule>", so users see which field to change. It wraps
// ErrForbidden, and is nil when there are no violations.
func Error(level Level, v []Violation) error {
	if len(v) == 0 {
		return nil
	}
	return &forbiddenError{level: levelVersion(level), violations: v}
}

type forbiddenError struct {
	level      api.LevelVersion
	violations []Violation
}

func (e *forbiddenError) Error() string {
	var agg policy.AggregateCheckResult
	for _, v := range e.violations {
		agg.ForbiddenReasons = append(agg.ForbiddenReasons, v.Rule)
		agg.ForbiddenDetails = append(agg.ForbiddenDetails, v.Detail)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "violates PodSecurity %q: %s", e.level.String(), agg.ForbiddenDetail())
	for _, v := range e.violations {
		for _, f := range v.Fields {
			fmt.Fprintf(&b, "\n- %s: %s", f, v.Rule)
		}
	}
	return b.String()
}

func (e *forbiddenError) Unwrap() error { return ErrForbidden }

// levelVersion is level at upstream's newest policy version, the one kube-apiserver applies when a namespace sets no
// version label.
func levelVersion(level Level) api.LevelVersion {
	l := api.Level(level)
	if !l.Valid() {
		l = api.LevelRestricted
	}
	return api.LevelVersion{Level: l, Version: api.LatestVersion()}
}
