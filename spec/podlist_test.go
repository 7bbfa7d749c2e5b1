package spec

import (
	"strings"
	"testing"
)

const podListYAML = `apiVersion: v1
kind: PodList
metadata: {}
items:
- metadata: {name: a}
  spec:
    containers: [{name: c, image: localhost/busybox}]
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: kube-system}
  spec:
    containers: [{name: c, image: localhost/busybox}]
`

// A PodList file gives a pod per item, each with its own UID and kubelet's
// annotations, as kubelet's file source does.
func TestParseFilePodList(t *testing.T) {
	src := Source{Path: "/m/list.yaml", NodeName: "n1"}
	pods, err := ParseFile([]byte(podListYAML), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 || pods[0].Name != "a" || pods[1].Name != "b" || pods[1].Namespace != "kube-system" || pods[0].Namespace != "default" {
		t.Fatalf("pods: %+v", pods)
	}
	if pods[0].UID == pods[1].UID || pods[0].UID == "" || pods[0].Spec.NodeName != "n1" || pods[1].Annotations[AnnotationConfigFile] != "/m/list.yaml" {
		t.Errorf("identity: %q %q %+v", pods[0].UID, pods[1].UID, pods[1].Annotations)
	}
	again, _ := ParseFile([]byte(podListYAML), src)
	if again[0].UID != pods[0].UID {
		t.Errorf("UID not stable: %s %s", again[0].UID, pods[0].UID)
	}
	// A one-pod file still parses as a Pod.
	one, err := ParseFile([]byte(base), src)
	if err != nil || len(one) != 1 || one[0].Name != "p" {
		t.Errorf("a Pod file: %v %v", one, err)
	}

	cases := []struct{ name, manifest, want string }{
		{"bad item names its index", strings.Replace(podListYAML, "- apiVersion: v1\n  kind: Pod\n  metadata: {name: b", "- metadata: {name: B", 1),
			`items[1].metadata.name: Invalid value: "B"`},
		{"unknown field in an item", strings.Replace(podListYAML, "- metadata: {name: a}", "- metadata: {name: a}\n  spek: {}", 1), `items[0].spek: unknown field`},
		{"unsupported field in an item", strings.Replace(podListYAML, "- metadata: {name: a}", "- metadata: {name: a, ownerReferences: [{name: x}]}", 1), `items[0].metadata.ownerReferences: not supported by agentd`},
		{"an item of another kind", strings.Replace(podListYAML, "kind: Pod\n", "kind: Service\n", 1), `items[1].kind: Unsupported value: "Service"`},
		{"two items of one name", strings.Replace(podListYAML, "name: b, namespace: kube-system", "name: a", 1), `items[1].metadata.name: Duplicate value: "default/a (as items[0])"`},
		{"unknown field of the list", strings.Replace(podListYAML, "metadata: {}\n", "metadata: {}\nextra: 1\n", 1), `extra: unknown field`},
		{"empty list", "apiVersion: v1\nkind: PodList\nitems: []\n", `items: Required value`},
		{"list of another version", strings.Replace(podListYAML, "apiVersion: v1\nkind: PodList", "apiVersion: v2\nkind: PodList", 1), `apiVersion: Unsupported value: "v2"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFile([]byte(c.manifest), src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, c.want)
			}
		})
	}
}
