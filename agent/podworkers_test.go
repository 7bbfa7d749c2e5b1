package agent

import (
	"context"
	goruntime "runtime"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// gatedSync is a syncFunc that blocks until released, and records what it got.
type gatedSync struct {
	mu      sync.Mutex
	got     map[types.UID][]podUpdate
	running chan types.UID
	release chan bool // the value is what the sync returns (again)
}

func newGatedSync() *gatedSync {
	return &gatedSync{got: map[types.UID][]podUpdate{}, running: make(chan types.UID, 16), release: make(chan bool)}
}

func (g *gatedSync) sync(_ context.Context, uid types.UID, u podUpdate) bool {
	g.mu.Lock()
	g.got[uid] = append(g.got[uid], u)
	g.mu.Unlock()
	g.running <- uid
	return <-g.release
}

func (g *gatedSync) updates(uid types.UID) []podUpdate {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]podUpdate(nil), g.got[uid]...)
}

func TestPodWorkersKeepTheLatestUpdate(t *testing.T) {
	g := newGatedSync()
	w := newPodWorkers(context.Background(), g.sync)
	w.UpdatePod("a", podUpdate{})
	<-g.running // busy with the first sync
	w.UpdatePod("a", podUpdate{})
	w.UpdatePod("a", podUpdate{kill: true, reason: "one"})
	w.UpdatePod("a", podUpdate{})                          // a kill is never replaced by a sync …
	w.UpdatePod("a", podUpdate{kill: true, reason: "two"}) // … but by a later kill
	// Another pod's work does not wait for a's.
	w.UpdatePod("b", podUpdate{})
	if uid := <-g.running; uid != "b" {
		t.Fatalf("got %s, want b's sync while a's runs", uid)
	}
	g.release <- false // b
	g.release <- false // a's first
	if uid := <-g.running; uid != "a" {
		t.Fatalf("got %s", uid)
	}
	g.release <- false
	w.Shutdown()
	got := g.updates("a")
	if len(got) != 2 || got[0].kill || !got[1].kill || got[1].reason != "two" {
		t.Fatalf("a's updates: %+v, want a sync, then the latest kill only", got)
	}
	if w.Working("a") || w.Working("b") {
		t.Fatal("workers with nothing to do must end")
	}
}

func TestPodWorkersSyncAgainAfterProgress(t *testing.T) {
	g := newGatedSync()
	w := newPodWorkers(context.Background(), g.sync)
	w.UpdatePod("a", podUpdate{})
	<-g.running
	g.release <- true // progressed: the worker syncs again by itself
	<-g.running
	g.release <- false
	w.Shutdown()
	if got := len(g.updates("a")); got != 2 {
		t.Fatalf("%d syncs, want 2", got)
	}
}

func TestPodWorkersShutdownDropsPendingWork(t *testing.T) {
	g := newGatedSync()
	w := newPodWorkers(context.Background(), g.sync)
	w.UpdatePod("a", podUpdate{})
	<-g.running
	w.UpdatePod("a", podUpdate{}) // pending
	done := make(chan struct{})
	go func() { w.Shutdown(); close(done) }()
	for !w.isStopped() {
		goruntime.Gosched()
	}
	// Shutdown waits for the sync under way; the pending one never runs, and
	// neither does a sync the running one asks for.
	g.release <- true
	<-done
	w.UpdatePod("a", podUpdate{})
	if got := len(g.updates("a")); got != 1 {
		t.Fatalf("%d syncs, want only the one under way at shutdown", got)
	}
}

func (p *podWorkers) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}
