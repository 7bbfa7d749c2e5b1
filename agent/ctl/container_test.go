package ctl

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDefaultContainer(t *testing.T) {
	pod := func(annotation string, init []string, names ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
		if annotation != "" {
			p.Annotations = map[string]string{defaultContainerAnnotation: annotation}
		}
		for _, n := range init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n})
		}
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		want     string
		wantWarn string
	}{
		{"one container: no word", pod("", nil, "main"), "main", ""},
		{"first of several", pod("", nil, "main", "side"), "main", "Defaulted container \"main\" out of: main, side\n"},
		{"init containers count", pod("", []string{"setup"}, "main"), "main", "Defaulted container \"main\" out of: main, setup (init)\n"},
		{"annotation: silent", pod("side", nil, "main", "side"), "side", ""},
		{"annotation naming none", pod("gone", nil, "main", "side"), "main",
			"Default container name \"gone\" not found in pod web\nDefaulted container \"main\" out of: main, side\n"},
	} {
		var warn bytes.Buffer
		if got := defaultContainer(tc.pod, &warn); got != tc.want || warn.String() != tc.wantWarn {
			t.Errorf("%s: got %q, warning %q; want %q, %q", tc.name, got, warn.String(), tc.want, tc.wantWarn)
		}
	}
}
