package agent

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/runtime"
)

// collectOrphans removes what belongs to no pod the agent knows: monitors (with
// their containers and their runs under root), sandboxes, pod data directories,
// volumes and cgroups. Restore removes what an
// earlier agentd left; this catches what escapes it — a monitor that was still
// starting when agentd died and finished its start after restore looked, or a
// removal whose clean-up failed — so nothing undesired outlives a few seconds.
// A pod is known from the moment plan records it (before its sandbox or any
// monitor is made) until killPod has removed everything of it, so whatever is
// unknown is no one's.
//
// Sweeping a pod's sandbox claims the pod (claimOrphan): its worker leaves it
// alone until the sweep is done.
func (a *Agent) collectOrphans(ctx context.Context, withNetwork bool) {
	if !a.collecting.CompareAndSwap(false, true) {
		return // the last collection is still stopping something
	}
	a.mu.Lock()
	known := map[types.UID]bool{}
	monitors := map[string]bool{}
	for uid, pr := range a.pods {
		known[uid] = true
		for _, c := range pr.containers {
			monitors[c.id] = true
		}
		for _, id := range pr.unmanaged {
			monitors[id] = true
		}
	}
	a.mu.Unlock()

	var orphanMonitors []string
	for _, id := range a.rt.ContainersWithState() {
		if !monitors[id] {
			orphanMonitors = append(orphanMonitors, id)
		}
	}
	var orphanPods []types.UID
	for _, uid := range a.rt.PodsWithState() {
		if !known[types.UID(uid)] {
			orphanPods = append(orphanPods, types.UID(uid))
		}
	}
	if len(orphanMonitors) == 0 && len(orphanPods) == 0 && !withNetwork {
		a.collecting.Store(false)
		return
	}
	go func() {
		defer a.collecting.Store(false)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		for _, id := range orphanMonitors {
			m := a.rt.Inspect(ctx, id)
			if m.Config != nil && a.isKnown(types.UID(m.Config.Pod.UID), id) {
				continue // recorded since the list was taken
			}
			a.log.Info("Removing a container monitor that belongs to no pod", "container", id, "state", m.State)
			a.stopMonitors(ctx, a.rt, []*runtime.Monitor{m})
		}
		for _, uid := range orphanPods {
			if !a.claimOrphan(uid) {
				continue
			}
			a.log.Info("Removing the sandbox of a pod agentd no longer runs", "uid", uid)
			a.teardownSandbox(ctx, uid, a.rt.SandboxNetNS(string(uid)))
			a.releaseOrphans(uid)
		}
		if withNetwork {
			a.collectNetwork(ctx)
		}
	}()
}

// collectNetwork releases the network attachments (addresses, masquerade rules,
// veths) of pods agentd does not know: a removal whose detach failed, or a set-up
// cut short before its sandbox was recorded anywhere restore looks.
func (a *Agent) collectNetwork(ctx context.Context) {
	n := a.network()
	if n == nil {
		return
	}
	var mu sync.Mutex
	var claimed []types.UID
	collected, err := n.Collect(ctx, func(uid string) bool {
		if !a.claimOrphan(types.UID(uid)) {
			return true
		}
		mu.Lock()
		claimed = append(claimed, types.UID(uid))
		mu.Unlock()
		return false
	})
	a.releaseOrphans(claimed...)
	if err != nil {
		a.log.Error(err, "Could not release every network attachment of pods agentd no longer runs", "released", collected)
	}
}

// claimOrphan marks an unknown pod as being swept, so plan does not create it
// again before its old sandbox is gone; false if it is known after all.
func (a *Agent) claimOrphan(uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pods[uid] != nil {
		return false
	}
	if a.sweeping == nil {
		a.sweeping = map[types.UID]bool{}
	}
	a.sweeping[uid] = true
	return true
}

// releaseOrphans ends the claims of claimOrphan; the pods may be desired again.
func (a *Agent) releaseOrphans(uids ...types.UID) {
	if len(uids) == 0 {
		return
	}
	a.mu.Lock()
	for _, uid := range uids {
		delete(a.sweeping, uid)
	}
	a.mu.Unlock()
	a.poke()
}

// isKnown says whether a pod (and, when id is set, that container monitor) is recorded.
func (a *Agent) isKnown(uid types.UID, id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	pr := a.pods[uid]
	if pr == nil || id == "" {
		return pr != nil
	}
	owner, _, _ := a.containerByID(id)
	return owner == pr
}
