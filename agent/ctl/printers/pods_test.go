package printers

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// listPods are three pods in the API server's reverse order, to show PrintPods sorts.
func listPods() []corev1.Pod {
	db := newPod("db", corev1.PodRunning, restarted(status("postgres", waiting("CrashLoopBackOff"), false), 3, 2*time.Minute))
	db.Namespace = "kube-system"
	db.CreationTimestamp = ago(45 * time.Second)
	db.Status.ContainerStatuses[0].ContainerID = "agent://0123abcd"

	web := newPod("web", corev1.PodRunning, status("nginx", running(), true))
	web.Spec.NodeName = "node-a"
	web.Status.PodIP = "10.77.0.5"
	web.Status.PodIPs = []corev1.PodIP{{IP: "10.77.0.5"}}
	web.Status.StartTime = agoPtr(5 * time.Minute)

	job := newPod("batch-job-1", corev1.PodSucceeded, status("job", terminated("Completed", 0, 0), false))
	job.CreationTimestamp = ago(51 * time.Hour)

	return []corev1.Pod{*db, *web, *job}
}

func printPods(t *testing.T, pods []corev1.Pod, format string, showNamespace, noHeaders bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := PrintPods(&b, pods, format, showNamespace, noHeaders, now); err != nil {
		t.Fatalf("PrintPods(%q): %v", format, err)
	}
	return b.String()
}

func TestPrintPodsTable(t *testing.T) {
	got := printPods(t, listPods(), "", false, false)
	want := "" +
		"NAME          READY   STATUS             RESTARTS     AGE\n" +
		"batch-job-1   0/1     Completed          0            2d3h\n" +
		"web           1/1     Running            0            5m\n" +
		"db            0/1     CrashLoopBackOff   3 (2m ago)   45s\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintPodsNoHeaders(t *testing.T) {
	got := printPods(t, listPods()[1:2], "", false, true)
	want := "web   1/1   Running   0     5m\n"
	if got != want {
		t.Errorf("no headers:\n%q\nwant:\n%q", got, want)
	}
}

func TestPrintPodsWideAllNamespaces(t *testing.T) {
	got := printPods(t, listPods()[1:2], "wide", true, false)
	want := "" +
		"NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE   IP          NODE     NOMINATED NODE   READINESS GATES\n" +
		"default     web    1/1     Running   0          5m    10.77.0.5   node-a   <none>           <none>\n"
	if got != want {
		t.Errorf("wide -A:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintPodsEmptyTable(t *testing.T) {
	if got := printPods(t, nil, "", false, false); got != "" {
		t.Errorf("no pods printed %q, want nothing (kubectl's notice goes to stderr)", got)
	}
}

func TestPrintPodsName(t *testing.T) {
	got := printPods(t, listPods(), "name", true, false)
	want := "pod/batch-job-1\npod/web\npod/db\n"
	if got != want {
		t.Errorf("-o name = %q, want %q", got, want)
	}
}

func TestPrintPodsJSON(t *testing.T) {
	got := printPods(t, listPods(), "json", false, false)

	// kubectl's layout: sorted keys, four-space indent, a List with empty metadata.
	if !strings.HasPrefix(got, "{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n        {\n            \"apiVersion\": \"v1\",\n            \"kind\": \"Pod\",\n") {
		t.Errorf("json does not start like kubectl's:\n%s", got[:min(len(got), 300)])
	}
	if !strings.HasSuffix(got, "\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n") {
		t.Errorf("json does not end like kubectl's:\n%s", got[max(0, len(got)-300):])
	}

	var list corev1.PodList
	if err := json.Unmarshal([]byte(got), &list); err != nil {
		t.Fatalf("json does not decode as a PodList: %v", err)
	}
	if list.Kind != "List" || list.APIVersion != "v1" {
		t.Errorf("list is %s %s, want v1 List", list.APIVersion, list.Kind)
	}
	if len(list.Items) != 3 {
		t.Fatalf("%d items, want 3", len(list.Items))
	}
	for _, p := range list.Items {
		if p.APIVersion != "v1" || p.Kind != "Pod" {
			t.Errorf("item %s is %q %q, want v1 Pod", p.Name, p.APIVersion, p.Kind)
		}
	}
	db := list.Items[2]
	if db.Name != "db" || db.Namespace != "kube-system" {
		t.Fatalf("third item is %s/%s, want kube-system/db", db.Namespace, db.Name)
	}
	if db.Status.Phase != corev1.PodRunning {
		t.Errorf("db phase %q, want Running", db.Status.Phase)
	}
	cs := db.Status.ContainerStatuses
	if len(cs) != 1 || cs[0].RestartCount != 3 || cs[0].ContainerID != "agent://0123abcd" ||
		cs[0].State.Waiting == nil || cs[0].State.Waiting.Reason != "CrashLoopBackOff" ||
		cs[0].LastTerminationState.Terminated == nil || !cs[0].LastTerminationState.Terminated.FinishedAt.Time.Equal(now.Add(-2*time.Minute)) {
		t.Errorf("db container status did not survive json: %+v", cs)
	}
	web := list.Items[1]
	if web.Status.PodIP != "10.77.0.5" || web.Status.StartTime == nil || !web.Status.ContainerStatuses[0].Ready {
		t.Errorf("web status did not survive json: %+v", web.Status)
	}
}

func TestPrintPodsJSONEmpty(t *testing.T) {
	got := printPods(t, nil, "json", false, false)
	if !strings.Contains(got, "\"items\": [],") {
		t.Errorf("empty list should print \"items\": [], got:\n%s", got)
	}
}

func TestPrintPodsYAML(t *testing.T) {
	got := printPods(t, listPods(), "yaml", false, false)
	if !strings.HasPrefix(got, "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n") {
		t.Errorf("yaml does not start like kubectl's:\n%s", got[:min(len(got), 200)])
	}
	if !strings.HasSuffix(got, "kind: List\nmetadata:\n  resourceVersion: \"\"\n") {
		t.Errorf("yaml does not end like kubectl's:\n%s", got[max(0, len(got)-200):])
	}
	var list corev1.PodList
	if err := yaml.Unmarshal([]byte(got), &list); err != nil {
		t.Fatalf("yaml does not decode as a PodList: %v", err)
	}
	if len(list.Items) != 3 || list.Items[2].Status.ContainerStatuses[0].RestartCount != 3 {
		t.Errorf("yaml lost items or status: %+v", list.Items)
	}
}

func TestPrintPodsDoesNotReorderCallersSlice(t *testing.T) {
	pods := listPods()
	printPods(t, pods, "json", false, false)
	if pods[0].Name != "db" || pods[0].Kind != "" {
		t.Errorf("caller's slice changed: first is %q kind %q", pods[0].Name, pods[0].Kind)
	}
}

func TestPrintPod(t *testing.T) {
	web := listPods()[1]

	var b bytes.Buffer
	if err := PrintPod(&b, &web, "json"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Pod\",\n    \"metadata\": {\n") {
		t.Errorf("single pod json should be the Pod itself:\n%s", b.String())
	}
	var p corev1.Pod
	if err := json.Unmarshal(b.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Name != "web" || p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 {
		t.Errorf("decoded pod lost data: %+v", p)
	}
	if web.Kind != "" {
		t.Errorf("PrintPod changed the caller's pod: kind %q", web.Kind)
	}

	b.Reset()
	if err := PrintPod(&b, &web, "yaml"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "apiVersion: v1\nkind: Pod\nmetadata:\n") {
		t.Errorf("single pod yaml should be the Pod itself:\n%s", b.String())
	}

	b.Reset()
	if err := PrintPod(&b, &web, "name"); err != nil {
		t.Fatal(err)
	}
	if b.String() != "pod/web\n" {
		t.Errorf("-o name = %q, want pod/web", b.String())
	}

	b.Reset()
	if err := PrintPod(&b, &web, ""); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "web ") {
		t.Errorf("table for one pod = %q, want a header and the web row", b.String())
	}
}

func TestUnknownFormat(t *testing.T) {
	pod := listPods()[0]
	for name, err := range map[string]error{
		"PrintPods":   PrintPods(&bytes.Buffer{}, []corev1.Pod{pod}, "xml", false, false, now),
		"PrintPod":    PrintPod(&bytes.Buffer{}, &pod, "xml"),
		"PrintEvents": PrintEvents(&bytes.Buffer{}, nil, "xml", now),
	} {
		if !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), `"xml"`) {
			t.Errorf("%s: err = %v, want ErrUnknownFormat naming \"xml\"", name, err)
		}
	}
}

func TestTableEscapesTerminalSequences(t *testing.T) {
	p := newPod("web", corev1.PodRunning, status("c", waiting("Bad\x1b[31mReason\r"), false))
	got := printPods(t, []corev1.Pod{*p}, "", false, true)
	if strings.ContainsAny(got, "\x1b\r") || !strings.Contains(got, `Bad^[[31mReason\r`) {
		t.Errorf("escape sequences not neutralised: %q", got)
	}
}
