package ctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// fakeAgent serves a FakeBackend on a socket of the test's own and returns its path.
func fakeAgent(t *testing.T) (*apitest.FakeBackend, string) {
	t.Helper()
	b := apitest.NewFakeBackend()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	s, err := api.Listen(sock, b, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return b, sock
}

func run(sock string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(append([]string{"--socket", sock}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func labelledPod(name string, labels map[string]string, containers ...string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	return p
}

func TestGetPodsSelectorAndSortBy(t *testing.T) {
	b, sock := fakeAgent(t)
	web := labelledPod("web", map[string]string{"app": "web", "tier": "front"}, "main")
	web.Status.StartTime = &metav1.Time{Time: time.Unix(300, 0)}
	db := labelledPod("db", map[string]string{"app": "db"}, "main")
	db.Status.StartTime = &metav1.Time{Time: time.Unix(200, 0)}
	cache := labelledPod("cache", nil, "main")
	cache.Status.StartTime = &metav1.Time{Time: time.Unix(100, 0)}
	b.SetPods(web, db, cache)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-l", "app=web"}, "web"},
		{[]string{"-l", "app"}, "db web"},
		{[]string{"-l", "app in (db,web),tier!=front"}, "db"},
		{[]string{"-l", "!app"}, "cache"},
		{[]string{"--sort-by", ".status.startTime"}, "cache db web"},
		{[]string{"--sort-by", "{.metadata.labels.app}", "-l", "app"}, "db web"},
	} {
		args := append([]string{"get", "pods", "-o", "jsonpath={.items[*].metadata.name}"}, tc.args...)
		code, out, errOut := run(sock, args...)
		if code != 0 || out != tc.want {
			t.Errorf("agentctl %s: exit %d, %q (%s); want %q", strings.Join(args, " "), code, out, errOut, tc.want)
		}
	}
	if code, _, errOut := run(sock, "get", "pods", "-l", "app=(x"); code != 1 || !strings.Contains(errOut, "error:") {
		t.Errorf("a bad selector: exit %d, %q", code, errOut)
	}
	// A table with a selector matching nothing says so, as kubectl.
	if code, out, errOut := run(sock, "get", "pods", "-l", "app=none"); code != 0 || out != "" || errOut != "No resources found in default namespace.\n" {
		t.Errorf("no match: exit %d, %q, %q", code, out, errOut)
	}
}

func TestLogsAndExecDefaultContainer(t *testing.T) {
	b, sock := fakeAgent(t)
	two := labelledPod("two", nil, "main", "side")
	annotated := labelledPod("annotated", nil, "main", "side")
	annotated.Annotations = map[string]string{defaultContainerAnnotation: "side"}
	b.SetPods(two, annotated)
	b.Lock()
	b.LogRoot, b.LogName = t.TempDir(), "0.log"
	b.Unlock()

	_, _, errOut := run(sock, "logs", "two")
	if errOut != "Defaulted container \"main\" out of: main, side\n" {
		t.Errorf("logs two: stderr %q", errOut)
	}
	_, _, errOut = run(sock, "logs", "annotated")
	if errOut != "" {
		t.Errorf("logs annotated: stderr %q", errOut)
	}
	if code, _, errOut := run(sock, "logs", "two", "-c", "side"); code != 0 || errOut != "" {
		t.Errorf("logs -c side: %d %q", code, errOut)
	}
	var containers []string
	for _, c := range b.CallsOf("LogFile") {
		containers = append(containers, c.Args[2].(string))
	}
	if strings.Join(containers, " ") != "main side side" {
		t.Errorf("containers asked for: %v, want main side side", containers)
	}

	code, _, errOut := run(sock, "exec", "two", "--", "true")
	if code != 0 || errOut != "Defaulted container \"main\" out of: main, side\n" {
		t.Errorf("exec two: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := run(sock, "logs", "nosuch"); code != 1 || !strings.Contains(errOut, `pods "nosuch" not found`) {
		t.Errorf("logs nosuch: exit %d, %q", code, errOut)
	}
}

func TestGetEventsWatch(t *testing.T) {
	old := eventsPollInterval
	eventsPollInterval = 10 * time.Millisecond
	defer func() { eventsPollInterval = old }()
	b, sock := fakeAgent(t)
	ev := func(name, reason string, count int32) corev1.Event {
		return corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web", Namespace: "default"},
			Type:           "Normal", Reason: reason, Message: reason + " it", Count: count,
			LastTimestamp: metav1.Now(),
		}
	}
	b.Lock()
	b.EventList = []corev1.Event{ev("web.1", "Pulled", 1)}
	b.Unlock()

	var out testutil.SyncBuffer
	var errOut bytes.Buffer
	cmd := NewCommand(&out, &errOut)
	cmd.SetArgs([]string{"get", "events", "-w", "--socket", sock})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("get events -w: %v", err)
		}
	}()

	waitFor := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond(out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; output:\n%s", what, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the listing", func(s string) bool { return strings.Contains(s, "Pulled") })
	b.Lock()
	b.EventList = append(b.EventList, ev("web.2", "Started", 1))
	b.Unlock()
	waitFor("a new event", func(s string) bool { return strings.Contains(s, "Started") })
	b.Lock()
	b.EventList[0].Count = 2
	b.Unlock()
	waitFor("a repeated event", func(s string) bool { return strings.Count(s, "Pulled it") == 2 })
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "LAST SEEN") || strings.Contains(strings.Join(lines[1:], "\n"), "LAST SEEN") {
		t.Errorf("watch output: one header, then a row per new or changed event:\n%s", out.String())
	}
}

func TestLogsAllContainersPrefix(t *testing.T) {
	b, sock := fakeAgent(t)
	p := labelledPod("web", nil, "main", "side")
	p.Spec.InitContainers = []corev1.Container{{Name: "setup"}}
	b.SetPods(p)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "0.log"), []byte("2026-11-27T08:00:00.000000000Z stdout F hello\n2026-11-27T08:00:01.000000000Z stderr F world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Lock()
	b.LogRoot, b.LogName = root, "0.log"
	b.Unlock()

	code, out, errOut := run(sock, "logs", "web", "--all-containers", "--prefix")
	want := "" +
		"[pod/web/setup] hello\n[pod/web/setup] world\n" +
		"[pod/web/main] hello\n[pod/web/main] world\n" +
		"[pod/web/side] hello\n[pod/web/side] world\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("logs --all-containers --prefix: exit %d, %q, %q; want\n%s", code, out, errOut, want)
	}
	if _, out, _ := run(sock, "logs", "web", "-c", "side", "--prefix", "--tail", "1"); out != "[pod/web/side] world\n" {
		t.Errorf("logs --prefix --tail 1: %q", out)
	}
	if _, out, _ := run(sock, "logs", "web", "-c", "side", "--since-time", "2026-11-27T08:00:01Z"); out != "world\n" {
		t.Errorf("logs --since-time: %q", out)
	}
	if _, out, _ := run(sock, "logs", "web", "-c", "side", "--limit-bytes", "3"); out != "hel" {
		t.Errorf("logs --limit-bytes 3: %q", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--all-containers", "-c", "main"}, "--all-containers=true should not be specified with container name main"},
		{[]string{"--since", "1h", "--since-time", "2026-11-27T08:00:01Z"}, "at most one of `sinceTime` or `sinceSeconds` may be specified"},
		{[]string{"--limit-bytes", "0"}, "--limit-bytes must be greater than 0"},
		{[]string{"--since-time", "yesterday"}, "--since-time"},
	} {
		code, _, errOut := run(sock, append([]string{"logs", "web"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("logs %v: exit %d, %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// Completion asks the running agent: cobra's __complete is what the shell scripts call.
func TestCompletion(t *testing.T) {
	b, sock := fakeAgent(t)
	web := labelledPod("web", nil, "main", "side")
	web.Spec.InitContainers = []corev1.Container{{Name: "setup"}}
	worker := labelledPod("worker", nil, "main")
	other := labelledPod("db", nil, "pg")
	other.Namespace = "data"
	b.SetPods(web, worker, other)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", ""}, "web\nworker\n:4\n"},
		{[]string{"logs", "wo"}, "worker\n:4\n"},
		{[]string{"exec", "-n", "data", ""}, "db\n:4\n"},
		{[]string{"get", "pods", "-A", ""}, "db\nweb\nworker\n:4\n"},
		{[]string{"describe", "pod", "w"}, "web\nworker\n:4\n"},
		{[]string{"logs", "web", "-c", ""}, "setup\nmain\nside\n:4\n"},
		{[]string{"exec", "web", "-c", "s"}, "setup\nside\n:4\n"},
		{[]string{"logs", "-n", ""}, "data\ndefault\n:4\n"},
		{[]string{"logs", "web", ""}, ":4\n"},
	} {
		code, out, errOut := run(sock, append([]string{"__complete"}, tc.args...)...)
		if code != 0 || out != tc.want {
			t.Errorf("__complete %q: exit %d, %q (%s); want %q", tc.args, code, out, errOut, tc.want)
		}
	}
	// Without agentd: nothing, and no error.
	if code, out, _ := run(filepath.Join(t.TempDir(), "none.sock"), "__complete", "logs", ""); code != 0 || out != ":4\n" {
		t.Errorf("__complete without agentd: exit %d, %q", code, out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if code, out, _ := run(sock, "completion", shell); code != 0 || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, no script calling __complete", shell, code)
		}
	}
}
