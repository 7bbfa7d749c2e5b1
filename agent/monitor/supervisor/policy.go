package supervisor

import (
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Decision is what to do after a run ended.
type Decision struct {
	Restart bool
	Delay   time.Duration // wait this long before the next run
	// Consecutive is the back-off step to remember for the next exit.
	Consecutive int
}

// Decide applies a restart policy with kubelet's back-off to one exit. consecutive
// counts the restarts since the back-off was last reset; ranFor is how long the run
// that just ended had been running. Kubelet restarts the first time at once, then
// waits base, 2·base, 4·base … up to max, and forgets the back-off after a run of
// resetAfter.
func Decide(r protocol.Restart, exit *protocol.Exit, stopped bool, consecutive int, ranFor time.Duration) Decision {
	if stopped || !wantsRestart(r.Policy, exit) {
		return Decision{Consecutive: consecutive}
	}
	base, max, reset := withDefaults(r)
	if ranFor >= reset {
		consecutive = 0
	}
	d := Decision{Restart: true, Consecutive: consecutive + 1}
	if consecutive > 0 {
		d.Delay = base
		for i := 1; i < consecutive && d.Delay < max; i++ {
			d.Delay *= 2
		}
		if d.Delay > max {
			d.Delay = max
		}
	}
	return d
}

func wantsRestart(policy string, exit *protocol.Exit) bool {
	switch policy {
	case protocol.RestartAlways, "":
		return true
	case protocol.RestartOnFailure:
		return exit.ExitCode != 0 || exit.Reason == protocol.ReasonStartError
	}
	return false
}

func withDefaults(r protocol.Restart) (base, max, reset time.Duration) {
	base, max, reset = r.BackoffBase, r.BackoffMax, r.ResetAfter
	if base <= 0 {
		base = protocol.DefaultBackoffBase
	}
	if max <= 0 {
		max = protocol.DefaultBackoffMax
	}
	if max < base {
		max = base
	}
	if reset <= 0 {
		reset = protocol.DefaultResetAfter
	}
	return base, max, reset
}

// ExitReason classifies an exit as kubelet does.
func ExitReason(code int, oomKilled bool) string {
	switch {
	case oomKilled:
		return protocol.ReasonOOMKilled
	case code == 0:
		return protocol.ReasonCompleted
	}
	return protocol.ReasonError
}
