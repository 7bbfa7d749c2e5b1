package daemonset

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/spec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := readFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(name string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata", name)) }

func mustDecode(t *testing.T, data []byte) *appsv1.DaemonSet {
	t.Helper()
	ds, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ds
}

func TestDecodeRealistic(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "node-logger.yaml"))

	if ds.Name != "node-logger" || ds.Namespace != "kube-system" {
		t.Errorf("identity: %s/%s", ds.Namespace, ds.Name)
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType ||
		ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "25%" {
		t.Errorf("update strategy: %+v", ds.Spec.UpdateStrategy)
	}
	ps := ds.Spec.Template.Spec
	if ps.NodeSelector["kubernetes.io/os"] != "linux" || len(ps.NodeSelector) != 2 {
		t.Errorf("nodeSelector lost: %v", ps.NodeSelector)
	}
	// The template comes back with the spec package's (kubelet's) defaults applied.
	c := ps.Containers[0]
	switch {
	case ps.RestartPolicy != corev1.RestartPolicyAlways || ps.DNSPolicy != corev1.DNSClusterFirst:
		t.Errorf("pod defaults not applied: restartPolicy %q dnsPolicy %q", ps.RestartPolicy, ps.DNSPolicy)
	case *ps.TerminationGracePeriodSeconds != 10:
		t.Errorf("a set grace period was overwritten: %d", *ps.TerminationGracePeriodSeconds)
	case c.ImagePullPolicy != corev1.PullIfNotPresent:
		t.Errorf("imagePullPolicy of a pinned tag: %q", c.ImagePullPolicy)
	case c.Ports[0].HostPort != 9100 || c.Ports[0].Protocol != corev1.ProtocolTCP:
		t.Errorf("hostNetwork port defaults: %+v", c.Ports[0])
	case c.ReadinessProbe.PeriodSeconds != 10 || c.ReadinessProbe.HTTPGet.Path != "/" || c.LivenessProbe.PeriodSeconds != 15:
		t.Errorf("probe defaults: liveness %+v readiness %+v", c.LivenessProbe, c.ReadinessProbe)
	case c.Resources.Requests.Memory().String() != "32Mi":
		t.Errorf("requests should default to limits: %v", c.Resources.Requests)
	case *ps.Volumes[1].HostPath.Type != corev1.HostPathFile:
		t.Errorf("hostPath type: %v", *ps.Volumes[1].HostPath.Type)
	}
	if ds.Spec.Template.Annotations["example.com/owner"] != "platform" || ds.Spec.Template.Labels["tier"] != "node" {
		t.Errorf("template metadata lost: %+v", ds.Spec.Template.ObjectMeta)
	}
}

func TestDecodeDefaults(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "minimal.json"))
	us := ds.Spec.UpdateStrategy
	if ds.Namespace != "default" || us.Type != appsv1.RollingUpdateDaemonSetStrategyType ||
		us.RollingUpdate == nil || us.RollingUpdate.MaxUnavailable == nil || *us.RollingUpdate.MaxUnavailable != intstr.FromInt32(1) {
		t.Errorf("DaemonSet defaults: namespace %q strategy %+v", ds.Namespace, us)
	}
	if ds.Spec.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("template not defaulted: %+v", ds.Spec.Template.Spec.Containers[0])
	}
	// Decoding what Decode returned gives it back unchanged: defaults are idempotent and
	// a defaulted DaemonSet is still a valid manifest.
	again := mustDecode(t, mustMarshal(t, ds))
	if TemplateHash(again) != TemplateHash(ds) || again.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("re-decoding changed the DaemonSet")
	}
}

// base is a minimal valid DaemonSet in YAML; cases edit it.
const base = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ds
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
      - name: c
        image: localhost/busybox
`

// withSpec adds lines under spec: (two spaces of indent), withPodSpec under the
// template's spec: (six), withContainer to the container (eight).
func withSpec(lines string) string {
	return base[:strings.Index(base, "  template:")] + lines + base[strings.Index(base, "  template:"):]
}
func withPodSpec(lines string) string {
	return strings.Replace(base, "      containers:\n", lines+"      containers:\n", 1)
}
func withContainer(lines string) string { return base + lines }

func TestDecodeAccepts(t *testing.T) {
	cases := map[string]string{
		"OnDelete":                  withSpec("  updateStrategy: {type: OnDelete}\n"),
		"maxSurge 0 is the default": withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: 2, maxSurge: 0}}\n"),
		"maxUnavailable 100%":       withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: 100%}}\n"),
		"matchExpressions selector": strings.Replace(base, "    matchLabels: {app: x}\n",
			"    matchExpressions: [{key: app, operator: In, values: [x, z]}]\n", 1),
		"status is output only":        base + "status: {numberReady: 3}\n",
		"creationTimestamp null":       strings.Replace(base, "    metadata:\n", "    metadata:\n      creationTimestamp: null\n", 1),
		"what the store sets":          strings.Replace(base, "  name: ds\n", "  name: ds\n  uid: 0b4f\n  generation: 4\n  resourceVersion: \"42\"\n  creationTimestamp: \"2026-01-02T03:04:05Z\"\n", 1),
		"empty nodeSelector":           withPodSpec("      nodeSelector: {}\n"),
		"name of MaxNameLength":        strings.Replace(base, "name: ds", "name: "+strings.Repeat("a", MaxNameLength), 1),
		"restartPolicy Always spelled": withPodSpec("      restartPolicy: Always\n"),
	}
	for name, manifest := range cases {
		t.Run(name, func(t *testing.T) {
			ds := mustDecode(t, []byte(manifest))
			if name == "status is output only" && ds.Status.NumberReady != 0 {
				t.Errorf("status kept: %+v", ds.Status)
			}
			if name == "what the store sets" && (ds.UID != "0b4f" || ds.Generation != 4 || ds.ResourceVersion != "42" || ds.CreationTimestamp.Year() != 2026) {
				t.Errorf("metadata not kept: %+v", ds.ObjectMeta)
			}
		})
	}
}

// TestDecodeBad asserts the field path (and a word of the message) of every error.
func TestDecodeBad(t *testing.T) {
	cases := []struct {
		name     string
		manifest string
		want     []string // each must appear in the error
		sentinel error
	}{
		// Envelope.
		{"a Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", []string{`kind: Unsupported value: "Pod"`, `apiVersion: Unsupported value: "v1"`}, spec.ErrInvalid},
		{"old apiVersion", strings.Replace(base, "apps/v1", "extensions/v1beta1", 1), []string{`apiVersion: Unsupported value: "extensions/v1beta1"`}, spec.ErrInvalid},
		{"no kind", strings.Replace(base, "kind: DaemonSet\n", "", 1), []string{"kind: Required value: must be DaemonSet"}, spec.ErrInvalid},
		{"two documents", base + "---\n" + base, []string{"has 2 YAML documents"}, spec.ErrSyntax},
		{"empty", "# nothing\n", []string{"the file is empty"}, spec.ErrSyntax},
		{"garbage", "{{{ :::", []string{"not valid YAML or JSON"}, spec.ErrSyntax},
		{"a list", "- a\n", []string{"not an object"}, spec.ErrSyntax},
		{"duplicate key", base + "        image: other\n", []string{"already set in map"}, spec.ErrSyntax},
		{"too large", base + "# " + strings.Repeat("x", spec.MaxManifestSize) + "\n", []string{"larger than 10 MiB"}, spec.ErrTooLarge},

		// Unknown and unsupported fields, by path.
		{"typo in the template", withContainer("        imagePullPolcy: Always\n"), []string{"spec.template.spec.containers[0].imagePullPolcy: unknown field"}, spec.ErrInvalid},
		{"typo in the strategy", withSpec("  updateStrategy: {rollingUpdate: {maxUnavaliable: 1}}\n"), []string{"spec.updateStrategy.rollingUpdate.maxUnavaliable: unknown field"}, spec.ErrInvalid},
		{"minReadySeconds", withSpec("  minReadySeconds: 10\n"), []string{"spec.minReadySeconds: not supported by agentd"}, spec.ErrInvalid},
		{"revisionHistoryLimit", withSpec("  revisionHistoryLimit: 10\n"), []string{"spec.revisionHistoryLimit: not supported by agentd"}, spec.ErrInvalid},
		{"maxSurge", withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}\n"), []string{"spec.updateStrategy.rollingUpdate.maxSurge: not supported by agentd"}, spec.ErrInvalid},
		{"maxSurge percent", withSpec("  updateStrategy: {rollingUpdate: {maxSurge: 10%}}\n"), []string{"spec.updateStrategy.rollingUpdate.maxSurge: not supported by agentd"}, spec.ErrInvalid},
		{"ownerReferences", strings.Replace(base, "  name: ds\n", "  name: ds\n  ownerReferences: [{name: x}]\n", 1), []string{"metadata.ownerReferences: not supported by agentd"}, spec.ErrInvalid},
		{"managedFields", strings.Replace(base, "  name: ds\n", "  name: ds\n  managedFields: [{manager: kubectl}]\n", 1), []string{"metadata.managedFields: not supported by agentd"}, spec.ErrInvalid},
		{"finalizers", strings.Replace(base, "  name: ds\n", "  name: ds\n  finalizers: [example.com/x]\n", 1), []string{"metadata.finalizers: not supported by agentd"}, spec.ErrInvalid},
		{"generateName", strings.Replace(base, "  name: ds\n", "  generateName: ds-\n", 1), []string{"metadata.generateName: not supported by agentd: a DaemonSet needs a fixed metadata.name", "metadata.name: Required value"}, spec.ErrInvalid},
		{"template name", strings.Replace(base, "    metadata:\n", "    metadata:\n      name: p\n", 1), []string{"spec.template.metadata.name: not supported by agentd: the pods of a DaemonSet are named <daemonset>-<node>"}, spec.ErrInvalid},
		{"template namespace", strings.Replace(base, "    metadata:\n", "    metadata:\n      namespace: other\n", 1), []string{"spec.template.metadata.namespace: not supported by agentd"}, spec.ErrInvalid},
		{"affinity", withPodSpec("      affinity: {nodeAffinity: {}}\n"), []string{"spec.template.spec.affinity: not supported by agentd"}, spec.ErrInvalid},
		{"tolerations", withPodSpec("      tolerations: [{operator: Exists}]\n"), []string{"spec.template.spec.tolerations: not supported by agentd"}, spec.ErrInvalid},
		{"template nodeName", withPodSpec("      nodeName: n1\n"), []string{"spec.template.spec.nodeName: not supported by agentd"}, spec.ErrInvalid},
		{"configMap volume", withPodSpec("      volumes: [{name: v, configMap: {name: x}}]\n"), []string{"spec.template.spec.volumes[0].configMap: not supported by agentd"}, spec.ErrInvalid},
		{"string where a number belongs", withSpec("  minReadySeconds: soon\n"), []string{"spec.minReadySeconds: Invalid value"}, spec.ErrInvalid},

		// DaemonSet metadata.
		{"no name", strings.Replace(base, "  name: ds\n", "  labels: {a: b}\n", 1), []string{"metadata.name: Required value"}, spec.ErrInvalid},
		{"bad name", strings.Replace(base, "name: ds", "name: Node_Logger", 1), []string{`metadata.name: Invalid value: "Node_Logger"`}, spec.ErrInvalid},
		{"name too long for pod names", strings.Replace(base, "name: ds", "name: "+strings.Repeat("a", MaxNameLength+1), 1), []string{"metadata.name: Too long: may not be more than 240 bytes: its pods are named <name>-<node>"}, spec.ErrInvalid},
		{"bad namespace", strings.Replace(base, "  name: ds\n", "  name: ds\n  namespace: kube.system\n", 1), []string{`metadata.namespace: Invalid value: "kube.system"`}, spec.ErrInvalid},
		{"bad label", strings.Replace(base, "  name: ds\n", "  name: ds\n  labels: {\"-x\": v}\n", 1), []string{`metadata.labels: Invalid value: "-x"`}, spec.ErrInvalid},
		{"negative generation", strings.Replace(base, "  name: ds\n", "  name: ds\n  generation: -1\n", 1), []string{"metadata.generation: Invalid value: -1"}, spec.ErrInvalid},

		// Selector.
		{"no selector", strings.Replace(base, "  selector:\n    matchLabels: {app: x}\n", "", 1), []string{"spec.selector: Required value"}, spec.ErrInvalid},
		{"empty selector", strings.Replace(base, "  selector:\n    matchLabels: {app: x}\n", "  selector: {}\n", 1), []string{`spec.selector: Invalid value: "<none>": empty selector is invalid for daemonset`}, spec.ErrInvalid},
		{"selector misses the template", strings.Replace(base, "matchLabels: {app: x}", "matchLabels: {app: other}", 1), []string{"spec.template.metadata.labels: Invalid value", "`selector` does not match template `labels`"}, spec.ErrInvalid},
		{"bad selector operator", strings.Replace(base, "    matchLabels: {app: x}\n", "    matchExpressions: [{key: app, operator: Near, values: [x]}]\n", 1), []string{"spec.selector.matchExpressions[0].operator: Invalid value: \"Near\""}, spec.ErrInvalid},
		{"bad selector key", strings.Replace(base, "matchLabels: {app: x}", "matchLabels: {\"a b\": x}", 1), []string{`spec.selector.matchLabels: Invalid value: "a b"`}, spec.ErrInvalid},

		// Update strategy.
		{"maxUnavailable 0", withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}\n"), []string{"spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0: maxSurge is not supported by agentd"}, spec.ErrInvalid},
		{"maxUnavailable 0%", withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: 0%}}\n"), []string{`spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0`}, spec.ErrInvalid},
		{"maxUnavailable over 100%", withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: 150%}}\n"), []string{`spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%`}, spec.ErrInvalid},
		{"maxUnavailable string number", withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: \"2\"}}\n"), []string{`spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "2": must be an integer or percentage`}, spec.ErrInvalid},
		{"maxUnavailable negative", withSpec("  updateStrategy: {rollingUpdate: {maxUnavailable: -1}}\n"), []string{"spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"}, spec.ErrInvalid},
		{"unknown strategy", withSpec("  updateStrategy: {type: Recreate}\n"), []string{`spec.updateStrategy.type: Unsupported value: "Recreate"`}, spec.ErrInvalid},
		{"rollingUpdate with OnDelete", withSpec("  updateStrategy: {type: OnDelete, rollingUpdate: {maxUnavailable: 2}}\n"), []string{"spec.updateStrategy.rollingUpdate: Forbidden: may not be set when type is OnDelete"}, spec.ErrInvalid},

		// The template, by the spec package's rules, under spec.template.
		{"no containers", strings.Replace(base, "      containers:\n      - name: c\n        image: localhost/busybox\n", "      hostNetwork: true\n", 1), []string{"spec.template.spec.containers: Required value"}, spec.ErrInvalid},
		{"no image", strings.Replace(base, "        image: localhost/busybox\n", "", 1), []string{"spec.template.spec.containers[0].image: Required value"}, spec.ErrInvalid},
		{"restartPolicy Never", withPodSpec("      restartPolicy: Never\n"), []string{`spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`}, spec.ErrInvalid},
		{"restartPolicy typo", withPodSpec("      restartPolicy: Sometimes\n"), []string{`spec.template.spec.restartPolicy: Unsupported value: "Sometimes"`}, spec.ErrInvalid},
		{"bad template label", strings.Replace(base, "      labels: {app: x}\n", "      labels: {app: x, \"-bad\": v}\n", 1), []string{`spec.template.metadata.labels: Invalid value: "-bad"`}, spec.ErrInvalid},
		{"bad nodeSelector key", withPodSpec("      nodeSelector: {\"-bad\": x}\n"), []string{`spec.template.spec.nodeSelector: Invalid value: "-bad"`}, spec.ErrInvalid},
		{"bad nodeSelector value", withPodSpec("      nodeSelector: {zone: \"a b\"}\n"), []string{`spec.template.spec.nodeSelector: Invalid value: "a b"`}, spec.ErrInvalid},
		{"reserved label", strings.Replace(base, "      labels: {app: x}\n", "      labels: {app: x, controller-revision-hash: abc}\n", 1), []string{"spec.template.metadata.labels[controller-revision-hash]: Forbidden: set by agentd"}, spec.ErrInvalid},
		{"reserved annotation", strings.Replace(base, "      labels: {app: x}\n", "      labels: {app: x}\n      annotations: {agentd.io/daemonset: a/b}\n", 1), []string{"spec.template.metadata.annotations[agentd.io/daemonset]: Forbidden"}, spec.ErrInvalid},
		{"hostPort of agentd's etcd", withContainer("        ports: [{containerPort: 80, hostPort: 2379}]\n"), []string{"spec.template.spec.containers[0].ports[0].hostPort: Forbidden: 2379 is one of agentd's own ports"}, spec.ErrInvalid},
		{"mount of an undeclared volume", withContainer("        volumeMounts: [{name: data, mountPath: /data}]\n"), []string{`spec.template.spec.containers[0].volumeMounts[0].name: Not found: "data"`}, spec.ErrInvalid},
		{"relative hostPath", withPodSpec("      volumes: [{name: v, hostPath: {path: var/log}}]\n"), []string{`spec.template.spec.volumes[0].hostPath.path: Invalid value: "var/log"`}, spec.ErrInvalid},
		{"probe without handler", withContainer("        livenessProbe: {periodSeconds: 5}\n"), []string{"spec.template.spec.containers[0].livenessProbe: Required value: must specify a handler type"}, spec.ErrInvalid},

		// Names that become the pods' names, directories and cgroups on every node (issue 10).
		{"name leads out", strings.Replace(base, "name: ds", "name: ../x", 1), []string{`metadata.name: Invalid value: "../x"`}, spec.ErrInvalid},
		{"name with a slash", strings.Replace(base, "name: ds", "name: a/b", 1), []string{`metadata.name: Invalid value: "a/b"`}, spec.ErrInvalid},
		{"namespace leads out", strings.Replace(base, "  name: ds\n", "  name: ds\n  namespace: ../x\n", 1), []string{`metadata.namespace: Invalid value: "../x"`}, spec.ErrInvalid},
		{"container name leads out", strings.Replace(base, "      - name: c\n", "      - name: ../x\n", 1), []string{`spec.template.spec.containers[0].name: Invalid value: "../x"`}, spec.ErrInvalid},
		{"init container name leads out", withPodSpec("      initContainers: [{name: ../x, image: x}]\n"), []string{`spec.template.spec.initContainers[0].name: Invalid value: "../x"`}, spec.ErrInvalid},
		{"volume name leads out", withPodSpec("      volumes: [{name: ../x, emptyDir: {}}]\n"), []string{`spec.template.spec.volumes[0].name: Invalid value: "../x"`}, spec.ErrInvalid},
		{"image leads out", strings.Replace(base, "image: localhost/busybox", "image: ../x", 1), []string{`spec.template.spec.containers[0].image: Invalid value: "../x": must not have an empty, '.' or '..' path element`}, spec.ErrInvalid},
		{"image with .. inside", strings.Replace(base, "image: localhost/busybox", "image: a/../b:1", 1), []string{`spec.template.spec.containers[0].image: Invalid value: "a/../b:1"`}, spec.ErrInvalid},
		{"init container image leads out", withPodSpec("      initContainers: [{name: i, image: ../../x}]\n"), []string{`spec.template.spec.initContainers[0].image: Invalid value: "../../x"`}, spec.ErrInvalid},
		{"every name leads out", strings.Replace(strings.Replace(strings.Replace(withPodSpec("      volumes: [{name: ../v, emptyDir: {}}]\n"),
			"name: ds", "name: ../x", 1), "      - name: c\n", "      - name: ../c\n", 1), "image: localhost/busybox", "image: ../i", 1),
			[]string{`metadata.name: Invalid value: "../x"`, `spec.template.spec.containers[0].name: Invalid value: "../c"`,
				`spec.template.spec.containers[0].image: Invalid value: "../i"`, `spec.template.spec.volumes[0].name: Invalid value: "../v"`}, spec.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := Decode([]byte(tc.manifest))
			if err == nil {
				t.Fatalf("Decode accepted a bad manifest: %+v", ds)
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %q is not %v", err, tc.sentinel)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n  %s\ndoes not contain\n  %s", msg, w)
				}
			}
		})
	}
}

// TestDecodeAllErrorsAtOnce: a manifest with problems at every level reports all of them.
func TestDecodeAllErrorsAtOnce(t *testing.T) {
	manifest := `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: BAD}
spec:
  revisionHistoryLimit: 3
  selector: {matchLabels: {app: other}}
  updateStrategy: {rollingUpdate: {maxUnavailable: 0}}
  template:
    metadata: {labels: {app: x}}
    spec:
      tolerations: [{operator: Exists}]
      nodeSelector: {"-k": v}
      containers:
      - name: a
      - name: a
        image: x
`
	_, err := Decode([]byte(manifest))
	got := map[string]bool{}
	for _, fe := range spec.ErrorList(err) {
		got[fe.Field] = true
	}
	for _, w := range []string{
		"spec.revisionHistoryLimit", "spec.template.spec.tolerations", "spec.template.spec.containers[0].image",
		"spec.template.spec.containers[1].name", "spec.template.spec.nodeSelector", "metadata.name",
		"spec.template.metadata.labels", "spec.updateStrategy.rollingUpdate.maxUnavailable",
	} {
		if !got[w] {
			t.Errorf("missing error for %s; got %v", w, err)
		}
	}
	// Unknown fields are reported all at once too.
	_, err = Decode([]byte(withContainer("        imagePullPolcy: x\n        comand: [x]\n")))
	if n := len(spec.ErrorList(err)); n != 2 {
		t.Errorf("want 2 unknown-field errors, got %d: %v", n, err)
	}
}

// Every path SupportedFields lists exists in apps/v1 (a typo in the table would refuse a
// field the table means to support).
func TestSupportedFieldsExist(t *testing.T) {
	for _, f := range SupportedFields {
		typ := reflect.TypeFor[appsv1.DaemonSet]()
		for _, name := range strings.Split(f.Path, ".") {
			for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
				typ = typ.Elem()
			}
			sf, ok := jsonField(typ, name)
			if !ok {
				t.Errorf("%s: %s has no field %q", f.Path, typ, name)
				break
			}
			typ = sf.Type
		}
	}
}

func jsonField(typ reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < typ.NumField(); i++ {
		sf := typ.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if sf.Anonymous && tag == "" {
			if f, ok := jsonField(sf.Type, name); ok {
				return f, true
			}
		}
		if tag == name {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestShippedExample: the DaemonSet the repository ships decodes.
func TestShippedExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "manifests", "cluster", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ds := mustDecode(t, data)
	if !Matches(ds, map[string]string{"kubernetes.io/os": "linux"}) {
		t.Errorf("the example does not match a linux node")
	}
	if _, err := PodFor(ds, "node-1"); err != nil {
		t.Error(err)
	}
}

// TestFieldDocsUpToDate: docs/daemonset-fields.md is what make docs writes.
func TestFieldDocsUpToDate(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "daemonset-fields.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != FieldDocs() {
		t.Error("docs/daemonset-fields.md is out of date with daemonset.SupportedFields: run `make docs`")
	}
}
