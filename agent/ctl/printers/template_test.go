package printers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// templatePods are two pods as kubectl would get them: "web" with two images and a
// label, "db" with one container and no node.
func templatePods() []corev1.Pod {
	web := newPod("web", corev1.PodRunning, status("main", running(), true), status("side", running(), true))
	web.Spec.Containers[1].Image = "nginx:1.27"
	web.Spec.NodeName = "node-1"
	web.Labels = map[string]string{"app": "web"}
	web.Spec.Containers[0].Resources.Limits = nil
	db := newPod("db", corev1.PodPending, status("db", waiting("ContainerCreating"), false))
	return []corev1.Pod{*web, *db}
}

// Expected strings are what kubectl prints for the same objects: kubectl gives the
// template printers the List it got from the server, whose items carry apiVersion and
// kind, sorted by namespace and name; one named pod is the Pod itself.
func TestPrintPodsTemplates(t *testing.T) {
	dir := t.TempDir()
	tmplFile := filepath.Join(dir, "names.tmpl")
	if err := os.WriteFile(tmplFile, []byte(`{{range .items}}{{.metadata.name}};{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	pathFile := filepath.Join(dir, "names.jsonpath")
	if err := os.WriteFile(pathFile, []byte(`{.items[*].metadata.name}`), 0o644); err != nil {
		t.Fatal(err)
	}
	colsFile := filepath.Join(dir, "cols")
	if err := os.WriteFile(colsFile, []byte("NAME          NODE\n.metadata.name  .spec.nodeName\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ format, want string }{
		{"jsonpath={.items[*].metadata.name}", "db web"},
		{"jsonpath={.apiVersion} {.kind} {.items[*].kind} {.items[*].apiVersion}", "v1 List Pod Pod v1 v1"},
		{`jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\n"}{end}`, "db\tPending\nweb\tRunning\n"},
		{"jsonpath={.items[?(@.metadata.labels.app==\"web\")].spec.containers[*].image}", "busybox nginx:1.27"},
		{"jsonpath={.items[*].metadata.nosuch}", ""},
		{"jsonpath-file=" + pathFile, "db web"},
		{"jsonpath-as-json={.items[*].metadata.name}", "[\n    \"db\",\n    \"web\"\n]\n"},
		{`go-template={{range .items}}{{.metadata.name}} {{len .spec.containers}}{{"\n"}}{{end}}`, "db 1\nweb 2\n"},
		{"go-template={{.kind}}", "List"},
		{"go-template-file=" + tmplFile, "db;web;"},
		{"custom-columns=NAME:.metadata.name,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName",
			"NAME   IMAGES               NODE\n" +
				"db     busybox              <none>\n" +
				"web    busybox,nginx:1.27   node-1\n"},
		{"custom-columns=NAME:metadata.name,APP:{.metadata.labels.app}",
			"NAME   APP\n" +
				"db     <none>\n" +
				"web    web\n"},
		{"custom-columns-file=" + colsFile,
			"NAME   NODE\n" +
				"db     <none>\n" +
				"web    node-1\n"},
	} {
		var buf bytes.Buffer
		if err := PrintPods(&buf, templatePods(), tc.format, false, false, now); err != nil {
			t.Errorf("-o %s: %v", tc.format, err)
			continue
		}
		if buf.String() != tc.want {
			t.Errorf("-o %s:\n got %q\nwant %q", tc.format, buf.String(), tc.want)
		}
	}

	// --no-headers drops the custom columns' header line.
	var buf bytes.Buffer
	if err := PrintPods(&buf, templatePods(), "custom-columns=NAME:.metadata.name", false, true, now); err != nil || buf.String() != "db\nweb\n" {
		t.Errorf("custom-columns --no-headers: %v %q", err, buf.String())
	}
}

func TestPrintPodTemplates(t *testing.T) {
	pod := templatePods()[0]
	for _, tc := range []struct{ format, want string }{
		{"jsonpath={.apiVersion}/{.kind}/{.metadata.name}", "v1/Pod/web"},
		{"jsonpath={.spec.containers[*].name}", "main side"},
		{"go-template={{.metadata.name}}", "web"},
		{"custom-columns=NAME:.metadata.name,KIND:.kind", "NAME   KIND\nweb    Pod\n"},
	} {
		var buf bytes.Buffer
		if err := PrintPod(&buf, &pod, tc.format); err != nil || buf.String() != tc.want {
			t.Errorf("-o %s: %v\n got %q\nwant %q", tc.format, err, buf.String(), tc.want)
		}
	}
}

func TestTemplateOtherResources(t *testing.T) {
	ev := corev1.Event{Reason: "Started", InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web"}}
	ev.Name = "web.1"
	var buf bytes.Buffer
	if err := PrintEvents(&buf, []corev1.Event{ev}, "jsonpath={.items[0].kind} {.items[*].reason}", time.Now()); err != nil || buf.String() != "Event Started" {
		t.Errorf("events jsonpath: %v %q", err, buf.String())
	}
	buf.Reset()
	node := corev1.Node{}
	node.Name = "n1"
	if err := PrintNodes(&buf, []corev1.Node{node}, "custom-columns=N:.metadata.name,K:.kind", false, time.Now()); err != nil || buf.String() != "N     K\nn1    Node\n" {
		t.Errorf("nodes custom-columns: %v %q", err, buf.String())
	}
}

func TestTemplateFormatErrors(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"jsonpath={.items[", "error parsing jsonpath {.items["},
		{"go-template={{.x", "error parsing template {{.x"},
		{"custom-columns=NAME", "unexpected custom-columns spec: NAME, expected <header>:<json-path-expr>"},
		{"jsonpath=", "jsonpath format specified but no template given"},
		{"xml", `unable to match a printer suitable for the output format "xml", allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml`},
	} {
		err := CheckFormat(tc.format)
		if err == nil || !bytes.HasPrefix([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("CheckFormat(%q) = %v, want %q…", tc.format, err, tc.want)
		}
	}
	if err := CheckFormat("xml"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("CheckFormat(xml) = %v, want ErrUnknownFormat", err)
	}
}

func TestSortBy(t *testing.T) {
	type item struct {
		Name  string `json:"name"`
		N     *int   `json:"n,omitempty"`
		Order int    `json:"order"`
	}
	n := func(v int) *int { return &v }
	items := []item{{"pod-10", n(2), 0}, {"pod-2", nil, 1}, {"pod-1", n(10), 2}, {"pod-b", n(2), 3}}
	names := func(l []item) (s []string) {
		for _, i := range l {
			s = append(s, i.Name)
		}
		return s
	}
	got, err := SortBy(items, ".name")
	if err != nil || fmt.Sprint(names(got)) != "[pod-1 pod-2 pod-10 pod-b]" {
		t.Errorf("sort by name (natural): %v %v", names(got), err)
	}
	got, err = SortBy(items, "{.n}")
	if err != nil || fmt.Sprint(names(got)) != "[pod-2 pod-10 pod-b pod-1]" {
		t.Errorf("sort by number, missing first, stable: %v %v", names(got), err)
	}
	if _, err := SortBy(items, "{.n"); err == nil {
		t.Error("a bad expression sorts")
	}
}
