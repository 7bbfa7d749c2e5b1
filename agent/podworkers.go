package agent

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// podUpdate is work asked of a pod's worker. The zero value asks it to bring
// the pod one step closer to its desired state (sync); kill asks it to stop the
// pod and remove it.
type podUpdate struct {
	kill   bool
	reason string // kill: why, for the log
}

// syncFunc does one piece of a pod's work. It returns true when it took a step
// that may be followed by another (a sandbox created, a container started): the
// worker then syncs the pod again.
type syncFunc func(ctx context.Context, uid types.UID, u podUpdate) (again bool)

// podWorkers runs each pod's work on a goroutine of its own (kubelet's pod
// workers): one pod's work never waits for another's, and the work on one pod
// is serialised. While a pod's worker is busy, only its latest undelivered
// update is kept; a kill, once asked, is never replaced by a sync. A worker's
// goroutine ends when its pod has nothing left to do.
//
// UpdatePod and Shutdown are safe for concurrent use. The sync function runs on
// the workers' goroutines, with a context derived from the one given to
// newPodWorkers that ends when a kill of the pod is asked for while the sync
// runs (a kill's own sync is never cancelled), or at Shutdown: as kubelet's
// pod workers cancel a sync on kill, so a long image pull stops with its pod.
// Work that must not stop midway (a container's start) runs on
// context.WithoutCancel.
type podWorkers struct {
	ctx  context.Context
	sync syncFunc

	mu      sync.Mutex // guards pods and stopped
	pods    map[types.UID]*podWorker
	stopped bool
	wg      sync.WaitGroup // running workers
}

// podWorker is the state of one pod's worker; guarded by podWorkers.mu.
type podWorker struct {
	pending *podUpdate // the latest update not delivered yet
	// cancel ends the context of the sync running now; nil when none runs
	// or when the running sync is a kill.
	cancel context.CancelFunc
}

func newPodWorkers(ctx context.Context, sync syncFunc) *podWorkers {
	return &podWorkers{ctx: ctx, sync: sync, pods: map[types.UID]*podWorker{}}
}

// UpdatePod asks for work on a pod. It never blocks: the work runs on the pod's
// worker, started if the pod has none. After Shutdown it does nothing.
func (p *podWorkers) UpdatePod(uid types.UID, u podUpdate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	w := p.pods[uid]
	if w == nil {
		w = &podWorker{}
		p.pods[uid] = w
		p.wg.Add(1)
		go p.run(uid, w)
	}
	if u.kill || w.pending == nil || !w.pending.kill {
		w.pending = &u
	}
	if u.kill && w.cancel != nil {
		w.cancel()
	}
}

// CancelSync ends the context of the sync running for a pod, unless that is a
// kill: the pod is to be removed, so a pull for it is pointless.
func (p *podWorkers) CancelSync(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.pods[uid]; w != nil && w.cancel != nil {
		w.cancel()
	}
}

// Working says whether a pod has a worker (busy, or with work pending).
func (p *podWorkers) Working(uid types.UID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[uid] != nil
}

// Shutdown drops every update not delivered yet and waits for the work in
// progress; no work starts after it.
func (p *podWorkers) Shutdown() {
	p.mu.Lock()
	p.stopped = true
	for _, w := range p.pods {
		w.pending = nil
		if w.cancel != nil {
			w.cancel()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *podWorkers) run(uid types.UID, w *podWorker) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		u := w.pending
		w.pending = nil
		if u == nil {
			delete(p.pods, uid)
			p.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(p.ctx)
		if !u.kill {
			w.cancel = cancel
		}
		p.mu.Unlock()
		again := p.sync(ctx, uid, *u)
		p.mu.Lock()
		w.cancel = nil
		p.mu.Unlock()
		cancel()
		if again {
			p.mu.Lock()
			if w.pending == nil && !p.stopped {
				w.pending = &podUpdate{}
			}
			p.mu.Unlock()
		}
	}
}
