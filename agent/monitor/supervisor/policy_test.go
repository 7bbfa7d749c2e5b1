package supervisor

import (
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func TestDecide(t *testing.T) {
	ok := &protocol.Exit{ExitCode: 0, Reason: protocol.ReasonCompleted}
	fail := &protocol.Exit{ExitCode: 3, Reason: protocol.ReasonError}
	startErr := &protocol.Exit{ExitCode: 128, Reason: protocol.ReasonStartError}
	always := protocol.Restart{Policy: protocol.RestartAlways}
	short := time.Second
	cases := []struct {
		name        string
		r           protocol.Restart
		exit        *protocol.Exit
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
		{"OnFailure does not restart a success", protocol.Restart{Policy: protocol.RestartOnFailure}, ok, false, 0, short, Decision{false, 0, 0}},
		{"OnFailure restarts a failure", protocol.Restart{Policy: protocol.RestartOnFailure}, fail, false, 1, short, Decision{true, 10 * time.Second, 2}},
		{"OnFailure retries a start error", protocol.Restart{Policy: protocol.RestartOnFailure}, startErr, false, 0, short, Decision{true, 0, 1}},
		{"Never", protocol.Restart{Policy: protocol.RestartNever}, fail, false, 0, short, Decision{false, 0, 0}},
		{"a stopped container never restarts", always, fail, true, 0, short, Decision{false, 0, 0}},
		{"custom base for tests", protocol.Restart{Policy: protocol.RestartAlways, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, fail, false, 3, short, Decision{true, 400 * time.Millisecond, 4}},
		{"custom max", protocol.Restart{Policy: protocol.RestartAlways, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, fail, false, 9, short, Decision{true, time.Second, 10}},
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
	if ExitReason(0, false) != protocol.ReasonCompleted || ExitReason(1, false) != protocol.ReasonError ||
		ExitReason(137, true) != protocol.ReasonOOMKilled || ExitReason(0, true) != protocol.ReasonOOMKilled {
		t.Error("wrong reasons")
	}
}
