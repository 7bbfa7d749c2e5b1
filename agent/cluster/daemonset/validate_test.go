package daemonset

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/spec"
)

// stored is the DaemonSet of manifest as a node reads it from the cluster store: what
// Decode returned, through JSON.
func stored(t *testing.T, manifest string) *appsv1.DaemonSet {
	t.Helper()
	b, err := json.Marshal(mustDecode(t, []byte(manifest)))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	return &ds
}

// TestValidate: a node checks what it reads from the store by Decode's rules, since a
// write straight into etcd was checked by nobody. What an apply stored passes (and is
// not changed: its template hash names its pods); names that would lead out of the
// node's directories are refused with the field they are in.
func TestValidate(t *testing.T) {
	for _, m := range []string{base, string(readTestdata(t, "node-logger.yaml"))} {
		ds := stored(t, m)
		before := ds.DeepCopy()
		if errs := Validate(ds); len(errs) > 0 {
			t.Errorf("Validate refused what Decode returned: %v", errs)
		}
		if !reflect.DeepEqual(ds, before) {
			t.Errorf("Validate changed the DaemonSet")
		}
	}
	// Without the defaults Decode applies (a write past agentctl), a good DaemonSet passes too.
	raw := &appsv1.DaemonSet{}
	if err := json.Unmarshal([]byte(`{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"ok"},
		"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}},
		"spec":{"containers":[{"name":"main","image":"localhost/busybox:latest"}]}}}}`), raw); err != nil {
		t.Fatal(err)
	}
	if errs := Validate(raw); len(errs) > 0 {
		t.Errorf("Validate refused a good DaemonSet without defaults: %v", errs)
	}

	withVolume := withPodSpec("      volumes: [{name: v, emptyDir: {}}]\n")
	cases := []struct {
		name   string
		change func(*appsv1.DaemonSet)
		want   []string
	}{
		{"name", func(ds *appsv1.DaemonSet) { ds.Name = "../x" }, []string{`metadata.name: Invalid value: "../x"`}},
		{"namespace", func(ds *appsv1.DaemonSet) { ds.Namespace = "../x" }, []string{`metadata.namespace: Invalid value: "../x"`}},
		{"container name", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Name = "../x" },
			[]string{`spec.template.spec.containers[0].name: Invalid value: "../x"`}},
		{"volume name", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Volumes[0].Name = "../x" },
			[]string{`spec.template.spec.volumes[0].name: Invalid value: "../x"`}},
		{"image", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "../x" },
			[]string{`spec.template.spec.containers[0].image: Invalid value: "../x"`}},
		{"init container", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "../i", Image: "a/../b:1"}}
		}, []string{`spec.template.spec.initContainers[0].name: Invalid value: "../i"`, `spec.template.spec.initContainers[0].image: Invalid value: "a/../b:1"`}},
		{"a field agentd does not implement", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
		},
			[]string{"spec.template.spec.affinity: not supported by agentd"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds := stored(t, withVolume)
			tc.change(ds)
			errs := Validate(ds)
			if len(errs) == 0 {
				t.Fatal("Validate accepted it")
			}
			msg := (&spec.FieldErrors{List: errs}).Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate:\n  %s\ndoes not contain\n  %s", msg, w)
				}
			}
		})
	}
}
