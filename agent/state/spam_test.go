package state

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// count is the number of events of reason recorded, repeats included.
func count(r *Recorder, reason string) int {
	n := 0
	for _, e := range r.List("") {
		if e.Reason == reason {
			n += int(e.Count)
		}
	}
	return n
}

// The spam filter is client-go's: per source, object and type, 25 events, then
// one per 5 minutes; other objects, and other types of the same object, have
// budgets of their own; repeats of one event spend it as new events do.
func TestRecorderSpamFilter(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Unix(1000, 0))
	r := NewRecorderWithOptions("node1", 1000, RecorderOptions{SpamFilter: true, Clock: clock})
	web := PodObject(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"}}, "app")
	db := PodObject(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default", UID: "u2"}}, "app")

	for i := range 30 {
		r.Eventf(web, Warning, "Unhealthy", "Readiness probe failed: attempt %d", i%3)
	}
	if got := count(r, "Unhealthy"); got != SpamBurst {
		t.Fatalf("30 Warnings of one pod at once: %d recorded, want the burst of %d", got, SpamBurst)
	}
	// The same object's Normal events and another pod's Warnings are not held back.
	r.Event(web, Normal, "Started", "Started container app")
	r.Event(db, Warning, "BackOff", "Back-off restarting failed container app")
	if count(r, "Started") != 1 || count(r, "BackOff") != 1 {
		t.Fatalf("events of another type or object were dropped: %v", r.List(""))
	}
	// Another reason of the same object and type shares the budget (client-go's
	// key has no reason), and so does another container of the pod.
	r.Event(PodObject(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"}}, "sidecar"), Warning, "Failed", "Error: boom")
	if got := count(r, "Failed"); got != 0 {
		t.Fatalf("a Warning of the same pod past its budget was recorded")
	}

	// One token every 5 minutes.
	clock.Step(5*time.Minute - time.Second)
	r.Event(web, Warning, "Unhealthy", "Readiness probe failed: late")
	if got := count(r, "Unhealthy"); got != SpamBurst {
		t.Fatalf("%d recorded before the 5 minutes are up, want %d", got, SpamBurst)
	}
	clock.Step(time.Second)
	r.Event(web, Warning, "Unhealthy", "Readiness probe failed: late")
	r.Event(web, Warning, "Unhealthy", "Readiness probe failed: later")
	if got := count(r, "Unhealthy"); got != SpamBurst+1 {
		t.Fatalf("%d recorded 5 minutes on, want one more: %d", got, SpamBurst+1)
	}
}

// The node's events have one budget per type, whatever the file they are about,
// as kubelet's events about its node; the recorder without the filter keeps all.
func TestRecorderSpamFilterNode(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Unix(1000, 0))
	node := Object{Kind: "Node", Name: "node1", UID: "node1"}
	filtered := NewRecorderWithOptions("node1", 1000, RecorderOptions{SpamFilter: true, Clock: clock})
	plain := NewRecorder("node1", 1000)
	for i := range 40 {
		for _, r := range []*Recorder{filtered, plain} {
			r.Eventf(node, Warning, "InvalidManifest", "/etc/agent/manifests/bad%d.yaml: spec.containers: Required value", i)
		}
	}
	if got := count(filtered, "InvalidManifest"); got != SpamBurst {
		t.Errorf("filtered: %d InvalidManifest events, want %d", got, SpamBurst)
	}
	if got := count(plain, "InvalidManifest"); got != 40 {
		t.Errorf("without the filter: %d InvalidManifest events, want 40", got)
	}
}

// The buckets live in a bounded cache: the least recently used key is forgotten
// (and starts with a full bucket again), as client-go's.
func TestRecorderSpamFilterCacheBound(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Unix(1000, 0))
	f := newSpamFilter(clock)
	for range SpamBurst {
		f.allow("first")
	}
	if f.allow("first") {
		t.Fatal("the 26th event of a key was allowed")
	}
	for i := range SpamCacheSize {
		f.allow(fmt.Sprintf("other-%d", i))
	}
	if f.cache.Len() != SpamCacheSize {
		t.Fatalf("cache holds %d keys, want at most %d", f.cache.Len(), SpamCacheSize)
	}
	if !f.allow("first") {
		t.Error("a key evicted from the cache is still limited")
	}
}
