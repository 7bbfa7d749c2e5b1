package probe

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kubelet's probe defaults (spec.SetDefaults applies the same), used for fields
// left at zero.
const (
	defaultPeriod           = 10 * time.Second
	defaultSuccessThreshold = 1
	defaultFailureThreshold = 3
)

// ResetMessage is the message of the onChange call that reports a Worker's result
// going back to its initial value because the container was replaced (Reset).
const ResetMessage = "container restarted"

// Worker runs one probe of one container periodically, as kubelet's probe worker:
//
//   - The result starts as Failure for readiness (not ready), Success for liveness and
//     Unknown for startup (kubelet's initial values; Unknown lets "the startup probe
//     succeeded" be a change like any other).
//   - The first probe runs initialDelaySeconds after the container started, then every
//     periodSeconds. Liveness and readiness do not probe while the container has a
//     startup probe that has not succeeded for this container (see SetStarted); a
//     startup probe stops probing once it succeeded.
//   - The result changes after successThreshold consecutive successes or
//     failureThreshold consecutive failures. Unknown attempts (the probe could not be
//     run) are discarded and do not break a run.
//   - When liveness or startup crosses failureThreshold the caller is expected to
//     restart the container, and the worker stops probing until Reset: probing a
//     container that is being stopped only produces noise.
//
// onChange is called with the new result and the message of the attempt that
// caused it whenever the result changes, and with ResetMessage when Reset puts the
// initial result back; it is called from Run's goroutine only, one call at a time,
// and may call Reset or SetStarted.
//
// Run runs the worker until its context is done; call it once. Reset, SetStarted
// and Result are safe to call from any goroutine, before, during or after Run.
type Worker struct {
	kind    Kind
	spec    *corev1.Probe
	params  params
	clock   Clock
	initial Result
	notify  func(containerID string, r Result, msg string) // called from Run's goroutine only
	// attempted, when set (OnAttempt) before Run, is told every attempt's result
	// (Success, Failure, or Unknown when it could not be run) and message, from
	// Run's goroutine.
	attempted func(r Result, msg string)
	probe     func(context.Context, Kind, *corev1.Probe, Target) (Result, string)
	poke      chan struct{} // one slot: Reset or SetStarted happened; Run re-reads the state

	// waiting, when set by a test before Run, is called each time Run is about to
	// wait, with the time of the next probe (ok false: none until Reset or SetStarted).
	waiting func(next time.Time, ok bool)

	mu     sync.Mutex
	target Target // guarded by mu; Reset changes ContainerID and StartedAt
	gen    uint64 // guarded by mu; counts Resets, so that Run drops what it learnt about the old container
	gated  bool   // guarded by mu; waiting for SetStarted
	result Result // guarded by mu; the thresholded result
}

// NewWorker returns a worker that runs p (one of t.Container's probes, of the given
// kind) against t. p must not be nil, nor changed while the worker lives. A nil
// clock is RealClock; a nil onChange is allowed.
//
// A liveness or readiness worker of a container that has a startup probe does not
// probe until SetStarted is called with the container's ID: NewSet does that when
// the startup probe succeeds; code that builds its own workers must do it itself.
func NewWorker(kind Kind, p *corev1.Probe, t Target, onChange func(Result, string), clock Clock) *Worker {
	return newWorker(kind, p, t, func(_ string, r Result, msg string) {
		if onChange != nil {
			onChange(r, msg)
		}
	}, clock)
}

func newWorker(kind Kind, p *corev1.Probe, t Target, notify func(string, Result, string), clock Clock) *Worker {
	if p == nil {
		panic("probe.NewWorker: nil probe")
	}
	if clock == nil {
		clock = RealClock{}
	}
	w := &Worker{
		kind:    kind,
		spec:    p,
		params:  paramsOf(p),
		clock:   clock,
		initial: initialResult(kind),
		notify:  notify,
		probe:   Probe,
		poke:    make(chan struct{}, 1),
		target:  t,
	}
	w.gated = w.waitsForStartup()
	w.result = w.initial
	return w
}

func initialResult(kind Kind) Result {
	switch kind {
	case Liveness:
		return Success
	case Readiness:
		return Failure
	case Startup:
		return Unknown
	}
	panic("probe: unknown kind " + kind.String())
}

// waitsForStartup reports whether the worker must wait for SetStarted before probing.
func (w *Worker) waitsForStartup() bool {
	return w.kind != Startup && w.target.Container != nil && w.target.Container.StartupProbe != nil
}

// Result returns the current thresholded result.
func (w *Worker) Result() Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.result
}

// OnAttempt has f told the result and message of every attempt, before the
// thresholds apply: Success, Failure, or Unknown for an attempt that could not
// be run (not told when the worker stops or its container was replaced during
// the attempt). Kubelet records an Unhealthy event per failed or errored attempt. Call it before Run; f is called from Run's goroutine and must
// not block for long.
func (w *Worker) OnAttempt(f func(r Result, msg string)) { w.attempted = f }

// Reset tells the worker its container was replaced (restarted) by newContainerID,
// which started now: counters are cleared, the result goes back to its initial value
// (reported through onChange when that is a change), a worker on hold resumes, and
// liveness and readiness wait again for the startup probe. The first probe of the
// new container runs at once, once initialDelaySeconds have passed since it started
// (kubelet probes a restarted container at once rather than a period later). It
// does not block.
func (w *Worker) Reset(newContainerID string) { w.ResetAt(newContainerID, time.Time{}) }

// ResetAt is Reset for a container that started at startedAt (zero: now), from
// which initialDelaySeconds count, as kubelet counts them from the container
// status's startedAt: a restart the caller learns of late is not probed later
// for it.
func (w *Worker) ResetAt(newContainerID string, startedAt time.Time) {
	if startedAt.IsZero() {
		startedAt = w.clock.Now()
	}
	w.mu.Lock()
	w.target.ContainerID = newContainerID
	w.target.StartedAt = startedAt
	w.gen++
	w.gated = w.waitsForStartup()
	w.result = w.initial
	w.mu.Unlock()
	w.wake()
}

// SetStarted tells a liveness or readiness worker that the startup probe of
// containerID succeeded, so it may start probing. It is ignored when containerID is
// not the worker's current container (a late report about a container Reset
// replaced). A Set calls it; call it yourself only for a Worker outside a Set. It
// does not block.
func (w *Worker) SetStarted(containerID string) {
	w.mu.Lock()
	open := w.gated && containerID == w.target.ContainerID
	if open {
		w.gated = false
	}
	w.mu.Unlock()
	if open {
		w.wake()
	}
}

func (w *Worker) wake() {
	select {
	case w.poke <- struct{}{}:
	default: // Run has a wake-up pending already; it reads the latest state
	}
}

// Run probes until ctx is done.
func (w *Worker) Run(ctx context.Context) {
	w.mu.Lock()
	if w.target.StartedAt.IsZero() {
		w.target.StartedAt = w.clock.Now()
	}
	gen := w.gen
	w.mu.Unlock()

	// What Run knows of the current container; Reset invalidates it through gen.
	var (
		reported  = w.initial // the result onChange last reported
		count     counter
		onHold    bool
		lastProbe time.Time
	)
	for ctx.Err() == nil {
		w.mu.Lock()
		if w.gen != gen {
			gen, count, onHold, lastProbe = w.gen, counter{}, false, time.Time{}
		}
		target, result := w.target, w.result
		s := schedule{
			kind:         w.kind,
			gated:        w.gated,
			onHold:       onHold,
			result:       result,
			startedAt:    target.StartedAt,
			lastProbe:    lastProbe,
			initialDelay: w.params.initialDelay,
			period:       w.params.period,
		}
		w.mu.Unlock()
		if result != reported { // Reset put the initial result back
			reported = result
			w.notify(target.ContainerID, result, ResetMessage)
		}

		next, ok := s.next()
		now := w.clock.Now()
		if ok && !now.Before(next) {
			lastProbe = now
			r, msg := w.probe(ctx, w.kind, w.spec, target)
			if r == Unknown {
				// The probe could not be run: not counted, but told (kubelet's
				// "probe errored" event), unless the worker is stopping or the
				// container was replaced meanwhile.
				w.mu.Lock()
				current := w.gen == gen
				w.mu.Unlock()
				if current && ctx.Err() == nil && w.attempted != nil {
					w.attempted(Unknown, msg)
				}
				continue
			}
			w.mu.Lock()
			if w.gen != gen { // the container was replaced while it was probed
				w.mu.Unlock()
				continue
			}
			w.mu.Unlock()
			if w.attempted != nil {
				w.attempted(r, msg)
			}
			w.mu.Lock()
			if w.gen != gen {
				w.mu.Unlock()
				continue
			}
			var crossed bool
			count, crossed = count.observe(r, w.params.successThreshold, w.params.failureThreshold)
			if crossed {
				w.result = r
			}
			w.mu.Unlock()
			if !crossed {
				continue
			}
			if r == Failure && w.kind != Readiness {
				// The caller restarts the container; wait for Reset.
				onHold, count = true, counter{}
			}
			if r != reported {
				reported = r
				w.notify(target.ContainerID, r, msg)
			}
			continue
		}

		var (
			timer Timer
			fire  <-chan time.Time
		)
		if ok {
			timer = w.clock.NewTimer(next.Sub(now))
			fire = timer.C()
		}
		if w.waiting != nil {
			w.waiting(next, ok)
		}
		select {
		case <-ctx.Done():
		case <-fire:
		case <-w.poke:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// params are a probe's timing and thresholds with kubelet's defaults for zeros.
type params struct {
	initialDelay     time.Duration
	period           time.Duration
	successThreshold int
	failureThreshold int
}

func paramsOf(p *corev1.Probe) params {
	out := params{
		initialDelay:     time.Duration(max(p.InitialDelaySeconds, 0)) * time.Second,
		period:           time.Duration(p.PeriodSeconds) * time.Second,
		successThreshold: int(p.SuccessThreshold),
		failureThreshold: int(p.FailureThreshold),
	}
	if out.period <= 0 {
		out.period = defaultPeriod
	}
	if out.successThreshold <= 0 {
		out.successThreshold = defaultSuccessThreshold
	}
	if out.failureThreshold <= 0 {
		out.failureThreshold = defaultFailureThreshold
	}
	return out
}

// schedule is what decides when a worker probes next.
type schedule struct {
	kind         Kind
	gated        bool      // waiting for the startup probe to succeed
	onHold       bool      // liveness or startup crossed failureThreshold: waiting for Reset
	result       Result    // the thresholded result
	startedAt    time.Time // the container's start
	lastProbe    time.Time // the last attempt's start; zero: none since startedAt
	initialDelay time.Duration
	period       time.Duration
}

// next returns when the worker probes next; ok is false when it waits for Reset or
// SetStarted instead. The time may be in the past: probe now.
func (s schedule) next() (at time.Time, ok bool) {
	switch {
	case s.onHold:
		return time.Time{}, false
	case s.kind == Startup && s.result == Success:
		return time.Time{}, false // started: the startup probe's work is done
	case s.kind != Startup && s.gated:
		return time.Time{}, false
	}
	at = s.startedAt.Add(s.initialDelay)
	if !s.lastProbe.IsZero() {
		if p := s.lastProbe.Add(s.period); p.After(at) {
			at = p
		}
	}
	return at, true
}

// counter counts how many attempts in a row gave the same result.
type counter struct {
	last Result
	run  int
}

// observe adds an attempt's result (Success or Failure) and reports whether its
// run reached the threshold, so that the worker's result is now r. Once reached,
// every further equal attempt reports it again, as kubelet sets its result again.
func (c counter) observe(r Result, successThreshold, failureThreshold int) (counter, bool) {
	if r == c.last {
		c.run++
	} else {
		c.last, c.run = r, 1
	}
	switch r {
	case Success:
		return c, c.run >= successThreshold
	case Failure:
		return c, c.run >= failureThreshold
	}
	return c, false
}
