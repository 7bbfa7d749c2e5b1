package ctl

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// `get KIND NAME -o json|yaml|jsonpath` prints the object itself, as kubectl does
// when one name is given; without a name, a List.
func TestGetOneByNamePrintsTheObject(t *testing.T) {
	b, sock := fakeAgent(t)
	b.SetPods(labelledPod("web", nil, "main"), labelledPod("db", nil, "main"))
	b.Lock()
	b.DaemonSetList = []appsv1.DaemonSet{
		{ObjectMeta: metav1.ObjectMeta{Name: "logs", Namespace: "default"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "metrics", Namespace: "default"}},
	}
	b.NodeList = []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}}
	b.EventList = []corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "default"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web", Namespace: "default"}, Type: "Normal", Reason: "Started"},
		{ObjectMeta: metav1.ObjectMeta{Name: "web.2", Namespace: "default"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web", Namespace: "default"}, Type: "Normal", Reason: "Pulled"},
	}
	b.Unlock()

	for _, tc := range []struct {
		resource, name, apiVersion, kind string
	}{
		{"pods", "web", "v1", "Pod"},
		{"daemonsets", "metrics", "apps/v1", "DaemonSet"},
		{"nodes", "node-b", "v1", "Node"},
		{"events", "web.2", "v1", "Event"},
	} {
		t.Run(tc.resource, func(t *testing.T) {
			type object struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
				Items      []json.RawMessage `json:"items"`
			}
			for _, format := range []string{"json", "yaml"} {
				code, out, errOut := run(sock, "get", tc.resource, tc.name, "-o", format)
				if code != 0 {
					t.Fatalf("get %s %s -o %s: exit %d, %s", tc.resource, tc.name, format, code, errOut)
				}
				var o object
				if err := yaml.Unmarshal([]byte(out), &o); err != nil {
					t.Fatalf("-o %s: %v\n%s", format, err, out)
				}
				if o.APIVersion != tc.apiVersion || o.Kind != tc.kind || o.Metadata.Name != tc.name || o.Items != nil {
					t.Errorf("get %s %s -o %s printed %s %s %q (items %d), want the %s itself:\n%s",
						tc.resource, tc.name, format, o.APIVersion, o.Kind, o.Metadata.Name, len(o.Items), tc.kind, out)
				}
			}
			if code, out, errOut := run(sock, "get", tc.resource, tc.name, "-o", "jsonpath={.kind}/{.metadata.name}"); code != 0 || out != tc.kind+"/"+tc.name {
				t.Errorf("jsonpath on one object: exit %d, %q (%s), want %q", code, out, errOut, tc.kind+"/"+tc.name)
			}
			// Without a name: a List of them all.
			code, out, _ := run(sock, "get", tc.resource, "-o", "json")
			var l object
			if err := json.Unmarshal([]byte(out), &l); code != 0 || err != nil || l.Kind != "List" || len(l.Items) != 2 {
				t.Errorf("get %s -o json: exit %d, kind %q with %d items, want a List of 2:\n%s", tc.resource, code, l.Kind, len(l.Items), out)
			}
			// A name that is not there is kubectl's NotFound.
			if code, _, errOut := run(sock, "get", tc.resource, "nosuch", "-o", "json"); code == 0 || !strings.Contains(errOut, `"nosuch" not found`) {
				t.Errorf("get %s nosuch: exit %d, %q, want a not-found error", tc.resource, code, errOut)
			}
		})
	}
}
