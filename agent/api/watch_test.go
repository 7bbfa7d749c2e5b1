package api_test

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/api"
)

// watchClient runs the client's Watch in the background and hands over its events one at a time.
type watchClient struct {
	events chan api.WatchEvent
	done   chan error // Watch's result
	cancel context.CancelFunc
}

func startWatch(t *testing.T, ts *testServer) *watchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	w := &watchClient{events: make(chan api.WatchEvent), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- ts.c.Watch(ctx, func(ev api.WatchEvent) error {
			select {
			case w.events <- ev:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	t.Cleanup(cancel)
	return w
}

// next returns the next event; as the stream is ordered, an event the server should not have sent shows up here
// in place of the one expected.
func (w *watchClient) next(t *testing.T, wantType string, want corev1.Pod) {
	t.Helper()
	ev := recv(t, "a "+wantType+" event for "+want.Name, w.events)
	if ev.Type != wantType || !reflect.DeepEqual(ev.Object, want) {
		t.Fatalf("watch event %s %s/%s (phase %s), want %s %s/%s (phase %s)", ev.Type, ev.Object.Namespace, ev.Object.Name,
			ev.Object.Status.Phase, wantType, want.Namespace, want.Name, want.Status.Phase)
	}
}

// TestWatch: the watch starts with ADDED for every pod, then sends what changed each time the backend signals:
// MODIFIED for a pod that changed and nothing for one that did not, ADDED for a new pod, DELETED for one gone.
func TestWatch(t *testing.T) {
	ts := newTestServer(t)
	web, db := pod("default", "web", "uid-web", corev1.PodPending), pod("default", "db", "uid-db", corev1.PodRunning)
	ts.f.SetPods(web, db)
	w := startWatch(t, ts)
	sub := recv(t, "the watch to subscribe", ts.f.Subscribed())
	w.next(t, api.Added, web)
	w.next(t, api.Added, db)

	webRunning := pod("default", "web", "uid-web", corev1.PodRunning)
	ts.f.SetPods(webRunning, db)
	send(t, "a change", sub.C, struct{}{})
	w.next(t, api.Modified, webRunning)

	// A signal with nothing changed sends nothing: the next event is the one of the change after it.
	send(t, "a signal without a change", sub.C, struct{}{})
	cache := pod("default", "cache", "uid-cache", corev1.PodPending)
	ts.f.SetPods(webRunning, db, cache)
	send(t, "a new pod", sub.C, struct{}{})
	w.next(t, api.Added, cache)

	ts.f.SetPods(webRunning, cache)
	send(t, "a deletion", sub.C, struct{}{})
	w.next(t, api.Deleted, db)

	// A pod deleted and created again under its name is another pod (another UID).
	web2 := pod("default", "web", "uid-web-2", corev1.PodPending)
	ts.f.SetPods(web2, cache)
	send(t, "a re-created pod", sub.C, struct{}{})
	w.next(t, api.Added, web2)
	w.next(t, api.Deleted, webRunning)

	// The client going away ends the watch and its subscription.
	w.cancel()
	if err := recv(t, "Watch to return", w.done); err != nil {
		t.Errorf("Watch after its context was cancelled: %v, want nil", err)
	}
	recv(t, "the subscription to be cancelled", sub.Cancelled)
}

// TestWatchEmpty: a watch of no pods answers at once (the client's Watch returns only after the answer's header),
// and a pod that appears later is ADDED.
func TestWatchEmpty(t *testing.T) {
	ts := newTestServer(t)
	w := startWatch(t, ts)
	sub := recv(t, "the watch to subscribe", ts.f.Subscribed())
	web := pod("default", "web", "uid-web", corev1.PodPending)
	ts.f.SetPods(web)
	send(t, "a new pod", sub.C, struct{}{})
	w.next(t, api.Added, web)
}

// TestWatchSubscribesFirst: the server subscribes before it lists the pods, so a change between the two is not
// lost.
func TestWatchSubscribesFirst(t *testing.T) {
	ts := newTestServer(t)
	startWatch(t, ts)
	recv(t, "the watch to subscribe", ts.f.Subscribed())
	var methods []string
	for _, c := range ts.f.Calls() {
		methods = append(methods, c.Method)
	}
	if len(methods) == 0 || methods[0] != "Subscribe" {
		t.Errorf("backend calls %v, want Subscribe first", methods)
	}
}

// TestWatchesAreIndependent: each watch has its own subscription and its own idea of what its client has seen.
func TestWatchesAreIndependent(t *testing.T) {
	ts := newTestServer(t)
	web := pod("default", "web", "uid-web", corev1.PodPending)
	ts.f.SetPods(web)
	w1 := startWatch(t, ts)
	sub1 := recv(t, "the first watch to subscribe", ts.f.Subscribed())
	w1.next(t, api.Added, web)

	webRunning := pod("default", "web", "uid-web", corev1.PodRunning)
	ts.f.SetPods(webRunning)
	send(t, "a change", sub1.C, struct{}{})
	w1.next(t, api.Modified, webRunning)

	w2 := startWatch(t, ts)
	sub2 := recv(t, "the second watch to subscribe", ts.f.Subscribed())
	w2.next(t, api.Added, webRunning)

	w1.cancel()
	recv(t, "the first subscription to be cancelled", sub1.Cancelled)
	select {
	case <-sub2.Cancelled:
		t.Fatal("the second watch's subscription was cancelled with the first")
	default:
	}
	ts.f.SetPods()
	send(t, "a deletion", sub2.C, struct{}{})
	w2.next(t, api.Deleted, webRunning)
}

// TestWatchEndsWhenTheBackendCloses: a backend that closes its channel (it is stopping) ends the watch, which the
// client reports, instead of leaving the server looping on a closed channel.
func TestWatchEndsWhenTheBackendCloses(t *testing.T) {
	ts := newTestServer(t)
	web := pod("default", "web", "uid-web", corev1.PodRunning)
	ts.f.SetPods(web)
	w := startWatch(t, ts)
	sub := recv(t, "the watch to subscribe", ts.f.Subscribed())
	w.next(t, api.Added, web)
	close(sub.C)
	if err := recv(t, "Watch to return", w.done); err == nil || err.Error() != "agentd closed the watch" {
		t.Errorf("Watch after the backend closed its channel: %v, want \"agentd closed the watch\"", err)
	}
	recv(t, "the subscription to be cancelled", sub.Cancelled)
}
