package agent

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
)

// handleEvent takes one of the runtime's events, in the loop.
func (a *Agent) handleEvent(ev runtime.Event) {
	switch ev.Type {
	case runtime.JournalChanged:
		a.applyJournal(ev.ID, ev.Journal)
	case runtime.MonitorDied:
		// Cleaning up runs the monitor binary: the pod's worker does it, in turn
		// with the pod's other work. A dead monitor is reported again at every
		// relist until its clean-up succeeded.
		a.mu.Lock()
		pr, _, cr := a.containerByID(ev.ID)
		if cr != nil {
			cr.lost = true
		}
		a.mu.Unlock()
		if cr != nil {
			a.workers.UpdatePod(pr.pod.UID, podUpdate{})
		}
	}
}

// refreshJournal reads a monitor's journal and applies it.
func (a *Agent) refreshJournal(id string) {
	j, err := a.rt.Journal(id)
	if err != nil {
		return
	}
	a.applyJournal(id, j)
}

// journalSeen is what the agent has reported, as events, of a container's
// journal: the restarts, and the exit of which run.
type journalSeen struct {
	restarts int
	exit     string // the run (container ID and start) whose exit was seen
}

func seenOf(j *protocol.Journal) journalSeen {
	var s journalSeen
	if j != nil {
		s.restarts = j.RestartCount
		if cur := j.Current(); cur != nil && cur.Exit != nil {
			s.exit = runKey(cur)
		}
	}
	return s
}

func runKey(r *protocol.Run) string { return r.ContainerID + r.StartedAt.String() }

// next is what a new journal tells beyond what was seen: whether the container
// restarted (a run beyond the restarts seen is running) and the exit of its
// current run, if not seen before.
func (s journalSeen) next(j *protocol.Journal) (journalSeen, bool, *protocol.Exit) {
	restarted := j.RestartCount > s.restarts && j.State == protocol.StateRunning
	if restarted {
		s.restarts = j.RestartCount
	}
	var exit *protocol.Exit
	if cur := j.Current(); cur != nil && cur.Exit != nil && s.exit != runKey(cur) {
		s.exit = runKey(cur)
		exit = cur.Exit
	}
	return s, restarted, exit
}

// journalBehind says whether journal j is older than cur, the one recorded: the
// same monitor, and fewer restarts, or the same run less far along. A journal a
// worker read can reach the agent after a newer one the runtime reported.
func journalBehind(cur, j *protocol.Journal) bool {
	if cur == nil || j.MonitorPid != cur.MonitorPid || j.MonitorStart != cur.MonitorStart {
		return false
	}
	progress := func(j *protocol.Journal) [3]int {
		exited := 0
		if j.LastExit() != nil {
			exited = 1
		}
		rank := map[string]int{protocol.StateCreating: 0, protocol.StateRunning: 1, protocol.StateBackOff: 2, protocol.StateExited: 3}[j.State]
		return [3]int{j.RestartCount, exited, rank}
	}
	p, c := progress(j), progress(cur)
	for i := range p {
		if p[i] != c[i] {
			return p[i] < c[i]
		}
	}
	return false
}

// applyJournal records a monitor's journal and turns what changed into events;
// a container adopted while starting gets its probes once it runs. A journal
// older than the one recorded is ignored.
func (a *Agent) applyJournal(id string, j *protocol.Journal) {
	a.mu.Lock()
	pr, name, cr := a.containerByID(id)
	if cr == nil || journalBehind(a.status.Journal(id), j) {
		a.mu.Unlock()
		return
	}
	pod := pr.pod
	a.status.SetJournal(id, j)
	adoptedRunning := cr.starting && j.State != protocol.StateCreating
	if adoptedRunning {
		cr.starting = false
		adoptedRunning = j.State == protocol.StateRunning
	}
	var restarted bool
	var exit *protocol.Exit
	cr.seen, restarted, exit = cr.seen.next(j)
	probes := cr.probes
	a.mu.Unlock()
	if restarted { // the new run's results: SetJournal forgot the old ones
		if probes != nil {
			// Probed at once (after initialDelaySeconds from the run's start), as
			// kubelet probes a restarted container.
			var startedAt time.Time
			if cur := j.Current(); cur != nil {
				startedAt = cur.StartedAt
			}
			probes.ResetAt(id, startedAt)
		}
	}
	if adoptedRunning {
		a.startAdoptedProbes(pod, name, cr, j)
	}

	obj := state.PodObject(pod, name)
	// Kubelet restarts a first exit at once: a BackOff event only when a delay
	// applies.
	if exit != nil && state.InBackOff(j) {
		a.events.Eventf(obj, state.Warning, "BackOff", "Back-off restarting failed container %s in pod %s", name, klog(pod))
	}
	if restarted {
		a.events.Eventf(obj, state.Normal, "Started", "Started container %s", name)
	}
	a.changed(pod.UID)
}

// handleLost cleans up after the monitors of a pod the runtime reported dead:
// their containers are killed and their exits recorded as MonitorLost; the
// restart policy is then the agent's (restartLost). Runs on the pod's worker.
func (a *Agent) handleLost(ctx context.Context, uid types.UID) {
	a.mu.Lock()
	var ids []string
	if pr := a.pods[uid]; pr != nil {
		for _, c := range pr.containers {
			if c.lost {
				c.lost = false
				ids = append(ids, c.id)
			}
		}
	}
	a.mu.Unlock()
	for _, id := range ids {
		if _, err := a.rt.Cleanup(ctx, id); err != nil {
			if !errors.Is(err, runtime.ErrMonitorAlive) { // it is not dead after all: looked at again at the next relist
				a.log.Error(err, "Could not clean up after a dead monitor", "container", id)
			}
			continue
		}
		a.log.Info("Container monitor died; its container was killed", "container", id)
		a.restartLost(id, "The monitor of container %s died; its container was killed")
	}
}

// restartLost applies the restart policy to a container whose monitor was lost
// (and cleaned up): to restart it, its monitor's state is removed so that Plan
// starts a fresh monitor. The event's message takes the container's name.
func (a *Agent) restartLost(id, message string) {
	j, jerr := a.rt.Journal(id)
	a.mu.Lock()
	pr, name, c := a.containerByID(id)
	if c == nil {
		a.mu.Unlock()
		return
	}
	pod := pr.pod
	if jerr == nil {
		a.status.SetJournal(id, j)
	} else {
		j = nil
	}
	cspec, isInit := containerSpec(pod, name)
	restart := cspec != nil && protocol.RestartAfterLoss(protocol.Restart{Policy: runtime.RestartPolicy(pod, cspec, isInit)}, j)
	if c.probeCancel != nil {
		c.probeCancel()
	}
	a.mu.Unlock()
	a.events.Eventf(state.PodObject(pod, name), state.Warning, protocol.ReasonMonitorLost, message, name)
	if restart {
		if err := a.rt.Remove(id); err != nil {
			// Kept: checked again, never started twice.
			a.log.Error(err, "Could not remove the state of a lost container monitor", "container", id)
		} else {
			a.mu.Lock()
			delete(pr.containers, name)
			a.mu.Unlock()
			a.status.Remove(id)
		}
	}
	a.changed(pod.UID)
}

// startAdoptedProbes starts the probes of an app container whose run agentd did
// not start itself (adopted, or found starting), from the run's start in j.
func (a *Agent) startAdoptedProbes(pod *corev1.Pod, name string, cr *ctrRecord, j *protocol.Journal) {
	c, isInit := containerSpec(pod, name)
	if c == nil || (isInit && !spec.IsSidecar(c)) {
		return
	}
	var startedAt time.Time
	if cur := j.Current(); cur != nil {
		startedAt = cur.StartedAt
	}
	a.startProbes(pod, c, cr, startedAt)
}
