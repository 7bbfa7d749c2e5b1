package agent

import (
	"context"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

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

// A sync's context ends when a kill of its pod is asked for, or at Shutdown
// (a pull then stops); a kill's own sync is never cancelled, nor is another pod's.
func TestPodWorkersCancelTheRunningSync(t *testing.T) {
	ctxs := make(chan context.Context, 4)
	release := make(chan struct{})
	w := newPodWorkers(context.Background(), func(ctx context.Context, _ types.UID, _ podUpdate) bool {
		ctxs <- ctx
		<-release
		return false
	})
	w.UpdatePod("a", podUpdate{})
	w.UpdatePod("b", podUpdate{})
	a, b := <-ctxs, <-ctxs
	w.UpdatePod("a", podUpdate{kill: true})
	w.UpdatePod("b", podUpdate{})
	// Which of the two is a's is not known; exactly one is cancelled.
	select {
	case <-a.Done():
	case <-b.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("a kill did not cancel the running sync")
	}
	if a.Err() != nil && b.Err() != nil {
		t.Fatal("a kill of one pod cancelled another's sync")
	}
	release <- struct{}{}
	release <- struct{}{}
	kill, next := <-ctxs, <-ctxs // a's kill and b's next sync, in some order
	w.CancelSync("a")
	w.CancelSync("b")
	if kill.Err() != nil && next.Err() != nil {
		t.Fatal("a kill's sync was cancelled")
	}
	done := make(chan struct{})
	go func() { w.Shutdown(); close(done) }()
	release <- struct{}{}
	release <- struct{}{}
	<-done
}

func TestPodWorkersShutdownCancels(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	w := newPodWorkers(context.Background(), func(ctx context.Context, _ types.UID, _ podUpdate) bool {
		ctxs <- ctx
		<-ctx.Done() // a pull that would never end by itself
		return false
	})
	w.UpdatePod("a", podUpdate{})
	<-ctxs
	done := make(chan struct{})
	go func() { w.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not cancel the running sync")
	}
}
