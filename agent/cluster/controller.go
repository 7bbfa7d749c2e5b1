package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/spec"
)

// syncInterval is how often the controller looks at its pods besides reacting to DaemonSet changes and to the
// agent's PodsChanged.
const syncInterval = time.Second

// controller runs this node's pods of the cluster's DaemonSets.
type controller struct {
	n      *Node
	node   string
	c      *store.Client
	log    logr.Logger
	labels map[string]string

	mu    sync.Mutex // guards dss and level
	dss   map[string]*appsv1.DaemonSet
	level admission.Level // the cluster's Pod Security level, read when run starts

	wake chan struct{} // PodsChanged: sync now

	// Owned by run's goroutine:
	slots       map[string]func()            // rolling-update slots held, by DaemonSet
	reported    map[string]store.DSPodStatus // last report written, by DaemonSet
	desired     []types.UID                  // UIDs last given to the host
	podErrors   map[string]string            // Validate, admission and PodFor errors logged, by DaemonSet (not logged again while unchanged)
	waitingSlot map[string]bool              // DaemonSets whose update waits for a slot (logged once)
}

func newController(n *Node, node string, c *store.Client, log logr.Logger) *controller {
	return &controller{n: n, node: node, c: c, log: log, labels: n.nodeLabels(), dss: map[string]*appsv1.DaemonSet{},
		slots: map[string]func(){}, reported: map[string]store.DSPodStatus{}, podErrors: map[string]string{},
		waitingSlot: map[string]bool{}, wake: make(chan struct{}, 1)}
}

func (ctl *controller) poke() {
	select {
	case ctl.wake <- struct{}{}:
	default:
	}
}

func (ctl *controller) count() int {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	return len(ctl.dss)
}

func (ctl *controller) podSecurity() string {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	return string(ctl.level)
}

func key(ds *appsv1.DaemonSet) string { return ds.Namespace + "/" + ds.Name }

func (ctl *controller) run(ctx context.Context) {
	defer func() {
		for k, release := range ctl.slots {
			release()
			delete(ctl.slots, k)
		}
	}()
	var rev int64
	for {
		level, err := ctl.readLevel(ctx)
		if err != nil {
			ctl.log.Error(err, "Cannot read the cluster's settings; trying again")
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryInterval):
			}
			continue
		}
		list, r, err := ctl.c.ListDaemonSets(ctx)
		if err == nil {
			ctl.mu.Lock()
			ctl.level = level
			ctl.mu.Unlock()
			ctl.mu.Lock()
			for i := range list {
				ctl.dss[key(&list[i])] = &list[i]
			}
			ctl.mu.Unlock()
			rev = r
			break
		}
		ctl.log.Error(err, "Cannot list the cluster's daemonsets; trying again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryInterval):
		}
	}
	events := ctl.c.WatchDaemonSets(ctx, rev+1)
	tick := time.NewTicker(syncInterval)
	defer tick.Stop()
	ctl.sync(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			ctl.apply(ev)
		case <-ctl.wake:
		case <-tick.C:
		}
		ctl.sync(ctx)
	}
}

func (ctl *controller) apply(ev store.DaemonSetEvent) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	switch ev.Type {
	case store.EventPut:
		ctl.dss[key(ev.DaemonSet)] = ev.DaemonSet
		ctl.log.V(1).Info("Daemonset changed", "daemonset", key(ev.DaemonSet), "generation", ev.DaemonSet.Generation)
	case store.EventDelete:
		delete(ctl.dss, key(ev.DaemonSet))
		ctl.log.Info("Daemonset deleted; stopping its pod on this node", "daemonset", key(ev.DaemonSet))
	case store.EventResync:
		clear(ctl.dss)
		for i := range ev.All {
			ctl.dss[key(&ev.All[i])] = &ev.All[i]
		}
	}
}

// sync computes the pods this node should run for the DaemonSets, gives them to the host, and reports their status.
func (ctl *controller) sync(ctx context.Context) {
	ctl.mu.Lock()
	dss := make([]*appsv1.DaemonSet, 0, len(ctl.dss))
	for _, ds := range ctl.dss {
		dss = append(dss, ds)
	}
	level := ctl.level
	ctl.mu.Unlock()
	slices.SortFunc(dss, func(a, b *appsv1.DaemonSet) int {
		if key(a) < key(b) {
			return -1
		}
		return 1
	})

	byDS := map[string][]PodState{}
	for _, p := range ctl.n.cfg.Host.ClusterPods() {
		byDS[p.DaemonSet] = append(byDS[p.DaemonSet], p)
	}
	var desired []*corev1.Pod
	wanted := map[string]bool{}
	for _, ds := range dss {
		k := key(ds)
		if !daemonset.Matches(ds, ctl.labels) {
			continue
		}
		// The apply that stored it was checked; a node checks again, as kubelet does, so that a DaemonSet written
		// past the admin's apply (or before the level was raised) does not run here: first by Decode's rules (its
		// names become the pod's, and name directories here), then by the cluster's Pod Security level.
		if errs := daemonset.Validate(ds); len(errs) > 0 {
			err := &spec.FieldErrors{List: errs}
			if ctl.podErrors[k] != err.Error() {
				ctl.podErrors[k] = err.Error()
				ctl.log.Error(err, "Refusing to run this node's pod of an invalid daemonset", "daemonset", k)
			}
			continue
		}
		if v := admission.Check(level, &ds.Spec.Template.ObjectMeta, &ds.Spec.Template.Spec, "spec.template."); len(v) > 0 {
			err := admission.Error(level, v)
			if ctl.podErrors[k] != err.Error() {
				ctl.podErrors[k] = err.Error()
				ctl.log.Error(err, "Refusing to run this node's pod of a daemonset", "daemonset", k)
			}
			continue
		}
		pod, err := daemonset.PodFor(ds, ctl.node)
		if err != nil {
			if ctl.podErrors[k] != err.Error() {
				ctl.podErrors[k] = err.Error()
				ctl.log.Error(err, "Cannot make this node's pod of a daemonset", "daemonset", k)
			}
			continue
		}
		delete(ctl.podErrors, k)
		wanted[k] = true
		if p := ctl.choose(ctx, ds, pod, byDS[k]); p != nil {
			desired = append(desired, p)
		}
	}
	for k, release := range ctl.slots {
		if !wanted[k] {
			release()
			delete(ctl.slots, k)
		}
	}
	uids := make([]types.UID, 0, len(desired))
	for _, p := range desired {
		uids = append(uids, p.UID)
	}
	if !slices.Equal(uids, ctl.desired) {
		ctl.desired = uids
		ctl.n.saveDesired(level, desired)
		ctl.n.cfg.Host.SetClusterPods(desired)
	}
	ctl.report(ctx, byDS)
}

// choose picks the pod to run for ds: the current template's (pod), or, during a rolling update that has no slot
// for this node yet, the old one that runs.
func (ctl *controller) choose(ctx context.Context, ds *appsv1.DaemonSet, pod *corev1.Pod, have []PodState) *corev1.Pod {
	k := key(ds)
	hash := daemonset.TemplateHash(ds)
	var old *PodState
	hasNew, newReady := false, false
	for i := range have {
		p := &have[i]
		switch {
		case p.Hash == hash && !p.Terminating:
			hasNew, newReady = true, p.Ready
		case p.Hash != hash && !p.Terminating:
			old = p
		}
	}
	release := ctl.slots[k]
	switch {
	case old == nil:
		if release != nil && hasNew && newReady {
			release()
			delete(ctl.slots, k)
			ctl.log.Info("Rolling update done on this node: the new pod is ready", "daemonset", k, "pod", pod.Name)
		}
		return pod
	case hasNew || release != nil:
		return pod
	}
	// An old pod runs: replace it only with one of the maxUnavailable update slots.
	limit, err := ctl.maxUnavailable(ctx, ds)
	if err != nil {
		ctl.log.V(1).Info("Cannot count the daemonset's nodes; keeping the old pod for now", "daemonset", k, "err", err.Error())
		return old.Pod
	}
	if limit == 0 { // OnDelete
		return old.Pod
	}
	release, ok, err := ctl.c.AcquireUpdateSlot(ctx, ds.Namespace, ds.Name, limit, ctl.node)
	if err != nil {
		ctl.log.V(1).Info("Cannot take a rolling-update slot; keeping the old pod for now", "daemonset", k, "err", err.Error())
		return old.Pod
	}
	if !ok {
		if !ctl.waitingSlot[k] {
			ctl.waitingSlot[k] = true
			ctl.log.Info("Rolling update: waiting for other nodes (maxUnavailable)", "daemonset", k, "maxUnavailable", limit)
		}
		return old.Pod
	}
	delete(ctl.waitingSlot, k)
	ctl.slots[k] = release
	ctl.log.Info("Rolling update: replacing this node's pod", "daemonset", k, "oldHash", old.Hash, "newHash", hash, "maxUnavailable", limit)
	return pod
}

func (ctl *controller) maxUnavailable(ctx context.Context, ds *appsv1.DaemonSet) (int, error) {
	nodes, err := ctl.c.Nodes(ctx)
	if err != nil {
		return 0, err
	}
	matching := 0
	for _, n := range nodes {
		if daemonset.Matches(ds, n.Labels) {
			matching++
		}
	}
	return daemonset.MaxUnavailable(ds, matching)
}

// report writes, for every DaemonSet with a pod here, what that pod is; and withdraws the reports of pods gone.
func (ctl *controller) report(ctx context.Context, byDS map[string][]PodState) {
	now := map[string]store.DSPodStatus{}
	for k, pods := range byDS {
		var best *PodState
		for i := range pods {
			p := &pods[i]
			if p.Terminating {
				continue
			}
			if best == nil || p.Ready && !best.Ready {
				best = p
			}
		}
		if best != nil {
			now[k] = store.DSPodStatus{Node: ctl.node, TemplateHash: best.Hash, Running: true, Ready: best.Ready}
		}
	}
	for k, st := range now {
		if last, ok := ctl.reported[k]; ok && last.TemplateHash == st.TemplateHash && last.Ready == st.Ready && last.Running == st.Running {
			continue
		}
		ns, name := splitKey(k)
		if err := ctl.c.ReportDSPod(ctx, ns, name, st); err != nil {
			ctl.log.V(1).Info("Cannot report a daemonset pod's status; trying again", "daemonset", k, "err", err.Error())
			continue
		}
		ctl.reported[k] = st
	}
	for k := range ctl.reported {
		if _, ok := now[k]; ok {
			continue
		}
		ns, name := splitKey(k)
		if err := ctl.c.RemoveDSPod(ctx, ns, name, ctl.node); err != nil {
			ctl.log.V(1).Info("Cannot withdraw a daemonset pod's report; trying again", "daemonset", k, "err", err.Error())
			continue
		}
		delete(ctl.reported, k)
	}
}

// readLevel reads the cluster's Pod Security level. A cluster without settings (an external etcd nobody ran
// `cluster init` on) gets admission.Default.
func (ctl *controller) readLevel(ctx context.Context) (admission.Level, error) {
	cfg, err := ctl.c.ClusterConfig(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return admission.Default, nil
	}
	if err != nil {
		return "", err
	}
	return admission.ParseLevel(cfg.PodSecurity)
}

func splitKey(k string) (ns, name string) {
	ns, name, _ = strings.Cut(k, "/")
	return ns, name
}
