package protocol

import "time"

// The restart policy and the journal's transitions, shared by both images of the
// monitor (which apply them whether or not agentd runs) and by agentd (which
// applies them to a container whose monitor it lost).

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
// resetAfter. A run that could not start (ReasonStartError) waits at least base:
// a start that fails at once must not spin.
func Decide(r Restart, exit *Exit, stopped bool, consecutive int, ranFor time.Duration) Decision {
	if stopped || !WantsRestart(r, exit) {
		return Decision{Consecutive: consecutive}
	}
	base, max, reset := r.withDefaults()
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
	if exit != nil && exit.Reason == ReasonStartError && d.Delay < base {
		d.Delay = base
	}
	return d
}

// WantsRestart reports whether policy r restarts a container after exit, back-off
// aside: Always (and "", as written by no agentd) restarts every exit, OnFailure a
// failure, Never none. A nil exit is one nobody saw (the monitor was lost): a failure.
func WantsRestart(r Restart, exit *Exit) bool {
	switch r.Policy {
	case RestartAlways, "":
		return true
	case RestartOnFailure:
		return exit == nil || exit.ExitCode != 0 || exit.Reason == ReasonStartError
	}
	return false
}

func (r Restart) withDefaults() (base, max, reset time.Duration) {
	base, max, reset = r.BackoffBase, r.BackoffMax, r.ResetAfter
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max <= 0 {
		max = DefaultBackoffMax
	}
	if max < base {
		max = base
	}
	if reset <= 0 {
		reset = DefaultResetAfter
	}
	return base, max, reset
}

// ExitReason classifies an exit as kubelet does.
func ExitReason(code int, oomKilled bool) string {
	switch {
	case oomKilled:
		return ReasonOOMKilled
	case code == 0:
		return ReasonCompleted
	}
	return ReasonError
}

// Ended moves a journal whose current run has just ended (its Exit is set) to what
// comes next under policy r: BackOff until NextStart, or Exited. It returns the
// decision it applied.
func (j *Journal) Ended(r Restart) Decision {
	run := j.Current()
	ranFor := run.Exit.FinishedAt.Sub(run.StartedAt)
	d := Decide(r, run.Exit, j.Stopped, j.BackoffStep, ranFor)
	j.BackoffStep = d.Consecutive
	if d.Restart {
		j.State, j.NextStart = StateBackOff, run.Exit.FinishedAt.Add(d.Delay)
	} else {
		j.State, j.NextStart = StateExited, time.Time{}
	}
	return d
}

// StartDue reports whether the next run is due at now: the journal is in BackOff,
// no stop was asked for, and NextStart has come.
func (j *Journal) StartDue(now time.Time) bool {
	return j.State == StateBackOff && !j.Stopped && !now.Before(j.NextStart)
}

// Stop records a stop request (OpStop): no run starts again. A journal between
// runs becomes Exited at once; a running one when its run has ended (Ended). It
// reports whether the journal is Exited now.
func (j *Journal) Stop() bool {
	j.Stopped = true
	if j.State == StateBackOff || j.State == StateExited {
		j.State, j.NextStart = StateExited, time.Time{}
		return true
	}
	return false
}

// Lost records that the monitor died (kill -9) and its container was killed by
// whoever found it: a current run that had not ended ends with ReasonMonitorLost,
// and the journal is Exited, as no monitor is left to apply the policy.
func (j *Journal) Lost(now time.Time) {
	if run := j.Current(); run != nil && run.Exit == nil {
		run.Exit = &Exit{ExitCode: 128 + 9, Signal: 9, Reason: ReasonMonitorLost,
			Message: "the container's monitor died; agentd killed the container", FinishedAt: now}
	}
	j.State, j.NextStart = StateExited, time.Time{}
}

// RestartAfterLoss reports whether agentd starts a new monitor for a container
// whose monitor it lost (after Lost recorded it), by the container's own policy
// (its ContainerConfig.Restart: for an init container that is not the pod's). A
// container whose monitor never got to run it (nil journal, or no runs) is started
// as if for the first time, whatever the policy, as kubelet does when creating a
// container failed.
func RestartAfterLoss(r Restart, j *Journal) bool {
	if j == nil || len(j.Runs) == 0 {
		return true
	}
	return WantsRestart(r, j.LastExit())
}
