package spec

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TerminationGracePeriod is how long a pod's containers get to stop, preStop hook
// included, before they are killed: spec.terminationGracePeriodSeconds, or
// DefaultTerminationGracePeriod (30 s) when it is unset, which only a pod that
// skipped SetDefaults can be. This is the one place that default is applied.
// A negative value (Validate rejects it) counts as 0.
func TerminationGracePeriod(pod *corev1.Pod) time.Duration {
	g := DefaultTerminationGracePeriod
	if pod != nil && pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	return seconds(g)
}

// ProbeTerminationGracePeriod is the grace period of a container that is killed
// because p, its liveness or startup probe, failed: the probe's
// terminationGracePeriodSeconds when set, else the pod's (TerminationGracePeriod),
// as kubelet's ProbeTerminationGracePeriod. A readiness probe never kills, so its
// field has no use here. p may be nil.
func ProbeTerminationGracePeriod(pod *corev1.Pod, p *corev1.Probe) time.Duration {
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return seconds(*p.TerminationGracePeriodSeconds)
	}
	return TerminationGracePeriod(pod)
}

func seconds(s int64) time.Duration {
	return time.Duration(max(s, 0)) * time.Second
}
