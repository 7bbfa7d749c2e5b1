package printers

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/agentd-project/agentd/agent/cluster/daemonset"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "cluster", "daemonset", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDecode(t *testing.T, data []byte) *appsv1.DaemonSet {
	t.Helper()
	ds, err := daemonset.Decode(data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ds
}

var dsPrintNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// printFixtures: the realistic DaemonSet ten days into a rolling update, a new one without
// status and one without a creation time, given out of order.
func printFixtures(t *testing.T) []appsv1.DaemonSet {
	logger := mustDecode(t, readTestdata(t, "node-logger.yaml"))
	logger.CreationTimestamp = metav1.NewTime(dsPrintNow.Add(-10*24*time.Hour - 3*time.Hour))
	logger.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2,
		UpdatedNumberScheduled: 1, NumberAvailable: 2, NumberUnavailable: 1}
	hello := mustDecode(t, readTestdata(t, "minimal.json"))
	hello.CreationTimestamp = metav1.NewTime(dsPrintNow.Add(-90 * time.Second))
	undated := hello.DeepCopy()
	undated.Name = "undated"
	undated.CreationTimestamp = metav1.Time{}
	return []appsv1.DaemonSet{*logger, *undated, *hello}
}

func printString(t *testing.T, list []appsv1.DaemonSet, format string) string {
	t.Helper()
	var b bytes.Buffer
	if err := PrintDaemonSets(&b, list, format, dsPrintNow); err != nil {
		t.Fatalf("PrintDaemonSets(-o %q): %v", format, err)
	}
	return b.String()
}

func TestPrintDaemonSetsTable(t *testing.T) {
	want := "" +
		"NAME          DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR                                          AGE\n" +
		"hello         0         0         0       0            0           <none>                                                 90s\n" +
		"undated       0         0         0       0            0           <none>                                                 <unknown>\n" +
		"node-logger   3         3         2       1            2           kubernetes.io/os=linux,node-role.example.com/worker=   10d\n"
	if got := printString(t, printFixtures(t), ""); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}

	wantWide := "" +
		"NAME          DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR                                          AGE         CONTAINERS   IMAGES                   SELECTOR\n" +
		"hello         0         0         0       0            0           <none>                                                 90s         hello        localhost/busybox        app=hello\n" +
		"undated       0         0         0       0            0           <none>                                                 <unknown>   hello        localhost/busybox        app=hello\n" +
		"node-logger   3         3         2       1            2           kubernetes.io/os=linux,node-role.example.com/worker=   10d         logger       localhost/busybox:1.36   app=node-logger\n"
	if got := printString(t, printFixtures(t), "wide"); got != wantWide {
		t.Errorf("wide:\n%s\nwant:\n%s", got, wantWide)
	}

	if got := printString(t, nil, ""); got != "" {
		t.Errorf("no DaemonSets printed %q; kubectl prints nothing on stdout", got)
	}
}

func TestPrintDaemonSetsEscapes(t *testing.T) {
	list := printFixtures(t)[:1]
	list[0].Spec.Template.Spec.Containers[0].Image = "evil\x1b]0;pwned\x07"
	if got := printString(t, list, "wide"); strings.Contains(got, "\x1b") || !strings.Contains(got, "evil^[]0;pwned") {
		t.Errorf("an escape sequence reached the terminal: %q", got)
	}
}

func TestPrintDaemonSetsName(t *testing.T) {
	want := "daemonset.apps/hello\ndaemonset.apps/undated\ndaemonset.apps/node-logger\n"
	if got := printString(t, printFixtures(t), "name"); got != want {
		t.Errorf("-o name:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintDaemonSetsJSONAndYAML(t *testing.T) {
	js := printString(t, printFixtures(t), "json")
	if !strings.HasPrefix(js, "{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n        {\n            \"apiVersion\": \"apps/v1\",\n            \"kind\": \"DaemonSet\",\n") ||
		!strings.HasSuffix(js, "    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n") {
		t.Errorf("-o json is not kubectl's layout:\n%s", js)
	}
	ys := printString(t, printFixtures(t), "yaml")
	if !strings.HasPrefix(ys, "apiVersion: v1\nitems:\n- apiVersion: apps/v1\n  kind: DaemonSet\n") ||
		!strings.HasSuffix(ys, "kind: List\nmetadata:\n  resourceVersion: \"\"\n") {
		t.Errorf("-o yaml is not kubectl's layout:\n%s", ys)
	}
	for format, out := range map[string]string{"json": js, "yaml": ys} {
		var list appsv1.DaemonSetList
		if err := yaml.UnmarshalStrict([]byte(out), &list); err != nil {
			t.Fatalf("-o %s does not decode as a DaemonSetList: %v", format, err)
		}
		if len(list.Items) != 3 || list.Items[2].Name != "node-logger" || list.Items[2].Status.NumberReady != 2 ||
			list.Items[2].Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" {
			t.Errorf("-o %s lost content: %+v", format, list.Items)
		}
		// Each item is a manifest agentctl apply accepts again.
		item, err := json.Marshal(list.Items[2])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := daemonset.Decode(item); err != nil {
			t.Errorf("-o %s: an item does not decode again: %v", format, err)
		}
	}
	if got := printString(t, nil, "json"); !strings.Contains(got, "\"items\": [],") {
		t.Errorf("no DaemonSets as JSON: %s", got)
	}
}

func TestPrintDaemonSetsUnknownFormat(t *testing.T) {
	var b bytes.Buffer
	err := PrintDaemonSets(&b, printFixtures(t), "jsonpath", dsPrintNow)
	if !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), `"jsonpath"`) || b.Len() != 0 {
		t.Errorf("-o jsonpath: %v, printed %q", err, b.String())
	}
}
