package probe

import (
	"context"
	"sync"
	"time"
)

// Set runs the probes of one container: one Worker per probe its spec sets, with
// liveness and readiness held back until the startup probe has succeeded for the
// current container, as kubelet does.
//
// onChange receives each worker's changes (see Worker) with the probe's kind. It is
// called from the workers' goroutines: one call at a time per kind, possibly
// concurrently across kinds. It may call Reset.
//
// Run runs the workers until its context is done; call it once. Reset, Started and
// Ready are safe to call from any goroutine.
type Set struct {
	startup, liveness, readiness *Worker // nil when the container has no such probe
}

// NewSet returns the probe workers of t.Container (none when it is nil or sets no
// probe). A nil clock is RealClock.
func NewSet(t Target, onChange func(Kind, Result, string), clock Clock) *Set {
	s := &Set{}
	c := t.Container
	if c == nil {
		return s
	}
	report := func(kind Kind) func(string, Result, string) {
		return func(_ string, r Result, msg string) {
			if onChange != nil {
				onChange(kind, r, msg)
			}
		}
	}
	if c.LivenessProbe != nil {
		s.liveness = newWorker(Liveness, c.LivenessProbe, t, report(Liveness), clock)
	}
	if c.ReadinessProbe != nil {
		s.readiness = newWorker(Readiness, c.ReadinessProbe, t, report(Readiness), clock)
	}
	if c.StartupProbe != nil {
		reportStartup := report(Startup)
		s.startup = newWorker(Startup, c.StartupProbe, t, func(id string, r Result, msg string) {
			if r == Success {
				// id is the container the successful attempt ran against; a worker
				// already Reset to a newer one ignores it.
				for _, w := range []*Worker{s.liveness, s.readiness} {
					if w != nil {
						w.SetStarted(id)
					}
				}
			}
			reportStartup(id, r, msg)
		}, clock)
	}
	return s
}

// Worker returns the worker of one kind, or nil when the container has no such probe.
func (s *Set) Worker(kind Kind) *Worker {
	switch kind {
	case Liveness:
		return s.liveness
	case Readiness:
		return s.readiness
	case Startup:
		return s.startup
	}
	return nil
}

func (s *Set) workers() []*Worker {
	var out []*Worker
	for _, w := range []*Worker{s.startup, s.liveness, s.readiness} {
		if w != nil {
			out = append(out, w)
		}
	}
	return out
}

// OnAttempt has f told every attempt of every probe (see Worker.OnAttempt). Call
// it before Run; f may be called concurrently across kinds.
func (s *Set) OnAttempt(f func(kind Kind, r Result, msg string)) {
	for _, w := range s.workers() {
		w.OnAttempt(func(r Result, msg string) { f(w.kind, r, msg) })
	}
}

// Run runs the workers until ctx is done and they have returned.
func (s *Set) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range s.workers() {
		wg.Go(func() { w.Run(ctx) })
	}
	<-ctx.Done()
	wg.Wait()
}

// Reset tells every worker that the container was replaced by newContainerID (see
// Worker.Reset). Call it on every restart of the container, whoever restarted it.
func (s *Set) Reset(newContainerID string) { s.ResetAt(newContainerID, time.Time{}) }

// ResetAt is Reset for a container that started at startedAt (see Worker.ResetAt).
func (s *Set) ResetAt(newContainerID string, startedAt time.Time) {
	for _, w := range s.workers() {
		w.ResetAt(newContainerID, startedAt)
	}
}

// Started reports the container status's started field: true once the startup
// probe has succeeded, or at once without a startup probe.
func (s *Set) Started() bool {
	return s.startup == nil || s.startup.Result() == Success
}

// Ready reports the ready field of a running container's status: started, and the readiness
// probe succeeded (or there is none).
func (s *Set) Ready() bool {
	return s.Started() && (s.readiness == nil || s.readiness.Result() == Success)
}
