package agent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/ctl/printers"
)

// While a changed manifest's old pod terminates, its new pod (same name, new
// UID) waits: `get pods` shows one row for the name, the old pod Terminating,
// and a pod that has not started has the age of its own manifest, not agentd's.
func TestListPodsOneRowPerName(t *testing.T) {
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // agentd's start
	now := started.Add(time.Hour)
	mk := func(name string, uid types.UID) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid}}
		p.Spec.Containers = []corev1.Container{{Name: "app", Image: "busybox"}}
		return p
	}
	oldWeb := *mk("web", "old")
	oldWeb.CreationTimestamp = metav1.NewTime(started.Add(time.Minute))
	deleted := metav1.NewTime(now.Add(-5 * time.Second))
	oldWeb.DeletionTimestamp = &deleted
	oldWeb.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}

	newWeb, db := mk("web", "new"), mk("db", "db1")
	since := map[types.UID]time.Time{"new": now.Add(-10 * time.Second), "db1": now.Add(-30 * time.Second)}

	rows := func(pods []corev1.Pod) [][]string {
		var out [][]string
		for i := range pods {
			out = append(out, printers.PodRow(&pods[i], false, now))
		}
		return out
	}
	got := rows(listPods([]corev1.Pod{oldWeb}, []*corev1.Pod{newWeb, db}, since, started))
	want := [][]string{
		{"db", "0/1", "Pending", "0", "30s"},
		{"web", "1/1", "Terminating", "0", "59m"},
	}
	if !equalRows(got, want) {
		t.Errorf("while the old copy terminates:\n got %q\nwant %q", got, want)
	}

	// The old copy gone, the new one is listed, with its own age.
	got = rows(listPods(nil, []*corev1.Pod{newWeb, db}, since, started))
	want = [][]string{
		{"db", "0/1", "Pending", "0", "30s"},
		{"web", "0/1", "Pending", "0", "10s"},
	}
	if !equalRows(got, want) {
		t.Errorf("after the old copy:\n got %q\nwant %q", got, want)
	}

	// Unknown first sight (cannot happen once noteDesired ran): agentd's start.
	got = rows(listPods(nil, []*corev1.Pod{db}, nil, started))
	if got[0][4] != "60m" {
		t.Errorf("AGE %q, want agentd's 60m", got[0][4])
	}
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

func TestNoteDesiredKeepsFirstSight(t *testing.T) {
	a := &Agent{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p1 := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "1"}}
	p2 := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "b", UID: "2"}}
	a.desired = []*corev1.Pod{p1}
	a.noteDesired(t0)
	a.desired = []*corev1.Pod{p1}
	a.clusterDesired = []*corev1.Pod{p2}
	a.noteDesired(t0.Add(time.Minute))
	if !a.desiredSince["1"].Equal(t0) || !a.desiredSince["2"].Equal(t0.Add(time.Minute)) {
		t.Errorf("since: %v", a.desiredSince)
	}
	a.desired = nil
	a.noteDesired(t0.Add(2 * time.Minute))
	if _, ok := a.desiredSince["1"]; ok || len(a.desiredSince) != 1 {
		t.Errorf("a pod no longer desired is remembered: %v", a.desiredSince)
	}
}
