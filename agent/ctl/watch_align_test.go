package ctl

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// columnStarts returns where each of the header's columns starts.
func columnStarts(t *testing.T, header string, columns []string) []int {
	t.Helper()
	var starts []int
	from := 0
	for _, c := range columns {
		i := strings.Index(header[from:], c)
		if i < 0 {
			t.Fatalf("header %q lacks %q", header, c)
		}
		starts = append(starts, from+i)
		from += i + len(c)
	}
	return starts
}

// assertAligned checks that every line's cells start where the header's columns
// do (cells here have no spaces, but for the last column's).
func assertAligned(t *testing.T, out string, columns []string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	starts := columnStarts(t, lines[0], columns)
	for _, l := range lines[1:] {
		for i, s := range starts {
			if len(l) <= s || l[s] == ' ' || (s > 0 && l[s-1] != ' ') {
				t.Errorf("column %s does not start at %d in row %q; output:\n%s", columns[i], s, l, out)
				break
			}
		}
	}
}

// watchOutput runs `agentctl args...` until stop returns, and returns its output.
func watchOutput(t *testing.T, args []string, until func(out string) bool, steps ...func()) string {
	t.Helper()
	var out testutil.SyncBuffer
	var errOut bytes.Buffer
	cmd := NewCommand(&out, &errOut)
	cmd.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}()
	wait := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond(out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; output:\n%s", what, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait("the listing", func(s string) bool { return strings.Count(s, "\n") >= 2 })
	for _, step := range steps {
		step()
	}
	wait("the watch's rows", until)
	return out.String()
}

// `get events -w` rows keep the header's column widths (kubectl's tabwriter
// remembers them across flushes), although each row alone is narrower.
func TestGetEventsWatchAligned(t *testing.T) {
	old := eventsPollInterval
	eventsPollInterval = 10 * time.Millisecond
	defer func() { eventsPollInterval = old }()
	b, sock := fakeAgent(t)
	ev := func(name, typ, reason, pod string) corev1.Event {
		return corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: "default"},
			Type:           typ, Reason: reason, Message: reason + " it", Count: 1,
			LastTimestamp: metav1.Now(),
		}
	}
	b.Lock()
	b.EventList = []corev1.Event{ev("e.1", "Warning", "FailedPostStartHook", "a-long-pod-name"), ev("e.2", "Normal", "Pulled", "web")}
	b.Unlock()
	out := watchOutput(t, []string{"get", "events", "-w", "--socket", sock},
		func(s string) bool { return strings.Contains(s, "Started it") && strings.Contains(s, "Killing it") },
		func() {
			b.Lock()
			b.EventList = append(b.EventList, ev("e.3", "Normal", "Started", "db"))
			b.Unlock()
		},
		func() {
			b.Lock()
			b.EventList = append(b.EventList, ev("e.4", "Normal", "Killing", "x"))
			b.Unlock()
		})
	if n := strings.Count(out, "\n"); n != 5 {
		t.Fatalf("want a header and 4 rows:\n%s", out)
	}
	assertAligned(t, out, []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"})
}

// `get pods -w` rows keep the header's column widths too.
func TestGetPodsWatchAligned(t *testing.T) {
	b, sock := fakeAgent(t)
	creating := func(name string) corev1.Pod {
		p := labelledPod(name, nil, "main")
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
		return p
	}
	running := func(p corev1.Pod) corev1.Pod {
		p = *p.DeepCopy()
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		return p
	}
	long, short := creating("a-long-pod-name"), creating("db")
	b.SetPods(long, short)
	out := watchOutput(t, []string{"get", "pods", "-w", "--socket", sock},
		func(s string) bool { return strings.Count(s, "Running") >= 2 },
		func() {
			s := <-b.Subscribed()
			b.SetPods(long, running(short))
			s.C <- struct{}{}
			b.SetPods(running(long), running(short))
			s.C <- struct{}{}
		})
	assertAligned(t, out, []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"})
}
