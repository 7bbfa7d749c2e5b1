package spec

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestTerminationGracePeriod(t *testing.T) {
	ptr := func(v int64) *int64 { return &v }
	podWith := func(g *int64) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: g}}
	}
	probeWith := func(g *int64) *corev1.Probe { return &corev1.Probe{TerminationGracePeriodSeconds: g} }
	defaulted := podWith(nil)
	SetDefaults(defaulted)

	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		probe     *corev1.Probe
		wantPod   time.Duration // TerminationGracePeriod
		wantProbe time.Duration // ProbeTerminationGracePeriod
	}{
		{"unset: the default", podWith(nil), nil, 30 * time.Second, 30 * time.Second},
		{"SetDefaults gives the same", defaulted, nil, 30 * time.Second, 30 * time.Second},
		{"nil pod", nil, nil, 30 * time.Second, 30 * time.Second},
		{"the pod's", podWith(ptr(5)), nil, 5 * time.Second, 5 * time.Second},
		{"zero: kill at once", podWith(ptr(0)), nil, 0, 0},
		{"negative counts as zero", podWith(ptr(-3)), probeWith(ptr(-1)), 0, 0},
		{"a probe without its own", podWith(ptr(5)), probeWith(nil), 5 * time.Second, 5 * time.Second},
		{"the probe's overrides the pod's", podWith(ptr(60)), probeWith(ptr(2)), 60 * time.Second, 2 * time.Second},
		{"the probe's overrides the default", podWith(nil), probeWith(ptr(90)), 30 * time.Second, 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TerminationGracePeriod(tc.pod); got != tc.wantPod {
				t.Errorf("TerminationGracePeriod = %v, want %v", got, tc.wantPod)
			}
			if got := ProbeTerminationGracePeriod(tc.pod, tc.probe); got != tc.wantProbe {
				t.Errorf("ProbeTerminationGracePeriod = %v, want %v", got, tc.wantProbe)
			}
		})
	}
}
