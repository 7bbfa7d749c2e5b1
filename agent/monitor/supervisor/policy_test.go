package supervisor

import (
	"testing"
	"time"

	"github.com/agentd-project/agentd/cri"
)

func TestDecide(t *testing.T) {
	ok := &cri.Exit{ExitCode: 0, Reason: cri.ReasonCompleted}
	fail := &cri.Exit{ExitCode: 3, Reason: cri.ReasonError}
	startErr := &cri.Exit{ExitCode: 128, Reason: cri.ReasonStartError}
	always := cri.Restart{Policy: cri.RestartAlways}
	short := time.Second
	cases := []struct {
		name        string
		r           cri.Restart
		exit        *cri.Exit
		stopped     bool
		consecutive int
		ranFor      time.Duration
		want        Decision
	}{
		{"Always restarts a success at once", always, ok, false, 0, short, Decision{true, 0, 1}},
		{"Always: second exit waits the base", always, fail, false, 1, short, Decision{true, 10 * time.Second, 2}},
		{"Always: then doubles", always, fail, false, 2, short, Decision{true, 20 * time.Second, 3}},
		{"Always: and doubles", always, fail, false, 3, short, Decision{true, 40 * time.Second, 4}},
		{"capped at five minutes", always, fail, false, 6, short, Decision{true, 5 * time.Minute, 7}},
		{"stays capped", always, fail, false, 60, short, Decision{true, 5 * time.Minute, 61}},
		{"reset after ten minutes of running", always, fail, false, 6, 10 * time.Minute, Decision{true, 0, 1}},
		{"not reset after nine", always, fail, false, 2, 9 * time.Minute, Decision{true, 20 * time.Second, 3}},
		{"OnFailure does not restart a success", cri.Restart{Policy: cri.RestartOnFailure}, ok, false, 0, short, Decision{false, 0, 0}},
		{"OnFailure restarts a failure", cri.Restart{Policy: cri.RestartOnFailure}, fail, false, 1, short, Decision{true, 10 * time.Second, 2}},
		{"OnFailure retries a start error", cri.Restart{Policy: cri.RestartOnFailure}, startErr, false, 0, short, Decision{true, 0, 1}},
		{"Never", cri.Restart{Policy: cri.RestartNever}, fail, false, 0, short, Decision{false, 0, 0}},
		{"a stopped container never restarts", always, fail, true, 0, short, Decision{false, 0, 0}},
		{"custom base for tests", cri.Restart{Policy: cri.RestartAlways, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, fail, false, 3, short, Decision{true, 400 * time.Millisecond, 4}},
		{"custom max", cri.Restart{Policy: cri.RestartAlways, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, fail, false, 9, short, Decision{true, time.Second, 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.r, tc.exit, tc.stopped, tc.consecutive, tc.ranFor); got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestExitReason(t *testing.T) {
	if ExitReason(0, false) != cri.ReasonCompleted || ExitReason(1, false) != cri.ReasonError ||
		ExitReason(137, true) != cri.ReasonOOMKilled || ExitReason(0, true) != cri.ReasonOOMKilled {
		t.Error("wrong reasons")
	}
}
