package state

import (
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
