package protocol

import (
	"testing"
	"time"
)

var (
	exitOK       = &Exit{ExitCode: 0, Reason: ReasonCompleted}
	exitFail     = &Exit{ExitCode: 3, Reason: ReasonError}
	exitStartErr = &Exit{ExitCode: 128, Reason: ReasonStartError}
	exitLost     = &Exit{ExitCode: 137, Signal: 9, Reason: ReasonMonitorLost}
	always       = Restart{Policy: RestartAlways}
	onFailure    = Restart{Policy: RestartOnFailure}
	never        = Restart{Policy: RestartNever}
)

func TestDecide(t *testing.T) {
	short := time.Second
	cases := []struct {
		name        string
		r           Restart
		exit        *Exit
		stopped     bool
		consecutive int
		ranFor      time.Duration
		want        Decision
	}{
		{"Always restarts a success at once", always, exitOK, false, 0, short, Decision{true, 0, 1}},
		{"Always: second exit waits the base", always, exitFail, false, 1, short, Decision{true, 10 * time.Second, 2}},
		{"Always: then doubles", always, exitFail, false, 2, short, Decision{true, 20 * time.Second, 3}},
		{"Always: and doubles", always, exitFail, false, 3, short, Decision{true, 40 * time.Second, 4}},
		{"capped at five minutes", always, exitFail, false, 6, short, Decision{true, 5 * time.Minute, 7}},
		{"stays capped", always, exitFail, false, 60, short, Decision{true, 5 * time.Minute, 61}},
		{"reset after ten minutes of running", always, exitFail, false, 6, 10 * time.Minute, Decision{true, 0, 1}},
		{"not reset after nine", always, exitFail, false, 2, 9 * time.Minute, Decision{true, 20 * time.Second, 3}},
		{"an empty policy is Always", Restart{}, exitOK, false, 0, short, Decision{true, 0, 1}},
		{"OnFailure does not restart a success", onFailure, exitOK, false, 0, short, Decision{false, 0, 0}},
		{"OnFailure keeps the step when it does not restart", onFailure, exitOK, false, 4, short, Decision{false, 0, 4}},
		{"OnFailure restarts a failure", onFailure, exitFail, false, 1, short, Decision{true, 10 * time.Second, 2}},
		{"OnFailure restarts a lost monitor's container", onFailure, exitLost, false, 0, short, Decision{true, 0, 1}},
		{"a start error waits the base at least: no spinning", onFailure, exitStartErr, false, 0, 0, Decision{true, 10 * time.Second, 1}},
		{"a start error backs off like any failure", always, exitStartErr, false, 3, 0, Decision{true, 40 * time.Second, 4}},
		{"a start error with a custom base", Restart{Policy: RestartAlways, BackoffBase: time.Second}, exitStartErr, false, 0, 0, Decision{true, time.Second, 1}},
		{"Never", never, exitFail, false, 0, short, Decision{false, 0, 0}},
		{"Never, not even a start error", never, exitStartErr, false, 0, 0, Decision{false, 0, 0}},
		{"a stopped container never restarts", always, exitFail, true, 0, short, Decision{false, 0, 0}},
		{"custom base for tests", Restart{Policy: RestartAlways, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, exitFail, false, 3, short, Decision{true, 400 * time.Millisecond, 4}},
		{"custom max", Restart{Policy: RestartAlways, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, exitFail, false, 9, short, Decision{true, time.Second, 10}},
		{"a max below the base is the base", Restart{Policy: RestartAlways, BackoffBase: time.Minute, BackoffMax: time.Second}, exitFail, false, 5, short, Decision{true, time.Minute, 6}},
		{"custom reset", Restart{Policy: RestartAlways, ResetAfter: time.Minute}, exitFail, false, 5, time.Minute, Decision{true, 0, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.r, tc.exit, tc.stopped, tc.consecutive, tc.ranFor); got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWantsRestart(t *testing.T) {
	for _, tc := range []struct {
		r    Restart
		exit *Exit
		want bool
	}{
		{always, exitOK, true}, {always, exitFail, true}, {always, nil, true},
		{onFailure, exitOK, false}, {onFailure, exitFail, true}, {onFailure, exitStartErr, true},
		{onFailure, exitLost, true}, {onFailure, nil, true},
		// A success that an OOM kill cannot be: kubelet looks at the code only.
		{onFailure, &Exit{ExitCode: 0, Reason: ReasonOOMKilled}, false},
		{never, exitFail, false}, {never, nil, false},
		{Restart{Policy: "Sometimes"}, exitFail, false},
	} {
		if got := WantsRestart(tc.r, tc.exit); got != tc.want {
			t.Errorf("WantsRestart(%q, %+v) = %v, want %v", tc.r.Policy, tc.exit, got, tc.want)
		}
	}
}

func TestExitReason(t *testing.T) {
	if ExitReason(0, false) != ReasonCompleted || ExitReason(1, false) != ReasonError ||
		ExitReason(137, true) != ReasonOOMKilled || ExitReason(0, true) != ReasonOOMKilled {
		t.Error("wrong reasons")
	}
}

// Ended is the transition both monitor images make after a run ended (the lean
// one after a reaped exit, agent-monitor after a failed start).
func TestJournalEnded(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	run := func(ranFor time.Duration, e *Exit) Run {
		x := *e
		x.FinishedAt = t0.Add(ranFor)
		return Run{ContainerID: "c", StartedAt: t0, Exit: &x}
	}
	for _, tc := range []struct {
		name      string
		j         Journal
		r         Restart
		wantState string
		wantNext  time.Time
		wantStep  int
	}{
		{"first exit: back-off of zero", Journal{State: StateRunning, Runs: []Run{run(time.Second, exitFail)}}, always,
			StateBackOff, t0.Add(time.Second), 1},
		{"third exit: 20 s after it", Journal{State: StateRunning, BackoffStep: 2, Runs: []Run{run(time.Second, exitFail)}}, always,
			StateBackOff, t0.Add(21 * time.Second), 3},
		{"a long run resets the back-off", Journal{State: StateRunning, BackoffStep: 9, Runs: []Run{run(time.Hour, exitFail)}}, always,
			StateBackOff, t0.Add(time.Hour), 1},
		{"done under OnFailure", Journal{State: StateRunning, BackoffStep: 2, NextStart: t0, Runs: []Run{run(time.Second, exitOK)}}, onFailure,
			StateExited, time.Time{}, 2},
		{"stopped: exited whatever the policy", Journal{State: StateRunning, Stopped: true, Runs: []Run{run(time.Second, exitFail)}}, always,
			StateExited, time.Time{}, 0},
		{"a failed start waits the base", Journal{State: StateCreating, Runs: []Run{run(0, exitStartErr)}}, always,
			StateBackOff, t0.Add(10 * time.Second), 1},
		{"a failed start under Never", Journal{State: StateCreating, Runs: []Run{run(0, exitStartErr)}}, never,
			StateExited, time.Time{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.j
			j.Ended(tc.r)
			if j.State != tc.wantState || !j.NextStart.Equal(tc.wantNext) || j.BackoffStep != tc.wantStep {
				t.Errorf("after Ended: state %s, next start %v, step %d; want %s, %v, %d",
					j.State, j.NextStart, j.BackoffStep, tc.wantState, tc.wantNext, tc.wantStep)
			}
			if due := j.StartDue(tc.wantNext); due != (tc.wantState == StateBackOff) {
				t.Errorf("StartDue at NextStart = %v", due)
			}
			if tc.wantState == StateBackOff && j.StartDue(tc.wantNext.Add(-time.Nanosecond)) {
				t.Error("StartDue before NextStart")
			}
		})
	}
}

func TestJournalStop(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		state      string
		wantExited bool
	}{
		{StateRunning, false}, {StateBackOff, true}, {StateExited, true},
	} {
		j := Journal{State: tc.state, NextStart: t0}
		if got := j.Stop(); got != tc.wantExited || !j.Stopped {
			t.Errorf("Stop in %s = %v (Stopped %v), want %v", tc.state, got, j.Stopped, tc.wantExited)
		}
		if tc.wantExited && (j.State != StateExited || !j.NextStart.IsZero()) {
			t.Errorf("Stop in %s left state %s, next start %v", tc.state, j.State, j.NextStart)
		}
		if j.StartDue(t0.Add(time.Hour)) {
			t.Errorf("a stopped journal (was %s) has a start due", tc.state)
		}
	}
}

func TestJournalLostAndRestartAfterLoss(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	running := Journal{State: StateRunning, Runs: []Run{{ContainerID: "a", Exit: &Exit{ExitCode: 0}}, {ContainerID: "b"}}}
	j := running
	j.Runs = append([]Run(nil), running.Runs...)
	j.Lost(t0)
	if e := j.LastExit(); e == nil || e.Reason != ReasonMonitorLost || e.ExitCode != 137 || e.Signal != 9 || !e.FinishedAt.Equal(t0) {
		t.Errorf("Lost: last exit %+v", e)
	}
	if j.State != StateExited || j.Runs[0].Exit.ExitCode != 0 {
		t.Errorf("Lost: state %s, earlier run's exit %+v", j.State, j.Runs[0].Exit)
	}
	// Lost during a back-off: the last exit is the real one.
	backoff := Journal{State: StateBackOff, NextStart: t0, Runs: []Run{{ContainerID: "a", Exit: &Exit{ExitCode: 2, Reason: ReasonError}}}}
	backoff.Lost(t0)
	if backoff.LastExit().Reason != ReasonError || backoff.State != StateExited || !backoff.NextStart.IsZero() {
		t.Errorf("Lost in BackOff: %+v", backoff)
	}

	for _, tc := range []struct {
		name string
		r    Restart
		j    *Journal
		want bool
	}{
		{"no journal: never ran", never, nil, true},
		{"no runs: never ran", never, &Journal{State: StateExited}, true},
		{"Always", always, &j, true},
		{"OnFailure: the lost run failed", onFailure, &j, true},
		{"Never", never, &j, false},
		{"OnFailure, lost in a back-off after a failure", onFailure, &backoff, true},
		{"Never does not restart a failure", never, &backoff, false},
	} {
		if got := RestartAfterLoss(tc.r, tc.j); got != tc.want {
			t.Errorf("%s: RestartAfterLoss = %v, want %v", tc.name, got, tc.want)
		}
	}
}
