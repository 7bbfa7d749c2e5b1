package spec

import (
	"strings"
	"testing"
)

// A pod using every downward API path kubelet offers parses; the errors of bad
// references name their field path.
func TestDownwardAPI(t *testing.T) {
	good := base + `    env:
    - {name: A, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: B, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['example.com/x']"}}}
    - {name: C, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: D, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
    - {name: E, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}}
    - {name: F, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: G, valueFrom: {resourceFieldRef: {containerName: c, resource: requests.cpu, divisor: 1m}}}
    - {name: H, valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage}}}
  volumes:
  - name: info
    downwardAPI:
      defaultMode: 0400
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: sub/dir/name, fieldRef: {fieldPath: metadata.name}, mode: 0444}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory}}
  - name: proj
    projected:
      sources:
      - downwardAPI: {items: [{path: a, fieldRef: {fieldPath: "metadata.annotations['k']"}}]}
      - downwardAPI: {items: [{path: b, fieldRef: {fieldPath: metadata.uid}}]}
`
	pod, err := Parse([]byte(good), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if m := pod.Spec.Volumes[1].Projected.DefaultMode; m == nil || *m != 0o644 {
		t.Errorf("projected defaultMode not defaulted to 0644: %v", m)
	}
	if v := pod.Spec.Volumes[0].DownwardAPI.Items[0].FieldRef.APIVersion; v != "v1" {
		t.Errorf("fieldRef apiVersion not defaulted: %q", v)
	}

	vol := func(items string) string {
		return base + "  volumes: [{name: v, downwardAPI: {items: [" + items + "]}}]\n"
	}
	env := func(from string) string {
		return base + "    env: [{name: X, valueFrom: " + from + "}]\n"
	}
	cases := []struct{ name, manifest, want string }{
		{"absolute item path", vol(`{path: /etc/x, fieldRef: {fieldPath: metadata.name}}`), `spec.volumes[0].downwardAPI.items[0].path: Invalid value: "/etc/x": must be a relative path`},
		{"item path leads out", vol(`{path: a/../../x, fieldRef: {fieldPath: metadata.name}}`), `spec.volumes[0].downwardAPI.items[0].path: Invalid value: "a/../../x": must not contain '..'`},
		{"item path ..x", vol(`{path: ..data, fieldRef: {fieldPath: metadata.name}}`), `spec.volumes[0].downwardAPI.items[0].path: Invalid value: "..data": must not start with '..'`},
		{"item path empty", vol(`{path: "", fieldRef: {fieldPath: metadata.name}}`), `spec.volumes[0].downwardAPI.items[0].path: Required value`},
		{"item path dot", vol(`{path: ./, fieldRef: {fieldPath: metadata.name}}`), `spec.volumes[0].downwardAPI.items[0].path: Invalid value: "./": must name a file`},
		{"duplicate item path", vol(`{path: a, fieldRef: {fieldPath: metadata.name}}, {path: ./a, fieldRef: {fieldPath: metadata.uid}}`), `spec.volumes[0].downwardAPI.items[1].path: Duplicate value: "./a"`},
		{"file and directory", vol(`{path: a, fieldRef: {fieldPath: metadata.name}}, {path: a/b, fieldRef: {fieldPath: metadata.uid}}`), `spec.volumes[0].downwardAPI.items[1].path: Invalid value: "a/b": conflicts with spec.volumes[0].downwardAPI.items[0].path`},
		{"mode too large", vol(`{path: a, fieldRef: {fieldPath: metadata.name}, mode: 01000}`), `spec.volumes[0].downwardAPI.items[0].mode: Invalid value: 512: must be a number between 0 and 0777`},
		{"status in a volume", vol(`{path: a, fieldRef: {fieldPath: status.podIP}}`), `spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: "status.podIP"`},
		{"no source", vol(`{path: a}`), `spec.volumes[0].downwardAPI.items[0]: Required value: one of fieldRef and resourceFieldRef`},
		{"resource without container in a volume", vol(`{path: a, resourceFieldRef: {resource: limits.cpu}}`), `spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName: Required value`},
		{"resource of an unknown container", vol(`{path: a, resourceFieldRef: {containerName: nope, resource: limits.cpu}}`), `spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName: Not found: "nope"`},
		{"projected duplicate across sources", base + "  volumes: [{name: v, projected: {sources: [{downwardAPI: {items: [{path: a, fieldRef: {fieldPath: metadata.name}}]}}, {downwardAPI: {items: [{path: a, fieldRef: {fieldPath: metadata.uid}}]}}]}}]\n",
			`spec.volumes[0].projected.sources[1].downwardAPI.items[0].path: Duplicate value: "a"`},
		{"two volume types", base + "  volumes: [{name: v, emptyDir: {}, downwardAPI: {items: []}}]\n", `spec.volumes[0]: Forbidden: may not specify more than one volume type`},
		{"env unknown path", env(`{fieldRef: {fieldPath: metadata.generation}}`), `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "metadata.generation"`},
		{"env whole labels", env(`{fieldRef: {fieldPath: metadata.labels}}`), `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "metadata.labels"`},
		{"env bad label key", env(`{fieldRef: {fieldPath: "metadata.labels['-x']"}}`), `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.labels['-x']": invalid label key`},
		{"env subscript elsewhere", env(`{fieldRef: {fieldPath: "spec.nodeName['x']"}}`), `spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: "spec.nodeName['x']": a subscript is allowed only`},
		{"env resource unknown", env(`{resourceFieldRef: {resource: limits.gpu}}`), `spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu"`},
		{"env cpu divisor", env(`{resourceFieldRef: {resource: limits.cpu, divisor: 1Mi}}`), `spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Unsupported value: "1Mi"`},
		{"env memory divisor", env(`{resourceFieldRef: {resource: limits.memory, divisor: 3}}`), `spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Unsupported value: "3"`},
		{"env both refs", env(`{fieldRef: {fieldPath: metadata.name}, resourceFieldRef: {resource: limits.cpu}}`), `spec.containers[0].env[0].valueFrom: Invalid value: "": may not have more than one field specified at a time`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.manifest), Source{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %v\nwant it to contain %s", err, c.want)
			}
		})
	}
}
