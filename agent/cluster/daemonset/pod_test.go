package daemonset

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/spec"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestMatches(t *testing.T) {
	worker := map[string]string{"kubernetes.io/os": "linux", "node-role.example.com/worker": "", "zone": "a"}
	cases := []struct {
		name         string
		nodeSelector map[string]string
		nodeLabels   map[string]string
		want         bool
	}{
		{"no selector: every node", nil, nil, true},
		{"no selector, labelled node", nil, worker, true},
		{"subset", map[string]string{"kubernetes.io/os": "linux"}, worker, true},
		{"equal sets", worker, worker, true},
		{"empty value must be present", map[string]string{"node-role.example.com/worker": ""}, worker, true},
		{"empty value, label absent", map[string]string{"node-role.example.com/worker": ""}, map[string]string{"zone": "a"}, false},
		{"other value", map[string]string{"zone": "b"}, worker, false},
		{"one of two missing", map[string]string{"zone": "a", "gpu": "true"}, worker, false},
		{"node without labels", map[string]string{"zone": "a"}, nil, false},
		{"values compare exactly", map[string]string{"zone": "A"}, worker, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{}
			ds.Spec.Template.Spec.NodeSelector = tc.nodeSelector
			if got := Matches(ds, tc.nodeLabels); got != tc.want {
				t.Errorf("Matches(%v, %v) = %v, want %v", tc.nodeSelector, tc.nodeLabels, got, tc.want)
			}
		})
	}
	// The realistic DaemonSet runs on Linux workers only.
	ds := mustDecode(t, readTestdata(t, "node-logger.yaml"))
	if !Matches(ds, worker) || Matches(ds, map[string]string{"kubernetes.io/os": "linux"}) {
		t.Errorf("node-logger must run on workers and only there")
	}
}

func TestTemplateHash(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "minimal.json"))
	h := TemplateHash(ds)
	if !regexp.MustCompile(`^[0-9a-f]{10}$`).MatchString(h) {
		t.Fatalf("TemplateHash = %q, want 10 hex digits", h)
	}
	if errs := validation.IsValidLabelValue(h); len(errs) > 0 {
		t.Fatalf("TemplateHash %q is no label value: %v", h, errs)
	}
	// Pinned: when the hash changes, every DaemonSet pod of the cluster is replaced on upgrade.
	if h != goldenTemplateHash {
		t.Errorf("TemplateHash of testdata/minimal.json changed to %s: every pod would be replaced on upgrade", h)
	}

	same := map[string]string{
		"as YAML": `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: hello}
spec:
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers: [{name: hello, image: localhost/busybox, command: [sleep, "3600"]}]
`,
		"defaults spelled out": `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: hello}
spec:
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      restartPolicy: Always
      terminationGracePeriodSeconds: 30
      dnsPolicy: ClusterFirst
      containers:
      - {name: hello, image: localhost/busybox, imagePullPolicy: Always, command: [sleep, "3600"],
         terminationMessagePath: /dev/termination-log}
`,
		// What is outside the template is not in the hash: changing it replaces no pod.
		"other DaemonSet metadata": strings.Replace(string(readTestdata(t, "minimal.json")),
			`"metadata": {"name": "hello"}`, `"metadata": {"name": "bye", "namespace": "ns", "labels": {"team": "x"}, "uid": "u", "generation": 7}`, 1),
		"other update strategy": strings.Replace(string(readTestdata(t, "minimal.json")),
			`"spec": {`, `"spec": {"updateStrategy": {"type": "OnDelete"},`, 1),
		"other selector": strings.Replace(string(readTestdata(t, "minimal.json")),
			`"selector": {"matchLabels": {"app": "hello"}}`, `"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}`, 1),
	}
	for name, manifest := range same {
		if got := TemplateHash(mustDecode(t, []byte(manifest))); got != h {
			t.Errorf("%s: TemplateHash = %s, want %s", name, got, h)
		}
	}

	changed := map[string]func(*appsv1.DaemonSet){
		"image":          func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Image = "localhost/busybox:1.36" },
		"command":        func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Command[1] = "60" },
		"template label": func(ds *appsv1.DaemonSet) { ds.Spec.Template.Labels["tier"] = "node" },
		"annotation":     func(ds *appsv1.DaemonSet) { ds.Spec.Template.Annotations = map[string]string{"a": "b"} },
		"nodeSelector":   func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "a"} },
		"hostNetwork":    func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.HostNetwork = true },
	}
	for name, change := range changed {
		c := ds.DeepCopy()
		change(c)
		if TemplateHash(c) == h {
			t.Errorf("changing the template's %s must change TemplateHash", name)
		}
	}
}

// Pinned values for testdata/minimal.json; see TestTemplateHash and TestPodFor.
const (
	goldenTemplateHash = "e555ce608f"
	goldenPodUID       = "5ef66a2a-e5ee-cee2-33f2-dd644a7a481d"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestPodFor(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "node-logger.yaml"))
	ds.UID = "6a1e34b8-0d7c-4c43-9c55-2f1d0c5e7a10" // as the cluster store assigns it
	hash := TemplateHash(ds)

	pod, err := PodFor(ds, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	if errs := spec.Validate(pod); len(errs) > 0 {
		t.Errorf("spec.Validate(PodFor) = %v", errs)
	}
	switch {
	case pod.Name != "node-logger-worker-1" || pod.Namespace != "kube-system":
		t.Errorf("pod %s/%s, want kube-system/node-logger-worker-1", pod.Namespace, pod.Name)
	case pod.Spec.NodeName != "worker-1":
		t.Errorf("spec.nodeName = %q", pod.Spec.NodeName)
	case pod.APIVersion != "v1" || pod.Kind != "Pod":
		t.Errorf("type meta %+v", pod.TypeMeta)
	case len(pod.OwnerReferences) != 0:
		t.Errorf("ownerReferences set: the spec package refuses them")
	case !uuidPattern.MatchString(string(pod.UID)):
		t.Errorf("UID %q is not formatted like spec.PodUID", pod.UID)
	}
	wantLabels := map[string]string{"app": "node-logger", "tier": "node", "controller-revision-hash": hash}
	if !reflect.DeepEqual(pod.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", pod.Labels, wantLabels)
	}
	wantAnnotations := map[string]string{"example.com/owner": "platform",
		"agentd.io/daemonset": "kube-system/node-logger", "agentd.io/template-hash": hash}
	if !reflect.DeepEqual(pod.Annotations, wantAnnotations) {
		t.Errorf("annotations = %v, want %v", pod.Annotations, wantAnnotations)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "localhost/busybox:1.36" || c.LivenessProbe == nil || len(pod.Spec.Volumes) != 2 || !pod.Spec.HostNetwork {
		t.Errorf("template spec not carried over: %+v", pod.Spec)
	}

	// Stable: the same inputs give the same pod.
	again, err := PodFor(ds, "worker-1")
	if err != nil || !reflect.DeepEqual(again, pod) {
		t.Errorf("PodFor is not stable:\n%+v\n%+v", pod, again)
	}
	// The pod shares no map with the DaemonSet.
	pod.Labels["app"] = "changed"
	pod.Spec.NodeSelector["zone"] = "changed"
	if ds.Spec.Template.Labels["app"] != "node-logger" || ds.Spec.Template.Spec.NodeSelector["zone"] != "" {
		t.Errorf("changing the pod changed the DaemonSet's template")
	}
}

func TestPodForUID(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "minimal.json"))
	ds.UID = "6a1e34b8-0d7c-4c43-9c55-2f1d0c5e7a10"
	uid := func(ds *appsv1.DaemonSet, node string) string {
		t.Helper()
		pod, err := PodFor(ds, node)
		if err != nil {
			t.Fatal(err)
		}
		return string(pod.UID)
	}
	base := uid(ds, "n1")
	if base != goldenPodUID {
		t.Errorf("UID of the pod of testdata/minimal.json changed to %s: every pod would be replaced on upgrade", base)
	}
	if uid(ds, "n2") == base {
		t.Errorf("another node must give another UID")
	}
	other := ds.DeepCopy()
	other.UID = "0d1b2c3d-0000-4000-8000-000000000000"
	if uid(other, "n1") == base {
		t.Errorf("a recreated DaemonSet (new UID) must give new pod UIDs")
	}
	newTemplate := ds.DeepCopy()
	newTemplate.Spec.Template.Spec.Containers[0].Image = "localhost/busybox:1.37"
	if uid(newTemplate, "n1") == base {
		t.Errorf("a new template must give a new pod UID, so the agent replaces the pod")
	}
	outside := ds.DeepCopy()
	outside.Labels = map[string]string{"team": "x"}
	outside.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	outside.Generation = 9
	if uid(outside, "n1") != base {
		t.Errorf("changes outside the template must not replace pods")
	}
	// Without a UID from the store, two DaemonSets of the same template still differ.
	a, b := ds.DeepCopy(), ds.DeepCopy()
	a.UID, b.UID = "", ""
	b.Name = "hello2"
	if uid(a, "n1") == uid(b, "n1") {
		t.Errorf("two DaemonSets without UIDs got the same pod UID")
	}
}

// A DaemonSet built in Go, not by Decode, still gets a pod with kubelet's defaults.
func TestPodForAppliesDefaults(t *testing.T) {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "raw"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "raw"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "raw"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "localhost/busybox",
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}}},
			},
		},
	}
	pod, err := PodFor(ds, "n1")
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	if pod.Namespace != "default" || pod.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		c.ImagePullPolicy != corev1.PullAlways || c.ReadinessProbe.PeriodSeconds != 10 {
		t.Errorf("defaults not applied: namespace %q %+v", pod.Namespace, pod.Spec)
	}
	if pod.Annotations[AnnotationDaemonSet] != "default/raw" {
		t.Errorf("owner annotation %q", pod.Annotations[AnnotationDaemonSet])
	}

	// A template the spec package refuses gives no pod.
	ds.Spec.Template.Spec.Containers[0].Image = ""
	if _, err := PodFor(ds, "n1"); !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), "spec.containers[0].image: Required value") {
		t.Errorf("PodFor of an invalid template: %v", err)
	}
}

func TestPodForInvalidNode(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "minimal.json"))
	for _, node := range []string{"", "Worker_1", strings.Repeat("n", 254)} {
		if _, err := PodFor(ds, node); !errors.Is(err, ErrInvalidNodeName) {
			t.Errorf("PodFor(%q) = %v, want ErrInvalidNodeName", node, err)
		}
	}
}

func TestPodName(t *testing.T) {
	long := strings.Repeat("n", 250)
	cases := []struct {
		ds, node string
		want     string // "" when the name is cut: checked by the rules below
	}{
		{"node-logger", "worker-1", "node-logger-worker-1"},
		{"ds", "worker-1.example.com", "ds-worker-1.example.com"},
		{"ds", strings.Repeat("n", 250), "ds-" + strings.Repeat("n", 250)}, // exactly 253
		{"ds", strings.Repeat("n", 251), ""},
		{strings.Repeat("d", MaxNameLength), strings.Repeat("n", 253), ""},
		{"ds", long[:238] + ".x" + long[:20], ""}, // the cut falls right after a "."
		{"ds", long[:238] + "-x" + long[:20], ""}, // and after a "-"
		{strings.Repeat("d", 200), "rack-1.zone-" + long[:60], ""},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		got := PodName(tc.ds, tc.node)
		if tc.want != "" && got != tc.want {
			t.Errorf("PodName(%q, %q) = %q, want %q", tc.ds, tc.node, got, tc.want)
		}
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("PodName(%d chars, %d chars) = %q is no valid pod name: %v", len(tc.ds), len(tc.node), got, errs)
		}
		if !strings.HasPrefix(got, tc.ds+"-"+tc.node[:1]) {
			t.Errorf("PodName(%d chars, %d chars) = %q lost the DaemonSet's name", len(tc.ds), len(tc.node), got)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("PodName gives %q for two nodes (%s)", got, prev)
		}
		seen[got] = tc.node
	}
	// Two long node names that differ only at the end give two pods.
	a, b := PodName("ds", long+"-a"), PodName("ds", long+"-b")
	if a == b || len(a) != 253 {
		t.Errorf("long node names: %q and %q", a, b)
	}
}

func TestMaxUnavailable(t *testing.T) {
	rolling := func(v *intstr.IntOrString) *appsv1.DaemonSet {
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "default"}}
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: v}}
		return ds
	}
	num := func(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	cases := []struct {
		name    string
		ds      *appsv1.DaemonSet
		nodes   int
		want    int
		wantErr string
	}{
		{"1", rolling(num(1)), 3, 1, ""},
		{"unset means 1", rolling(nil), 10, 1, ""},
		{"no strategy at all means 1", &appsv1.DaemonSet{}, 10, 1, ""},
		{"int above node count", rolling(num(5)), 3, 5, ""},
		{"25% of 3 rounds up", rolling(pct("25%")), 3, 1, ""},
		{"50% of 3 rounds up", rolling(pct("50%")), 3, 2, ""},
		{"100% of 3", rolling(pct("100%")), 3, 3, ""},
		{"10% of 25", rolling(pct("10%")), 25, 3, ""},
		{"20% of 10 is exact", rolling(pct("20%")), 10, 2, ""},
		{"1% of 3 is at least 1", rolling(pct("1%")), 3, 1, ""},
		{"25% of no nodes is still 1", rolling(pct("25%")), 0, 1, ""},
		{"OnDelete replaces nothing", &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}}}, 3, 0, ""},
		{"0% is invalid", rolling(pct("0%")), 3, 0, `maxUnavailable: Invalid value: "0%": may not be 0`},
		{"0 is invalid", rolling(num(0)), 3, 0, "maxUnavailable: Invalid value: 0: may not be 0"},
		{"not a percentage", rolling(pct("half")), 3, 0, "must be an integer or percentage"},
		{"over 100%", rolling(pct("101%")), 3, 0, "must not be greater than 100%"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MaxUnavailable(tc.ds, tc.nodes)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, spec.ErrInvalid) {
					t.Errorf("MaxUnavailable = %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("MaxUnavailable(%d nodes) = %d, %v; want %d", tc.nodes, got, err, tc.want)
			}
		})
	}
	// The realistic DaemonSet: 25% of 8 workers.
	if n, err := MaxUnavailable(mustDecode(t, readTestdata(t, "node-logger.yaml")), 8); n != 2 || err != nil {
		t.Errorf("node-logger on 8 nodes: %d, %v; want 2", n, err)
	}
}
