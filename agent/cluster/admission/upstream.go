package admission

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// upstream is kube-apiserver's PodSecurity evaluator with upstream's default checks, and for each level the checks
// it runs, in the order of the results it returns.
type upstream struct {
	evaluator policy.Evaluator
	// ran[level] names the check behind each of EvaluatePod's results at level:latest. A CheckResult does not say
	// which check it comes from, and the field finders are keyed by check ID.
	ran map[api.Level][]ranCheck
}

// ranCheck is one check EvaluatePod runs: its ID and the version of it that runs at "latest".
type ranCheck struct {
	id    policy.CheckID
	check policy.CheckPodFn
}

// upstreamChecks is built on first use: agentd's startup never pays for it.
var upstreamChecks = sync.OnceValue(func() *upstream {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		panic(fmt.Sprintf("k8s.io/pod-security-admission's default checks are invalid: %v", err))
	}
	return &upstream{evaluator: evaluator, ran: recordRuns(api.LevelBaseline, api.LevelRestricted)}
})

// recordRuns lists, for each level, the checks upstream's evaluator runs at level:latest, in order, by evaluating an
// empty pod with an evaluator whose checks note themselves down. Which checks run at a level and version, and in
// which order, is the registry's decision (versions, restricted checks overriding baseline ones), so it is asked
// rather than restated; it does not depend on the pod.
func recordRuns(levels ...api.Level) map[api.Level][]ranCheck {
	var ran []ranCheck
	checks := policy.DefaultChecks()
	for i := range checks {
		for j := range checks[i].Versions {
			rc := ranCheck{id: checks[i].ID, check: checks[i].Versions[j].CheckPod}
			checks[i].Versions[j].CheckPod = func(meta *metav1.ObjectMeta, spec *corev1.PodSpec) policy.CheckResult {
				ran = append(ran, rc)
				return rc.check(meta, spec)
			}
		}
	}
	recorder, err := policy.NewEvaluator(checks, nil)
	if err != nil {
		panic(fmt.Sprintf("k8s.io/pod-security-admission's default checks are invalid: %v", err))
	}
	runs := map[api.Level][]ranCheck{}
	for _, l := range levels {
		ran = nil
		recorder.EvaluatePod(api.LevelVersion{Level: l, Version: api.LatestVersion()}, &metav1.ObjectMeta{}, &corev1.PodSpec{})
		runs[l] = ran
	}
	return runs
}
