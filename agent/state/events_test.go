package state

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRecorderRepeatsAndBound(t *testing.T) {
	r := NewRecorder("node1", 3)
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"}}
	r.Event(PodObject(pod, "app"), Warning, "BackOff", "back-off restarting")
	clock = clock.Add(time.Minute)
	r.Event(PodObject(pod, "app"), Warning, "BackOff", "back-off restarting")
	evs := r.List("")
	if len(evs) != 1 || evs[0].Count != 2 || !evs[0].LastTimestamp.Time.Equal(clock) || evs[0].FirstTimestamp.Time.Equal(clock) {
		t.Fatalf("repeat not folded: %+v", evs)
	}
	if evs[0].InvolvedObject.FieldPath != "spec.containers{app}" || evs[0].Source.Host != "node1" {
		t.Errorf("object/source: %+v %+v", evs[0].InvolvedObject, evs[0].Source)
	}
	for _, reason := range []string{"A", "B", "C"} {
		clock = clock.Add(time.Second)
		r.Event(PodObject(pod, ""), Normal, reason, "x")
	}
	evs = r.List("")
	if len(evs) != 3 || evs[0].Reason != "A" {
		t.Errorf("bound: %d events, first %s", len(evs), evs[0].Reason)
	}
	// The dropped event's key is forgotten: recording it again adds a new event.
	r.Event(PodObject(pod, "app"), Warning, "BackOff", "back-off restarting")
	if evs = r.List("u1"); evs[len(evs)-1].Count != 1 {
		t.Errorf("a dropped event came back with count %d", evs[len(evs)-1].Count)
	}
	if len(r.List("other")) != 0 {
		t.Error("filter by uid")
	}
}

// Repeats fold into one event with a count, as kubelet's event correlator: five
// failed attempts of a probe with the same output are one Unhealthy event "x5".
func TestRecorderCountsRepeats(t *testing.T) {
	r := NewRecorder("node1", 100)
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"}}
	first := clock
	for range 5 {
		r.Event(PodObject(pod, "app"), Warning, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500")
		clock = clock.Add(5 * time.Second)
	}
	evs := r.List("u1")
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.Count != 5 || !e.FirstTimestamp.Time.Equal(first) || !e.LastTimestamp.Time.Equal(first.Add(20*time.Second)) {
		t.Errorf("count %d first %v last %v, want 5 over 20s", e.Count, e.FirstTimestamp, e.LastTimestamp)
	}
}

// Events of one object and reason with differing messages stay apart up to 10
// distinct messages in 10 minutes; then they fold into one "(combined from similar
// events)" event, which counts the further ones and carries the latest message.
// After 10 quiet minutes the count of distinct messages starts again.
func TestRecorderAggregatesSimilarEvents(t *testing.T) {
	r := NewRecorder("node1", 100)
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"}}
	msg := func(i int) string { return fmt.Sprintf("Liveness probe failed: attempt %d", i) }
	pod.Spec.Containers = []corev1.Container{{Name: "app"}, {Name: "side"}}
	for i := 1; i <= AggregateMaxEvents-1; i++ {
		c := "app"
		if i%2 == 0 {
			c = "side" // the containers of a pod aggregate together, as client-go's
		}
		r.Event(PodObject(pod, c), Warning, "Unhealthy", msg(i))
		clock = clock.Add(time.Second)
	}
	// Another reason is another aggregate.
	r.Event(PodObject(pod, "app"), Normal, "Killing", "Stopping container app")
	if n := len(r.List("u1")); n != AggregateMaxEvents {
		t.Fatalf("%d events before aggregation, want %d", n, AggregateMaxEvents)
	}
	r.Event(PodObject(pod, "app"), Warning, "Unhealthy", msg(10))
	clock = clock.Add(time.Second)
	r.Event(PodObject(pod, "app"), Warning, "Unhealthy", msg(11))
	evs := r.List("u1")
	if len(evs) != AggregateMaxEvents+1 {
		t.Fatalf("%d events, want %d", len(evs), AggregateMaxEvents+1)
	}
	last := evs[len(evs)-1]
	if last.Message != "(combined from similar events): "+msg(11) || last.Count != 2 {
		t.Errorf("combined event: %q x%d", last.Message, last.Count)
	}
	// A repeat of a message seen before the fold also folds into it.
	r.Event(PodObject(pod, "app"), Warning, "Unhealthy", msg(1))
	if evs = r.List("u1"); len(evs) != AggregateMaxEvents+1 || evs[len(evs)-1].Count != 3 {
		t.Errorf("after a repeat: %d events, last x%d", len(evs), evs[len(evs)-1].Count)
	}

	clock = clock.Add(AggregateInterval + time.Second)
	r.Event(PodObject(pod, "app"), Warning, "Unhealthy", msg(12))
	if evs = r.List("u1"); evs[len(evs)-1].Message != msg(12) || evs[len(evs)-1].Count != 1 {
		t.Errorf("after a quiet interval: %q x%d, want a new event of its own", evs[len(evs)-1].Message, evs[len(evs)-1].Count)
	}
}
