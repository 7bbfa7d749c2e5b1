package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// guard bounds how long a test waits for the worker before it reports it stuck. It
// is never what a test synchronises on: that is the fake clock and the channels.
const guard = 30 * time.Second

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// execReply is what the test answers to one Exec call.
type execReply struct {
	code int
	out  string
	err  error
}

// execCall is one Exec call the fake received; the worker waits in Exec until the
// test replies.
type execCall struct {
	containerID string
	cmd         []string
	at          time.Time // the fake clock's time when the probe ran
	reply       chan execReply
}

// fakeExecer hands every Exec call to the test, on a channel per command name
// (cmd[0]), and records when it came by the fake clock.
type fakeExecer struct {
	clock *FakeClock
	mu    sync.Mutex
	calls map[string]chan execCall // guarded by mu
}

func (f *fakeExecer) ch(name string) chan execCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]chan execCall{}
	}
	if f.calls[name] == nil {
		f.calls[name] = make(chan execCall)
	}
	return f.calls[name]
}

func (f *fakeExecer) Exec(ctx context.Context, id string, cmd []string, stdout, _ io.Writer) (int, error) {
	call := execCall{containerID: id, cmd: cmd, at: f.clock.Now(), reply: make(chan execReply, 1)}
	select {
	case f.ch(cmd[0]) <- call:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	select {
	case r := <-call.reply:
		io.WriteString(stdout, r.out)
		return r.code, r.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

type change struct {
	kind   Kind
	result Result
	msg    string
}

func (c change) String() string { return fmt.Sprintf("(%v, %v, %q)", c.kind, c.result, c.msg) }

// wait is what a worker told the test when it was about to wait.
type wait struct {
	next time.Time
	ok   bool
}

// rig runs workers against a fake clock and a fake Execer, in lockstep with the
// test: a worker blocks in Exec until the test replies, and blocks before each wait
// until the test has read it, so after reading a wait every onChange call before it
// is in changes.
type rig struct {
	t       *testing.T
	ctx     context.Context
	cancel  context.CancelFunc
	clock   *FakeClock
	exec    *fakeExecer
	changes chan change
	waits   map[Kind]chan wait
}

func newRig(t *testing.T) *rig {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	clock := NewFakeClock(t0)
	return &rig{
		t: t, ctx: ctx, cancel: cancel, clock: clock,
		exec:    &fakeExecer{clock: clock},
		changes: make(chan change, 100),
		waits:   map[Kind]chan wait{},
	}
}

func (r *rig) target(c *corev1.Container) Target {
	return Target{ContainerID: "c1", Container: c, Exec: r.exec}
}

func (r *rig) onChange(kind Kind) func(Result, string) {
	return func(res Result, msg string) { r.changes <- change{kind, res, msg} }
}

func (r *rig) onSetChange(kind Kind, res Result, msg string) { r.changes <- change{kind, res, msg} }

// hook makes w report its waits to the test; call it before w runs.
func (r *rig) hook(w *Worker, kind Kind) {
	ch := make(chan wait)
	r.waits[kind] = ch
	w.waiting = func(next time.Time, ok bool) {
		select {
		case ch <- wait{next, ok}:
		case <-r.ctx.Done():
		}
	}
}

// run runs fn(ctx) in a goroutine; the test's cleanup cancels it and checks it
// returned. The rig's context is the one fn runs with: canceling it also releases a
// worker blocked in a probe or in reporting a wait.
func (r *rig) run(fn func(context.Context)) (cancel func(), done <-chan struct{}) {
	d := make(chan struct{})
	go func() {
		defer close(d)
		fn(r.ctx)
	}()
	r.t.Cleanup(func() {
		r.cancel()
		select {
		case <-d:
		case <-time.After(guard):
			r.t.Error("Run did not return after its context was canceled")
		}
	})
	return r.cancel, d
}

func (r *rig) wait(kind Kind) wait {
	r.t.Helper()
	select {
	case w := <-r.waits[kind]:
		return w
	case <-time.After(guard):
		r.t.Fatalf("the %s worker never waited (stuck in a probe?)", kind)
	}
	return wait{}
}

func (r *rig) call(name string) execCall {
	r.t.Helper()
	select {
	case c := <-r.exec.ch(name):
		return c
	case <-time.After(guard):
		r.t.Fatalf("no %q probe ran", name)
	}
	return execCall{}
}

// answer waits for the next probe running name and replies with code (and an
// output naming it); code -1 is an error of the runtime.
func (r *rig) answer(name string, code int) execCall {
	r.t.Helper()
	c := r.call(name)
	switch code {
	case -1:
		c.reply <- execReply{code: -1, err: errors.New("runtime: container is gone")}
	case 0:
		c.reply <- execReply{out: "ok"}
	default:
		c.reply <- execReply{code: code, out: "boom"}
	}
	return c
}

// changed returns the onChange calls made so far.
func (r *rig) changed() []change {
	var out []change
	for {
		select {
		case c := <-r.changes:
			out = append(out, c)
		default:
			return out
		}
	}
}

// stepTo moves the fake clock to at.
func (r *rig) stepTo(at time.Time) { r.clock.Step(at.Sub(r.clock.Now())) }

func execProbe(name string, initialDelay, period, success, failure int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{name}}},
		InitialDelaySeconds: initialDelay,
		PeriodSeconds:       period,
		SuccessThreshold:    success,
		FailureThreshold:    failure,
		// Far beyond any test: a probe ends when the test replies.
		TimeoutSeconds: 3600,
	}
}

// step is one probe attempt of a script and what the worker reports after it.
type step struct {
	code int    // exit code; -1: the runtime could not exec
	want Result // the onChange call it causes; Unknown: none
}

// play runs a script on a worker that waits (w) for its next probe, which is due at
// first, then every period; it returns the worker's wait after the last step.
func (r *rig) play(kind Kind, name string, w wait, first time.Time, period time.Duration, script []step) wait {
	r.t.Helper()
	for i, s := range script {
		want := first.Add(time.Duration(i) * period)
		if !w.ok || !w.next.Equal(want) {
			r.t.Fatalf("attempt %d: the worker waits for %v (ok %v), want a probe at t0+%v", i+1, w.next, w.ok, want.Sub(t0))
		}
		r.stepTo(w.next)
		if c := r.answer(name, s.code); !c.at.Equal(want) {
			r.t.Fatalf("attempt %d ran at t0+%v, want t0+%v", i+1, c.at.Sub(t0), want.Sub(t0))
		}
		w = r.wait(kind)
		got := r.changed()
		switch {
		case s.want == Unknown && len(got) != 0:
			r.t.Fatalf("attempt %d (exit %d): onChange%v, want no change", i+1, s.code, got)
		case s.want != Unknown && (len(got) != 1 || got[0].result != s.want):
			r.t.Fatalf("attempt %d (exit %d): onChange%v, want one change to %v", i+1, s.code, got, s.want)
		}
	}
	return w
}

func TestReadinessThresholds(t *testing.T) {
	r := newRig(t)
	w := NewWorker(Readiness, execProbe("check", 5, 10, 2, 3), r.target(&corev1.Container{Name: "app"}), r.onChange(Readiness), r.clock)
	r.hook(w, Readiness)
	if got := w.Result(); got != Failure {
		t.Fatalf("a new readiness worker is %v, want Failure (not ready)", got)
	}
	r.run(w.Run)

	r.play(Readiness, "check", r.wait(Readiness), t0.Add(5*time.Second), 10*time.Second, []step{
		{0, Unknown},  // 1 success of 2
		{0, Success},  // successThreshold reached: ready
		{1, Unknown},  // 1 failure of 3
		{1, Unknown},  // 2 of 3
		{0, Unknown},  // a success breaks the run of failures…
		{1, Unknown},  // …so it takes 3 more
		{-1, Unknown}, // an attempt that could not run is discarded, not counted…
		{1, Unknown},  // …and does not break the run
		{1, Failure},  // failureThreshold reached: not ready
		{1, Unknown},  // still failing: no new change
		{0, Unknown},
		{0, Success},
	})
	if got := w.Result(); got != Success {
		t.Errorf("Result() = %v after the script, want Success", got)
	}

	// A restarted container is not ready until it succeeds successThreshold times
	// again: the successes of the old one do not count.
	restarted := r.clock.Now()
	w.Reset("c2")
	next := r.wait(Readiness)
	assertChanges(t, r.changed(), change{Readiness, Failure, ResetMessage})
	r.play(Readiness, "check", next, restarted.Add(5*time.Second), 10*time.Second, []step{
		{0, Unknown}, {0, Success},
	})
}

func TestLivenessFailsOnceThenWaitsForReset(t *testing.T) {
	r := newRig(t)
	w := NewWorker(Liveness, execProbe("check", 5, 10, 1, 3), r.target(&corev1.Container{Name: "app"}), r.onChange(Liveness), r.clock)
	r.hook(w, Liveness)
	if got := w.Result(); got != Success {
		t.Fatalf("a new liveness worker is %v, want Success", got)
	}
	r.run(w.Run)

	held := r.play(Liveness, "check", r.wait(Liveness), t0.Add(5*time.Second), 10*time.Second, []step{
		{1, Unknown}, {1, Unknown}, {0, Unknown}, {1, Unknown}, {1, Unknown},
		{1, Failure}, // 3 in a row: the caller restarts the container
	})
	if held.ok || len(r.clock.Waiters()) != 0 {
		t.Fatalf("after the liveness failure the worker waits for %v (ok %v, timers %v), want no probe until Reset", held.next, held.ok, r.clock.Waiters())
	}
	r.clock.Step(time.Hour) // the container takes its time to restart: nothing is probed
	select {
	case c := <-r.exec.ch("check"):
		t.Fatalf("a probe ran on hold at t0+%v", c.at.Sub(t0))
	default:
	}
	if got := r.changed(); len(got) != 0 {
		t.Fatalf("onChange%v while on hold", got)
	}

	restarted := r.clock.Now()
	w.Reset("c2")
	if got := w.Result(); got != Success {
		t.Errorf("Result() = %v right after Reset, want Success", got)
	}
	next := r.wait(Liveness)
	want := []change{{Liveness, Success, ResetMessage}}
	if got := r.changed(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("Reset: onChange%v, want %v", got, want)
	}
	if !next.ok || !next.next.Equal(restarted.Add(5*time.Second)) {
		t.Fatalf("after Reset the first probe is due at %v, want initialDelaySeconds after the restart (%v)", next.next, restarted.Add(5*time.Second))
	}
	r.stepTo(next.next)
	if c := r.answer("check", 1); c.containerID != "c2" {
		t.Errorf("probed container %q after Reset, want c2", c.containerID)
	}
	r.wait(Liveness)
	if got := r.changed(); len(got) != 0 {
		t.Errorf("one failure after Reset: onChange%v, want none (the counters start again)", got)
	}
}

func TestResetDuringProbeDropsTheOldResult(t *testing.T) {
	r := newRig(t)
	w := NewWorker(Readiness, execProbe("check", 0, 10, 1, 1), r.target(nil), r.onChange(Readiness), r.clock)
	r.hook(w, Readiness)
	r.run(w.Run)

	old := r.call("check")
	w.Reset("c2")
	old.reply <- execReply{} // c1 answered success, but c1 is gone
	if c := r.answer("check", 1); c.containerID != "c2" {
		t.Fatalf("probed %q, want c2", c.containerID)
	}
	r.wait(Readiness)
	for _, c := range r.changed() {
		if c.result == Success {
			t.Errorf("onChange(%v, %q): a result of the replaced container was applied to the new one", c.result, c.msg)
		}
	}
}

func TestWorkerWaitsForSetStarted(t *testing.T) {
	r := newRig(t)
	c := &corev1.Container{Name: "app", StartupProbe: execProbe("startup", 0, 1, 1, 3)}
	w := NewWorker(Liveness, execProbe("check", 0, 10, 1, 3), r.target(c), r.onChange(Liveness), r.clock)
	r.hook(w, Liveness)
	r.run(w.Run)

	if got := r.wait(Liveness); got.ok {
		t.Fatalf("a liveness worker of a container with a startup probe waits for a probe at %v, want none before SetStarted", got.next)
	}
	r.clock.Step(time.Minute)
	w.SetStarted("c0") // about another container: ignored
	w.wake()           // make it look again
	if got := r.wait(Liveness); got.ok {
		t.Fatalf("SetStarted of another container opened the gate (next probe %v)", got.next)
	}
	w.SetStarted("c1")
	if call := r.answer("check", 0); !call.at.Equal(t0.Add(time.Minute)) {
		t.Errorf("probed at t0+%v, want at once when started (t0+1m0s)", call.at.Sub(t0))
	}
	if got := r.wait(Liveness); !got.ok || !got.next.Equal(t0.Add(time.Minute+10*time.Second)) {
		t.Errorf("next probe at %v, want a period later", got.next)
	}
}

func TestSetGatesOnStartup(t *testing.T) {
	r := newRig(t)
	c := &corev1.Container{
		Name:           "app",
		StartupProbe:   execProbe("startup", 0, 2, 1, 3),
		LivenessProbe:  execProbe("liveness", 0, 10, 1, 3),
		ReadinessProbe: execProbe("readiness", 0, 10, 1, 3),
	}
	s := NewSet(r.target(c), r.onSetChange, r.clock)
	for _, k := range []Kind{Startup, Liveness, Readiness} {
		r.hook(s.Worker(k), k)
	}
	r.run(s.Run)

	// The startup probe runs at once; the others wait for it.
	r.answer("startup", 1)
	for _, k := range []Kind{Liveness, Readiness} {
		if w := r.wait(k); w.ok {
			t.Fatalf("%s waits for a probe at %v before the startup probe succeeded", k, w.next)
		}
	}
	w := r.wait(Startup)
	if s.Started() || s.Ready() {
		t.Errorf("Started %v, Ready %v before the startup probe succeeded", s.Started(), s.Ready())
	}
	r.stepTo(w.next)
	r.answer("startup", 0)
	if w := r.wait(Startup); w.ok {
		t.Errorf("the startup probe is due again at %v after it succeeded", w.next)
	}
	// Started: both probe at once (readiness as kubelet's manual trigger does).
	live, ready := r.answer("liveness", 0), r.answer("readiness", 0)
	for _, c := range []execCall{live, ready} {
		if !c.at.Equal(t0.Add(2 * time.Second)) {
			t.Errorf("%s probed at t0+%v, want when startup succeeded (t0+2s)", c.cmd[0], c.at.Sub(t0))
		}
	}
	r.wait(Liveness)
	r.wait(Readiness)
	assertChanges(t, r.changed(), change{Startup, Success, "ok"}, change{Readiness, Success, "ok"})
	if !s.Started() || !s.Ready() {
		t.Errorf("Started %v, Ready %v, want both", s.Started(), s.Ready())
	}

	// A restart: everything starts over, gated again.
	s.Reset("c2")
	if s.Started() || s.Ready() {
		t.Errorf("right after Reset: Started %v, Ready %v, want neither", s.Started(), s.Ready())
	}
	if c := r.answer("startup", 1); c.containerID != "c2" {
		t.Errorf("startup probed %q, want c2", c.containerID)
	}
	for _, k := range []Kind{Liveness, Readiness} {
		if w := r.wait(k); w.ok {
			t.Errorf("%s waits for a probe at %v after Reset, want none until started", k, w.next)
		}
	}
	r.wait(Startup)
	assertChanges(t, r.changed(), change{Startup, Unknown, ResetMessage}, change{Readiness, Failure, ResetMessage})
}

func TestStartupFailureHolds(t *testing.T) {
	r := newRig(t)
	c := &corev1.Container{
		Name:          "app",
		StartupProbe:  execProbe("startup", 0, 1, 1, 2),
		LivenessProbe: execProbe("liveness", 0, 10, 1, 3),
	}
	s := NewSet(r.target(c), r.onSetChange, r.clock)
	r.hook(s.Worker(Startup), Startup)
	r.hook(s.Worker(Liveness), Liveness)
	r.run(s.Run)

	r.wait(Liveness)
	r.answer("startup", 1)
	r.stepTo(r.wait(Startup).next)
	r.answer("startup", 1)
	if w := r.wait(Startup); w.ok {
		t.Errorf("the startup probe is due again at %v after it failed, want a hold until Reset", w.next)
	}
	assertChanges(t, r.changed(), change{Startup, Failure, "boom"})
	r.clock.Step(time.Hour)
	if got := r.changed(); len(got) != 0 {
		t.Errorf("onChange%v while on hold", got)
	}
	if s.Started() {
		t.Error("Started after the startup probe failed")
	}
}

// assertChanges checks the onChange calls regardless of their order across kinds.
func assertChanges(t *testing.T, got []change, want ...change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("onChange%v, want %v", got, want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Fatalf("onChange%v, want %v", got, want)
		}
	}
}

func TestRunReturnsWhenCanceled(t *testing.T) {
	for _, inProbe := range []bool{false, true} {
		r := newRig(t)
		w := NewWorker(Readiness, execProbe("check", 0, 10, 1, 3), r.target(nil), r.onChange(Readiness), r.clock)
		r.hook(w, Readiness)
		cancel, done := r.run(w.Run)
		if inProbe {
			r.call("check") // never answered
		} else {
			r.answer("check", 0)
			r.wait(Readiness)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(guard):
			t.Fatalf("Run did not return when canceled (in a probe: %v)", inProbe)
		}
	}
}

func TestScheduleNext(t *testing.T) {
	base := schedule{kind: Readiness, startedAt: t0, initialDelay: 5 * time.Second, period: 10 * time.Second}
	with := func(f func(*schedule)) schedule { s := base; f(&s); return s }
	for _, tc := range []struct {
		name   string
		s      schedule
		want   time.Time
		wantOK bool
	}{
		{"first probe after the initial delay", base, t0.Add(5 * time.Second), true},
		{"then every period", with(func(s *schedule) { s.lastProbe = t0.Add(7 * time.Second) }), t0.Add(17 * time.Second), true},
		{"never before the initial delay", with(func(s *schedule) { s.lastProbe = t0.Add(-30 * time.Second) }), t0.Add(5 * time.Second), true},
		{"gated until started", with(func(s *schedule) { s.gated = true }), time.Time{}, false},
		{"the startup probe is not gated", with(func(s *schedule) { s.kind, s.gated = Startup, true }), t0.Add(5 * time.Second), true},
		{"the startup probe stops once it succeeded", with(func(s *schedule) { s.kind, s.result = Startup, Success }), time.Time{}, false},
		{"on hold", with(func(s *schedule) { s.kind, s.onHold = Liveness, true }), time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.s.next()
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Errorf("next() = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCounterObserve(t *testing.T) {
	// successThreshold 2, failureThreshold 3
	var c counter
	for i, tc := range []struct {
		r       Result
		crossed bool
	}{
		{Success, false}, {Success, true}, {Success, true},
		{Failure, false}, {Failure, false}, {Success, false}, {Failure, false},
		{Failure, false}, {Failure, true}, {Failure, true},
	} {
		var crossed bool
		c, crossed = c.observe(tc.r, 2, 3)
		if crossed != tc.crossed {
			t.Errorf("attempt %d (%v): crossed %v, want %v", i+1, tc.r, crossed, tc.crossed)
		}
	}
}

func TestParamsDefaults(t *testing.T) {
	got := paramsOf(&corev1.Probe{InitialDelaySeconds: -3})
	want := params{initialDelay: 0, period: 10 * time.Second, successThreshold: 1, failureThreshold: 3}
	if got != want {
		t.Errorf("paramsOf(zero probe) = %+v, want kubelet's defaults %+v", got, want)
	}
}

// OnAttempt hears every attempt that ran, below the thresholds too (kubelet records
// an Unhealthy event per failed attempt); an attempt that could not run is not one.
func TestOnAttemptReportsEveryAttempt(t *testing.T) {
	r := newRig(t)
	w := NewWorker(Readiness, execProbe("check", 5, 10, 1, 3), r.target(&corev1.Container{Name: "app"}), r.onChange(Readiness), r.clock)
	var mu sync.Mutex
	var attempts []change
	w.OnAttempt(func(res Result, msg string) {
		mu.Lock()
		attempts = append(attempts, change{Readiness, res, msg})
		mu.Unlock()
	})
	r.hook(w, Readiness)
	r.run(w.Run)
	r.play(Readiness, "check", r.wait(Readiness), t0.Add(5*time.Second), 10*time.Second, []step{
		{1, Unknown}, {1, Unknown}, {-1, Unknown}, {0, Success}, {1, Unknown},
	})
	mu.Lock()
	defer mu.Unlock()
	// The attempt that could not run is told too (kubelet's "probe errored"
	// event), with the error, though the thresholds do not count it.
	want := []Result{Failure, Failure, Unknown, Success, Failure}
	if len(attempts) != len(want) {
		t.Fatalf("attempts %v, want results %v", attempts, want)
	}
	for i, a := range attempts {
		if a.result != want[i] || (a.result == Failure && !strings.Contains(a.msg, "boom")) ||
			(a.result == Unknown && !strings.Contains(a.msg, "container is gone")) {
			t.Errorf("attempt %d: %v, want %v with the probe's output or error", i+1, a, want[i])
		}
	}
}

// A restarted container is probed at once (initialDelaySeconds permitting), not
// a period after the old container's last probe: kubelet runs the readiness probe
// as soon as the container is back. initialDelaySeconds count from the run's
// start, so a restart learnt of late is probed at once too.
func TestReadinessProbedAtOnceAfterRestart(t *testing.T) {
	r := newRig(t)
	w := NewWorker(Readiness, execProbe("check", 0, 10, 1, 3), r.target(&corev1.Container{Name: "app"}), r.onChange(Readiness), r.clock)
	r.hook(w, Readiness)
	r.run(w.Run)
	r.answer("check", 0) // no initial delay: at once
	r.wait(Readiness)
	assertChanges(t, r.changed(), change{Readiness, Success, "ok"})

	// 3 s into the 10 s period the container restarts: probed at once, without
	// waiting (no timer), not at t0+10s.
	r.stepTo(t0.Add(3 * time.Second))
	w.Reset("c2")
	if c := r.answer("check", 0); c.containerID != "c2" || !c.at.Equal(t0.Add(3*time.Second)) {
		t.Errorf("probed %q at t0+%v, want c2 at once (t0+3s)", c.containerID, c.at.Sub(t0))
	}
	next := r.wait(Readiness)
	assertChanges(t, r.changed(), change{Readiness, Failure, ResetMessage}, change{Readiness, Success, "ok"})
	if !next.ok || !next.next.Equal(t0.Add(13*time.Second)) {
		t.Errorf("then the next probe is due at t0+%v, want a period later (t0+13s)", next.next.Sub(t0))
	}

	// A run that started 4 s before the worker hears of it, with an initial delay
	// of 0: probed at once, not 4 s later either.
	r.stepTo(t0.Add(8 * time.Second))
	w.ResetAt("c3", t0.Add(4*time.Second))
	if c := r.answer("check", 0); c.containerID != "c3" || !c.at.Equal(t0.Add(8*time.Second)) {
		t.Errorf("probed %q at t0+%v, want c3 at once (t0+8s)", c.containerID, c.at.Sub(t0))
	}
	r.wait(Readiness)
	assertChanges(t, r.changed(), change{Readiness, Failure, ResetMessage}, change{Readiness, Success, "ok"})
}

// initialDelaySeconds count from the run's start that ResetAt is given.
func TestResetAtCountsTheInitialDelayFromTheRunsStart(t *testing.T) {
	r := newRig(t)
	w := NewWorker(Readiness, execProbe("check", 5, 10, 1, 3), r.target(&corev1.Container{Name: "app"}), r.onChange(Readiness), r.clock)
	r.hook(w, Readiness)
	r.run(w.Run)
	r.wait(Readiness)
	r.stepTo(t0.Add(3 * time.Second))
	w.ResetAt("c2", t0.Add(1*time.Second)) // started 2 s ago: 3 s of the delay left
	next := r.wait(Readiness)
	if !next.ok || !next.next.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("after ResetAt the first probe is due at t0+%v (ok %v), want t0+6s", next.next.Sub(t0), next.ok)
	}
}
