package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
)

// stateFile, in root, remembers what the last agentd ran with: the restore-sensitive
// settings (to notice a change instead of ignoring it, as Docker does) and when it
// stopped (to replay what the monitors did meanwhile as events).
const stateFile = "agentd-state.json"

type agentState struct {
	Settings  map[string]string `json:"settings"`
	StoppedAt time.Time         `json:"stoppedAt,omitempty"`
}

func (a *Agent) loadState() *agentState {
	var st agentState
	data, err := os.ReadFile(filepath.Join(a.opts.Root, stateFile))
	if err == nil {
		if err := json.Unmarshal(data, &st); err != nil {
			a.log.Error(err, "Unreadable agent state; treating this start as the first", "file", filepath.Join(a.opts.Root, stateFile))
			return nil
		}
		return &st
	}
	return nil
}

func (a *Agent) saveState(stopped bool) {
	st := &agentState{Settings: a.opts.RestoreSensitive}
	if stopped {
		st.StoppedAt = time.Now()
	}
	if err := atomicfile.WriteJSON(filepath.Join(a.opts.Root, stateFile), st); err != nil {
		a.log.Error(err, "Could not record agent state")
	}
}

// settingChanges lists the restore-sensitive settings that differ from the last run.
func settingChanges(prev, cur map[string]string) []string {
	var out []string
	for k, v := range cur {
		if old, ok := prev[k]; ok && old != v {
			out = append(out, fmt.Sprintf("%s changed from %q to %q", k, old, v))
		}
	}
	sort.Strings(out)
	return out
}

// restore handles the monitors found at start. The adopted pods' QoS tiers are
// Run's to set, once the API answers (restoreQOS). With live restore, verified monitors
// are adopted and what they did while agentd was away is replayed as events; a
// monitor that died meanwhile has its container killed and its pod handled by the
// restart policy. Without live restore — or when a restore-sensitive setting
// changed — they are stopped gracefully and the pods start fresh. What to do
// with each pod and container is decided by reconcile.RestorePod and
// reconcile.RestoreContainer.
func (a *Agent) restore(ctx context.Context) error {
	begun := time.Now()
	prev := a.loadState()
	live := a.liveRestoreOn()
	if prev != nil {
		if changes := settingChanges(prev.Settings, a.opts.RestoreSensitive); len(changes) > 0 {
			for _, c := range changes {
				a.log.Info("Restore-sensitive setting changed: running pods are replaced, not adopted", "change", c)
				a.warnings = append(a.warnings, "restore-sensitive setting "+c+": running pods were replaced")
			}
			live = false
			if old := prev.Settings["run-dir"]; old != "" && old != a.opts.RunDir {
				a.stopOldRunDir(ctx, old)
			}
		}
	}
	a.saveState(false)

	// The pods' records are read and checked while the monitors are listed: the
	// listing mostly waits for the monitors' answers, and neither needs the other.
	// Nothing makes sandboxes or monitors while restore runs (the API and the
	// manifest source are not applied yet), so the two views are of one moment.
	sandboxes, _ := a.rt.Sandboxes()
	records := make([]loadedRecord, len(sandboxes))
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for i, u := range sandboxes {
			records[i].sp, records[i].state = a.loadRecord(u)
		}
	}()
	monitors, err := a.rt.List(ctx)
	listed := time.Since(begun)
	<-loaded
	if err != nil {
		return err
	}
	byPod := map[types.UID][]*runtime.Monitor{}
	for _, m := range monitors {
		if m.Config == nil {
			// Being started (by an agentd that died) or broken; a live one is
			// looked at again by collectOrphans once it has its config.
			if m.State != runtime.MonitorStarting {
				_, _ = a.rt.Cleanup(ctx, m.ID)
				_ = a.rt.Remove(m.ID)
			}
			continue
		}
		uid := types.UID(m.Config.Pod.UID)
		byPod[uid] = append(byPod[uid], m)
	}
	type drop struct {
		uid types.UID
		sp  *savedPod
		ms  []*runtime.Monitor
	}
	var drops []drop
	var since time.Time
	if prev != nil {
		since = prev.StoppedAt
	}
	handled := map[types.UID]bool{}
	var adopted []*runtime.Monitor // for the metrics
	for i, u := range sandboxes {
		uid := types.UID(u)
		handled[uid] = true
		sp, rec := records[i].sp, records[i].state
		if rec == reconcile.RecordComplete && sp.CRI != nil {
			// A CRI client's: never dropped, whatever live restore says.
			adopted = append(adopted, byPod[uid]...)
			a.adoptCRI(ctx, sp, byPod[uid], live, since)
			delete(byPod, uid)
			continue
		}
		adopt, why := reconcile.RestorePod(rec, live)
		if adopt {
			adopted = append(adopted, byPod[uid]...)
			a.adopt(ctx, sp, byPod[uid], since)
		} else {
			if rec != reconcile.RecordComplete {
				// A pod that ran is stopped without a word (live restore off);
				// anything else is worth a line.
				a.log.Info("Removing a pod an earlier agentd left", "uid", uid, "reason", why)
			}
			drops = append(drops, drop{uid, sp, byPod[uid]})
		}
		delete(byPod, uid)
	}
	for uid, ms := range byPod { // monitors without a pod record
		handled[uid] = true
		drops = append(drops, drop{uid, nil, ms})
	}
	// Volumes, cgroups of pods whose removal was interrupted after their sandbox went.
	for _, uid := range a.rt.PodsWithState() {
		if !handled[types.UID(uid)] {
			drops = append(drops, drop{types.UID(uid), nil, nil})
		}
	}
	var wg sync.WaitGroup
	for _, d := range drops {
		wg.Add(1)
		go func(d drop) {
			defer wg.Done()
			a.dropPod(ctx, d.uid, d.sp, d.ms)
		}(d)
	}
	wg.Wait()
	var dropped []*runtime.Monitor
	for _, d := range drops {
		dropped = append(dropped, d.ms...)
	}
	a.metrics.RestoreDone(time.Since(begun), restoreResults(adopted, dropped))
	a.log.Info("Restore done", "monitors", len(monitors), "adopted", len(adopted), "dropped", len(dropped),
		"listed", listed.Round(time.Microsecond), "took", time.Since(begun).Round(time.Microsecond))
	return nil
}

// loadedRecord is a pod record as loadRecord found it.
type loadedRecord struct {
	sp    *savedPod
	state reconcile.RecordState
}

// loadRecord reads a pod's record from its sandbox and says what it found.
func (a *Agent) loadRecord(uid string) (*savedPod, reconcile.RecordState) {
	sp, err := loadPod(a.rt.SandboxDir(uid))
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		// pod.json is written last: the sandbox's set-up was interrupted.
		return nil, reconcile.RecordUnfinished
	case err != nil:
		a.log.Error(err, "Broken pod record", "uid", uid)
		return nil, reconcile.RecordBroken
	}
	if err := a.checkRecord(uid, sp); err != nil {
		// Under run-dir, so possibly planted: a pod adopted from it would run
		// its spec and mount its sandbox's paths. Removed as a broken record is,
		// by paths derived from uid, not from the record.
		a.log.Error(err, "Not adopting a pod record agentd did not make", "uid", uid)
		return nil, reconcile.RecordBroken
	}
	if sp.Terminating {
		return sp, reconcile.RecordTerminating
	}
	return sp, reconcile.RecordComplete
}

// checkRecord proves that a pod record read from uid's sandbox is one agentd
// wrote: for that uid, a pod that passes the manifest's validation, and a
// sandbox of the paths agentd gives it (runtime CheckSandbox).
func (a *Agent) checkRecord(uid string, sp *savedPod) error {
	if sp.CRI != nil {
		return a.checkCRIRecord(uid, sp)
	}
	if sp.Pod == nil || sp.Sandbox == nil {
		return fmt.Errorf("pod record of %s: no pod or no sandbox", uid)
	}
	if string(sp.Pod.UID) != uid {
		return fmt.Errorf("pod record of %s: it is the record of pod UID %q", uid, sp.Pod.UID)
	}
	if errs := spec.Validate(sp.Pod); len(errs) > 0 {
		return fmt.Errorf("pod record of %s: %w", uid, errs.ToAggregate())
	}
	return a.rt.CheckSandbox(sp.Pod, sp.Sandbox)
}

// monitorFound is what reconcile's restore decisions know of a monitor's state.
func monitorFound(s runtime.MonitorState) reconcile.MonitorFound {
	switch s {
	case runtime.MonitorDead, runtime.MonitorBroken:
		return reconcile.MonitorDead
	case runtime.MonitorStarting:
		return reconcile.MonitorStarting
	case runtime.MonitorUnmanaged:
		return reconcile.MonitorUnmanaged
	}
	return reconcile.MonitorRuns
}

// adopt takes over a pod whose monitors outlived the last agentd.
func (a *Agent) adopt(ctx context.Context, sp *savedPod, ms []*runtime.Monitor, since time.Time) {
	pod := sp.Pod
	pr := &podRecord{pod: pod, sandbox: sp.Sandbox, startTime: sp.Started, containers: map[string]*ctrRecord{}, startObserved: true}
	var lost []string
	for _, m := range ms {
		name := m.Config.Name
		cr := &ctrRecord{id: m.ID, cgroup: m.Config.Cgroup.Path}
		j := m.Journal
		switch reconcile.RestoreContainer(monitorFound(m.State), m.Journal) {
		case reconcile.CleanUpLost:
			// Its container may still run, unmanaged: kill it through its cgroup.
			cj, err := a.rt.Cleanup(ctx, m.ID)
			if err != nil {
				a.log.Error(err, "Could not clean up after a dead monitor", "pod", klog(pod), "container", name)
			}
			if err == nil && (cj == nil || len(cj.Runs) == 0) {
				// The start was interrupted before the container ever ran: it is
				// started as if for the first time.
				if err := a.rt.Remove(m.ID); err != nil {
					a.log.Error(err, "Could not remove a container whose start was interrupted", "pod", klog(pod), "container", name)
				} else {
					a.log.Info("Found a container whose start was interrupted; starting it again", "pod", klog(pod), "container", name)
					continue
				}
			}
			j = cj
			lost = append(lost, name)
		case reconcile.AdoptStarting:
			// Alive, still creating its container: adopted, and its journal
			// read again until it says how the start went; probes start then.
			cr.starting = true
			if m.State == runtime.MonitorStarting {
				a.log.Info("Found a container monitor still starting; adopting it", "pod", klog(pod), "container", name)
			}
		case reconcile.LeaveUnmanaged:
			pr.unmanaged = append(pr.unmanaged, m.ID)
			a.log.Info("Found a monitor of an incompatible version; leaving it alone", "pod", klog(pod), "container", name, "reason", m.Reason)
		}
		if j != nil {
			a.status.SetJournal(m.ID, j)
		}
		a.status.SetImageID(m.ID, m.Config.Image.ID)
		cr.seen = seenOf(j)
		pr.containers[name] = cr
		a.replay(pod, name, j, since)
	}
	a.mu.Lock()
	a.pods[pod.UID] = pr
	a.mu.Unlock()
	for _, name := range lost {
		a.restartLost(pr.containers[name].id, "The monitor of container %s died while agentd was away; its container was killed")
	}
	a.log.Info("Adopted pod", "pod", klog(pod), "containers", len(pr.containers))
	for name, cr := range pr.containers {
		if j := a.status.Journal(cr.id); j != nil && j.State == protocol.StateRunning {
			a.startAdoptedProbes(pod, name, cr, j)
		}
	}
}

// replay turns what a monitor recorded after since into events.
func (a *Agent) replay(pod *corev1.Pod, name string, j *protocol.Journal, since time.Time) {
	if j == nil || since.IsZero() {
		return
	}
	obj := state.PodObject(pod, name)
	for _, r := range j.Runs {
		if r.StartedAt.After(since) && r.Exit == nil || r.StartedAt.After(since) && r.Exit.Reason != protocol.ReasonStartError {
			a.events.Eventf(obj, state.Normal, "Started", "Started container %s (restart %d, while agentd was away)", name, r.RestartCount)
		}
		if r.Exit != nil && r.Exit.FinishedAt.After(since) {
			typ := state.Normal
			if r.Exit.ExitCode != 0 {
				typ = state.Warning
			}
			a.events.Eventf(obj, typ, "Exited", "Container %s exited with code %d (%s) while agentd was away", name, r.Exit.ExitCode, r.Exit.Reason)
		}
	}
}

// stopOldRunDir stops the monitors an earlier agentd left under another run-dir.
func (a *Agent) stopOldRunDir(ctx context.Context, old string) {
	if _, err := os.Stat(filepath.Join(old, "monitors")); err != nil {
		return
	}
	rt, err := runtime.New(runtime.Config{Settings: runtime.Settings{Root: a.opts.Root, RunDir: old, LogDir: a.opts.LogDir, CgroupParent: a.opts.CgroupParent}, MonitorPath: a.opts.MonitorPath}, a.log)
	if err != nil {
		a.log.Error(err, "Could not look for pods under the old run-dir", "runDir", old)
		return
	}
	ms, _ := rt.List(ctx)
	a.stopMonitors(ctx, rt, ms)
	for _, m := range ms {
		if m.Config != nil {
			rt.RemoveSandbox(m.Config.Pod.UID)
		}
	}
	a.log.Info("Stopped the pods left under the old run-dir", "runDir", old, "containers", len(ms))
}

// stopMonitors stops (within each one's grace period) and removes monitors in parallel.
func (a *Agent) stopMonitors(ctx context.Context, rt runtime.Interface, ms []*runtime.Monitor) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func(m *runtime.Monitor) {
			defer wg.Done()
			grace := time.Duration(0)
			if m.Config != nil {
				grace = m.Config.Stop.GracePeriod
			}
			if _, err := rt.Stop(ctx, m.ID, grace); err != nil {
				a.log.Error(err, "Could not stop a container left by an earlier agentd", "container", m.ID)
			}
			if err := rt.Remove(m.ID); err != nil {
				a.log.Error(err, "Could not remove a container left by an earlier agentd", "container", m.ID)
			}
		}(m)
	}
	wg.Wait()
}

// dropPod stops and removes what an earlier agentd left of a pod.
// Without a record it may have been attached to the network: detaching a pod that
// never was is harmless. A removal once begun is finished even when agentd is
// told to stop meanwhile (its context ends): cut short, it would leave the
// containers or the pod's address and masquerading rules behind until the next
// agentd. The containers' grace periods bound it.
func (a *Agent) dropPod(ctx context.Context, uid types.UID, sp *savedPod, ms []*runtime.Monitor) {
	limit := removalTimeout
	for _, m := range ms {
		if m.Config != nil && m.Config.Stop.GracePeriod+removalTimeout > limit {
			limit = m.Config.Stop.GracePeriod + removalTimeout
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	a.stopMonitors(ctx, a.rt, ms)
	netns := a.rt.SandboxNetNS(string(uid))
	if sp != nil && sp.Pod != nil && sp.Pod.Spec.HostNetwork {
		netns = ""
	}
	a.teardownSandbox(ctx, uid, netns)
}

// restoreQOS sets the QoS tiers' CPU shares for the pods restore adopted. Run
// calls it after restore, once the API answers (setting the tiers through
// libcontainer's cgroup manager takes milliseconds, and listing the adopted
// pods needs none of it) and before anything can start a pod: the loop and the
// CRI begin after it.
func (a *Agent) restoreQOS() { a.updateQOS("") }
