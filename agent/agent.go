// Package agent is agentd's wiring: one loop that feeds manifest snapshots and
// monitor journals to reconcile.Plan and hands the actions to per-pod workers, the
// probes, the event store, and the API backend. Settings: every agentd setting
// (see agent/config) reaches it through Options.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/network"
	"github.com/agentd-project/agentd/agent/probe"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/source"
	"github.com/agentd-project/agentd/agent/state"
)

// Options are the agent's settings.
type Options struct {
	ManifestDir    string
	Root           string
	RunDir         string
	LogDir         string
	Socket         string
	NodeName       string
	StorageDriver  string
	CgroupParent   string
	LiveRestore    bool
	RelistInterval time.Duration
	BackoffBase    time.Duration
	SeccompDefault bool  // RuntimeDefault for containers that name no seccomp profile
	PidsLimit      int64 // every container's pids.max; 0 is none
	MonitorPath    string
	ImageLimits    image.Limits // image-max-size, image-store-max-size
	Network        network.Config
	Log            logr.Logger
	// RestoreSensitive are the settings whose change means running pods are
	// replaced rather than adopted (key → value).
	RestoreSensitive map[string]string
	// Version is agentd's version, registered with the node in cluster mode.
	Version string
	Cluster ClusterOptions
}

// Agent runs the pods of a manifest directory.
type Agent struct {
	opts   Options
	log    logr.Logger
	rt     *runtime.Runtime
	images *image.Store
	// netw is the pod network, nil when unavailable; its set-up (CNI plugin checks)
	// runs beside restore: read it through network(), which waits for it.
	netw     *network.Network
	netReady chan struct{}
	events   *state.Recorder
	started  time.Time

	mu      sync.Mutex // guards pods, desired, clusterDesired, liveRestore, clusterOn, version
	pods    map[types.UID]*podRecord
	desired []*corev1.Pod // static pods
	// synced is set by the first manifest snapshot: until then an empty desired
	// state means "not read yet", not "remove every pod".
	synced bool
	// clusterDesired are the pods of the cluster's DaemonSets this node runs.
	clusterDesired []*corev1.Pod
	// liveRestore is the configured value; it may change at SIGHUP. It is in
	// effect only while clusterOn is false (liveRestoreOn).
	liveRestore bool
	clusterOn   bool
	joinErr     error  // why cluster.enabled could not join yet
	version     uint64 // bumped at every change visible through the API

	cluster *cluster.Node

	// collecting is set while collectOrphans stops what belongs to no pod;
	// sweeping (guarded by mu) are the pods whose leftovers it removes, which
	// plan leaves alone until it is done.
	collecting atomic.Bool
	sweeping   map[types.UID]bool

	wake     chan struct{}
	watchers watchers
	inflight sync.WaitGroup // actions being applied by workers
	warnings []string       // for info; set before Run serves the API
}

// podRecord is a pod the agent runs. Fields are guarded by Agent.mu.
type podRecord struct {
	pod         *corev1.Pod
	sandbox     *runtime.Sandbox
	busy        bool // a worker applies an action
	terminating bool
	deleted     time.Time
	startTime   time.Time
	containers  map[string]*ctrRecord
	unmanaged   []string // monitor IDs of an incompatible version: shown, never duplicated
}

// ctrRecord is a container of a pod. Fields are guarded by Agent.mu.
type ctrRecord struct {
	id             string // monitor ID
	journal        *protocol.Journal
	waiting        string
	waitingMessage string
	retryAt        time.Time
	ready, started bool
	imageID        string
	probeCancel    context.CancelFunc
	probes         *probe.Set
	seenRestarts   int
	seenExit       string // container ID whose exit was reported
	// starting: a monitor adopted (or found by Start) while it was still
	// creating its container; its probes start once its journal says Running.
	starting bool
}

// New prepares an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	a := &Agent{opts: opts, log: opts.Log, pods: map[types.UID]*podRecord{}, wake: make(chan struct{}, 1),
		liveRestore: opts.LiveRestore, started: time.Now()}
	a.events = state.NewRecorder(opts.NodeName, 1000)
	a.cluster = cluster.New(cluster.Config{
		Root: opts.Root, NodeName: opts.NodeName, Labels: opts.Cluster.NodeLabels, Version: opts.Version,
		EtcdEndpoints: opts.Cluster.EtcdEndpoints, EtcdTLS: opts.Cluster.EtcdTLS, NodeTTL: opts.Cluster.NodeTTL, Host: a, Log: opts.Log.WithName("cluster"),
	})
	var err error
	a.images, err = image.Open(filepath.Join(opts.Root, "images"))
	if err != nil {
		return nil, err
	}
	a.images.SetLimits(opts.ImageLimits)
	a.rt, err = runtime.New(runtime.Config{
		Settings: runtime.Settings{
			RunDir: opts.RunDir, LogDir: opts.LogDir, CgroupParent: opts.CgroupParent,
			StorageDriver: opts.StorageDriver, NodeName: opts.NodeName, BackoffBase: opts.BackoffBase,
			SeccompDefault: opts.SeccompDefault, PidsLimit: opts.PidsLimit, NodeMemory: nodeMemory(),
		},
		Root:        opts.Root,
		MonitorPath: opts.MonitorPath,
	}, opts.Log.WithName("runtime"))
	if err != nil {
		return nil, err
	}
	if opts.Network.StateDir == "" {
		opts.Network.StateDir = filepath.Join(opts.RunDir, "network")
	}
	a.netReady = make(chan struct{})
	go func() {
		defer close(a.netReady)
		n, err := network.New(opts.Network)
		if err != nil {
			// Pods still run, each with its own loopback only; say so once.
			a.log.Error(err, "Pod networking unavailable: pods get a loopback-only network namespace")
			return
		}
		a.netw = n
	}()
	return a, nil
}

// SetLiveRestore changes the configured live restore at runtime (SIGHUP). In
// cluster mode it stays off; the value applies once the node leaves its cluster.
func (a *Agent) SetLiveRestore(on bool) {
	a.mu.Lock()
	changed := a.liveRestore != on
	a.liveRestore = on
	inCluster := a.clusterOn
	a.mu.Unlock()
	if changed && on && inCluster {
		a.log.Info("WARNING: live-restore is now true in the configuration, but live restore stays disabled: cluster mode is on; it takes effect when this node leaves its cluster")
	}
}

// Run runs the agent until ctx is done, then stops the pods (live restore off) or
// leaves them to their monitors (live restore on).
func (a *Agent) Run(ctx context.Context) error {
	if err := source.CheckDir(a.opts.ManifestDir); err != nil {
		return err
	}
	unlock, err := lockState(a.opts.RunDir, a.opts.Root)
	if err != nil {
		return err
	}
	defer unlock()
	// Cluster membership first: in cluster mode live restore is off, which decides
	// what restore does with the containers found.
	inCluster, err := a.cluster.Start(ctx)
	if err != nil {
		return err
	}
	if !inCluster {
		go a.ProtectClusterPorts(nil) // what an agentd that crashed in a cluster left
	}
	a.autoJoin(ctx)
	if err := a.restore(ctx); err != nil {
		return err
	}
	srv, err := api.Listen(a.opts.Socket, a, a.log.WithName("api"))
	if err != nil {
		return err
	}
	defer srv.Close()

	loopCtx, stopLoop := context.WithCancel(context.Background())
	defer stopLoop()
	snapshots := make(chan source.Snapshot, 1)
	go func() {
		if err := source.Run(ctx, source.Config{Dir: a.opts.ManifestDir, NodeName: a.opts.NodeName, Relist: a.opts.RelistInterval, Log: a.log.WithName("source")}, snapshots); err != nil && ctx.Err() == nil {
			a.log.Error(err, "Manifest source stopped")
		}
	}()
	journals, err := a.watchJournals(loopCtx)
	if err != nil {
		return err
	}
	// What a monitor wrote between restore's read and the watch is read now: a
	// monitor still starting when restore looked must not stay "creating".
	for _, id := range a.monitorIDs() {
		a.refreshJournal(id)
	}
	a.log.Info("agentd is running", "manifestDir", a.opts.ManifestDir, "socket", a.opts.Socket, "liveRestore", a.liveRestoreOn())
	if own, canLower := ownOOMScoreAdj(); oomScoresCapped(own, canLower) {
		a.log.Info("WARNING: agentd lacks CAP_SYS_RESOURCE: container monitors and Guaranteed containers keep agentd's oom_score_adj instead of their lower one",
			"oomScoreAdj", own, "monitorOOMScoreAdj", protocol.MonitorOOMScoreAdj, "guaranteedOOMScoreAdj", runtime.GuaranteedOOMScoreAdj)
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// The first check, a second after start, collects what restore could not
	// see: a monitor that finished its start after restore looked, the network
	// attachments of pods no one recorded.
	var lastCheck, lastNetCheck time.Time
	for {
		select {
		case <-ctx.Done():
			a.cluster.StopController()
			err := a.shutdown()
			a.cluster.Stop()
			return err
		case snap := <-snapshots:
			a.applySnapshot(snap)
		case id := <-journals:
			a.refreshJournal(id)
		case <-a.wake:
		case now := <-tick.C:
			if now.Sub(lastCheck) >= 5*time.Second {
				lastCheck = now
				a.checkMonitors(ctx)
				// The network's state is read with iptables: less often.
				withNetwork := now.Sub(lastNetCheck) >= time.Minute
				if withNetwork {
					lastNetCheck = now
				}
				a.collectOrphans(loopCtx, withNetwork)
			}
		}
		a.plan(loopCtx) // not the signal's context: a start under way must finish, to be stopped or kept
	}
}

// network returns the pod network once it is set up, or nil when it is unavailable.
func (a *Agent) network() *network.Network {
	<-a.netReady
	return a.netw
}

// liveRestoreOn says whether live restore is in effect: configured, and not in cluster mode.
func (a *Agent) liveRestoreOn() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.liveRestore && !a.clusterOn
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// changed records a change visible through the API and wakes watchers.
func (a *Agent) changed(uid types.UID) {
	a.mu.Lock()
	a.version++
	ds := uid != "" && a.pods[uid] != nil && a.pods[uid].pod.Annotations[daemonset.AnnotationDaemonSet] != ""
	a.mu.Unlock()
	a.watchers.notify(uid)
	if ds {
		a.cluster.PodsChanged()
	}
}

// applySnapshot takes a new desired state; invalid files become events.
func (a *Agent) applySnapshot(snap source.Snapshot) {
	a.mu.Lock()
	a.desired = snap.Pods
	a.synced = true
	a.mu.Unlock()
	for _, fe := range snap.Errors {
		a.events.Event(a.nodeObject(), state.Warning, fe.Reason,
			fmt.Sprintf("%s: %v", fe.Path, fe.Err))
	}
	a.changed("")
}

// allDesired is the static pods and the cluster's. Callers hold mu.
func (a *Agent) allDesired() []*corev1.Pod {
	if len(a.clusterDesired) == 0 {
		return a.desired
	}
	return append(slices.Clip(a.desired), a.clusterDesired...)
}

// plan computes the next actions and hands each to a worker.
func (a *Agent) plan(ctx context.Context) {
	a.mu.Lock()
	if !a.synced {
		a.mu.Unlock()
		return
	}
	obs := reconcile.Observed{}
	busy := map[types.UID]bool{}
	for uid, pr := range a.pods {
		ps := &reconcile.PodState{Pod: pr.pod, Sandbox: pr.sandbox != nil, Terminating: pr.terminating, Containers: map[string]reconcile.ContainerState{}}
		for name, c := range pr.containers {
			cs := reconcile.ContainerState{RetryAt: c.retryAt}
			if c.journal == nil && c.starting {
				cs.Exists, cs.State = true, protocol.StateCreating
			}
			if c.journal != nil {
				cs.Exists = true
				cs.State = c.journal.State
				cs.Stopped = c.journal.Stopped
				if e := c.journal.LastExit(); e != nil {
					cs.ExitCode = e.ExitCode
				}
			}
			ps.Containers[name] = cs
		}
		obs[uid] = ps
		busy[uid] = pr.busy
	}
	desired := a.allDesired()
	a.mu.Unlock()

	for _, act := range reconcile.Plan(desired, obs, time.Now()) {
		if busy[act.UID] {
			continue
		}
		busy[act.UID] = true
		a.mu.Lock()
		if a.sweeping[act.UID] {
			// collectOrphans removes its leftovers first; checked where the
			// record is made, so a claim cannot slip in between.
			a.mu.Unlock()
			continue
		}
		pr := a.pods[act.UID]
		if pr == nil {
			pr = &podRecord{pod: act.Pod, containers: map[string]*ctrRecord{}, startTime: time.Now()}
			a.pods[act.UID] = pr
		}
		pr.busy = true
		a.mu.Unlock()
		a.log.V(1).Info("Applying action", "action", act.String())
		a.inflight.Add(1)
		go func(act reconcile.Action) {
			defer a.inflight.Done()
			a.apply(ctx, act)
			a.mu.Lock()
			if pr := a.pods[act.UID]; pr != nil {
				pr.busy = false
			}
			a.mu.Unlock()
			a.changed(act.UID)
			a.poke()
		}(act)
	}
}

func (a *Agent) apply(ctx context.Context, act reconcile.Action) {
	switch act.Kind {
	case reconcile.CreateSandbox:
		a.createSandbox(act.Pod)
	case reconcile.StartContainer:
		a.startContainer(ctx, act.Pod, act.Container, act.Init)
	case reconcile.KillPod:
		a.killPod(act.Pod, "")
	}
}

func (a *Agent) createSandbox(pod *corev1.Pod) {
	sb, err := a.rt.EnsureSandbox(pod)
	if err != nil {
		a.log.Error(err, "Could not create pod sandbox", "pod", klog(pod))
		a.events.Eventf(state.PodObject(pod, ""), state.Warning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return
	}
	// From here until pod.json is written, the sandbox directory without it is
	// the record: a restarted agentd removes such a sandbox (network included)
	// and creates it again.
	crashpoint.Hit("sandbox-created")
	if n := a.network(); n != nil && !pod.Spec.HostNetwork {
		ip, err := n.Setup(context.Background(), string(pod.UID), sb.NetNS)
		if err != nil {
			a.log.Error(err, "Could not set up pod network", "pod", klog(pod))
			a.events.Eventf(state.PodObject(pod, ""), state.Warning, "FailedCreatePodSandBox", "Failed to set up pod network: %v", err)
			a.rt.RemoveSandbox(string(pod.UID))
			return
		}
		sb.PodIP = ip
		crashpoint.Hit("sandbox-network-added")
	}
	if err := savePod(sb.Dir, &savedPod{Pod: pod, Sandbox: sb, Started: time.Now()}); err != nil {
		// Without its record a restarted agentd could not adopt the pod, only
		// remove it: better now than with containers running.
		a.log.Error(err, "Could not record pod", "pod", klog(pod))
		a.events.Eventf(state.PodObject(pod, ""), state.Warning, "FailedCreatePodSandBox", "Failed to record pod sandbox: %v", err)
		a.teardownSandbox(context.Background(), pod.UID, sb.NetNS)
		return
	}
	crashpoint.Hit("sandbox-recorded")
	a.mu.Lock()
	if pr := a.pods[pod.UID]; pr != nil {
		pr.sandbox = sb
		pr.pod = pod
	}
	a.mu.Unlock()
}

// podFile records, in the sandbox dir, the pod as started, so an agent that
// restarts can adopt it (live restore) or tear it down.
const podFile = "pod.json"

type savedPod struct {
	Pod     *corev1.Pod      `json:"pod"`
	Sandbox *runtime.Sandbox `json:"sandbox"`
	Started time.Time        `json:"started"`
	// Terminating is recorded before a pod's containers are stopped: a restarted
	// agentd finishes the removal instead of adopting a pod whose containers
	// were stopped for good, which nothing would start again.
	Terminating bool `json:"terminating,omitempty"`
}

func savePod(dir string, sp *savedPod) error {
	return atomicfile.WriteJSON(filepath.Join(dir, podFile), sp)
}

func loadPod(dir string) (*savedPod, error) {
	data, err := os.ReadFile(filepath.Join(dir, podFile))
	if err != nil {
		return nil, err
	}
	var sp savedPod
	if err := json.Unmarshal(data, &sp); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, podFile), err)
	}
	return &sp, nil
}

func containerSpec(pod *corev1.Pod, name string) (*corev1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], false
		}
	}
	return nil, false
}

// retryAfter is how long a container that could not be created waits to be tried again.
const retryAfter = 10 * time.Second

func (a *Agent) startContainer(ctx context.Context, pod *corev1.Pod, name string, isInit bool) {
	c, _ := containerSpec(pod, name)
	obj := state.PodObject(pod, name)
	a.mu.Lock()
	pr := a.pods[pod.UID]
	if pr == nil || pr.sandbox == nil {
		a.mu.Unlock()
		return
	}
	sb := pr.sandbox
	cr := pr.containers[name]
	if cr == nil {
		cr = &ctrRecord{id: runtime.MonitorID(string(pod.UID), name)}
		pr.containers[name] = cr
	}
	a.mu.Unlock()

	fail := func(reason string, err error) {
		a.mu.Lock()
		cr.waiting, cr.waitingMessage, cr.retryAt = reason, err.Error(), time.Now().Add(retryAfter)
		a.mu.Unlock()
		a.events.Eventf(obj, state.Warning, "Failed", "Error: %s: %v", reason, err)
	}
	img, err := runtime.ResolveImage(a.images, c.Image)
	if err != nil {
		if errors.Is(err, runtime.ErrImageNeverPull) {
			fail("ErrImageNeverPull", err)
		} else {
			fail("ErrImagePull", err)
		}
		return
	}
	a.events.Eventf(obj, state.Normal, "Pulled", "Container image %q already present on machine", c.Image)
	cfg, err := runtime.ContainerConfig(pod, c, isInit, img, sb, a.rt.Settings())
	if err != nil {
		fail("CreateContainerConfigError", err)
		return
	}
	st, err := a.rt.Start(ctx, cfg)
	crashpoint.Hit("container-started")
	if errors.Is(err, runtime.ErrMonitorAlive) {
		// A monitor of this container runs already (one an earlier agentd
		// started): it is adopted, not duplicated.
		a.log.Info("A monitor of this container is running already; adopting it", "pod", klog(pod), "container", name)
		a.mu.Lock()
		cr.starting = true
		a.mu.Unlock()
		a.refreshJournal(cfg.ID)
		return
	}
	if err != nil && !errors.Is(err, protocol.ErrStartFailed) {
		fail("CreateContainerError", err)
		return
	}
	a.mu.Lock()
	cr.waiting, cr.waitingMessage, cr.retryAt, cr.imageID = "", "", time.Time{}, img.ID
	a.mu.Unlock()
	a.events.Eventf(obj, state.Normal, "Created", "Created container %s", name)
	if err != nil {
		a.events.Eventf(obj, state.Warning, "Failed", "Error: %v", err)
	} else {
		a.events.Eventf(obj, state.Normal, "Started", "Started container %s", name)
	}
	a.refreshJournal(cfg.ID)
	if err == nil {
		a.afterStart(pod, c, cr, st)
	}
}

// afterStart runs the postStart hook and starts the container's probes.
func (a *Agent) afterStart(pod *corev1.Pod, c *corev1.Container, cr *ctrRecord, _ *runtime.Started) {
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := a.runHook(pod, c, cr.id, c.Lifecycle.PostStart, 0); err != nil {
			a.events.Eventf(state.PodObject(pod, c.Name), state.Warning, "FailedPostStartHook", "PostStartHook failed: %v %s", err, msg)
			_, _ = a.rt.Kill(context.Background(), cr.id, gracePeriod(pod))
		}
	}
	a.startProbes(pod, c, cr, time.Now())
}

// refreshJournal reads a monitor's journal and turns what changed into events.
func (a *Agent) refreshJournal(id string) {
	j, err := protocol.ReadJournal(filepath.Join(a.opts.RunDir, "monitors", id))
	if err != nil {
		return
	}
	a.applyJournal(id, j)
}

// applyJournal records a monitor's journal and turns what changed into events.
func (a *Agent) applyJournal(id string, j *protocol.Journal) {
	a.mu.Lock()
	pr, name, cr := a.containerByID(id)
	if cr == nil {
		a.mu.Unlock()
		return
	}
	pod := pr.pod
	cr.journal = j
	adoptedRunning := cr.starting && j.State != protocol.StateCreating
	if adoptedRunning {
		cr.starting = false
		adoptedRunning = j.State == protocol.StateRunning
	}
	restarted := j.RestartCount > cr.seenRestarts && j.State == protocol.StateRunning
	if restarted {
		cr.seenRestarts = j.RestartCount
		cr.ready = false
	}
	var exit *protocol.Exit
	if cur := j.Current(); cur != nil && cur.Exit != nil && cr.seenExit != cur.ContainerID+cur.StartedAt.String() {
		cr.seenExit = cur.ContainerID + cur.StartedAt.String()
		exit = cur.Exit
	}
	probes := cr.probes
	a.mu.Unlock()
	if restarted && probes != nil {
		probes.Reset(id)
	}
	if adoptedRunning {
		a.startAdoptedProbes(pod, name, cr, j)
	}

	obj := state.PodObject(pod, name)
	if exit != nil && j.State == protocol.StateBackOff {
		a.events.Eventf(obj, state.Warning, "BackOff", "Back-off restarting failed container %s in pod %s", name, klog(pod))
	}
	if restarted {
		a.events.Eventf(obj, state.Normal, "Started", "Started container %s", name)
	}
	a.changed(pod.UID)
}

// watchJournals reports the id of every monitor whose journal was rewritten.
func (a *Agent) watchJournals(ctx context.Context) (<-chan string, error) {
	dir := filepath.Join(a.opts.RunDir, "monitors")
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = w.Add(filepath.Join(dir, e.Name()))
	}
	out := make(chan string, 64)
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Dir(ev.Name) == dir {
					if ev.Has(fsnotify.Create) {
						_ = w.Add(ev.Name) // a new monitor's directory
					}
					continue
				}
				if filepath.Base(ev.Name) == protocol.JournalFile && ev.Has(fsnotify.Create) {
					out <- filepath.Base(filepath.Dir(ev.Name))
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				a.log.Error(err, "Journal watch")
			}
		}
	}()
	return out, nil
}

// checkMonitors finds monitors that died (kill -9): their containers are killed and
// the exit recorded as MonitorLost; the restart policy is then the agent's job.
func (a *Agent) checkMonitors(ctx context.Context) {
	a.mu.Lock()
	var ids []string
	var starting []string
	for _, pr := range a.pods {
		for _, c := range pr.containers {
			switch {
			case c.journal == nil && c.starting:
				starting = append(starting, c.id)
			case c.journal != nil && c.journal.State != protocol.StateExited:
				ids = append(ids, c.id)
			}
		}
	}
	a.mu.Unlock()
	for _, id := range starting {
		// No journal yet: it is read as soon as there is one; a monitor that
		// died before writing one never started its container.
		// A short look: this runs in the agent's loop; a monitor still
		// starting is looked at again at the next check.
		ictx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		m := a.rt.Inspect(ictx, id)
		cancel()
		switch m.State {
		case runtime.MonitorStarting:
		case runtime.MonitorDead, runtime.MonitorBroken:
			a.log.Info("A container monitor died while it was starting", "container", id, "reason", m.Reason)
			if _, err := a.rt.Cleanup(ctx, id); err != nil && !errors.Is(err, runtime.ErrMonitorAlive) {
				a.log.Error(err, "Could not clean up after a dead monitor", "container", id)
				continue
			}
			a.restartLost(id)
		default:
			a.refreshJournal(id)
		}
	}
	for _, id := range ids {
		j, err := protocol.ReadJournal(filepath.Join(a.opts.RunDir, "monitors", id))
		if err != nil {
			continue
		}
		if a.journalChanged(id, j) {
			// The watch missed it (an overflow, or a write before the watch began).
			a.applyJournal(id, j)
		}
		if j.State == protocol.StateExited || protocol.ProcessAlive(j.MonitorPid, j.MonitorStart) {
			continue
		}
		if _, err := a.rt.Cleanup(ctx, id); err != nil {
			if !errors.Is(err, runtime.ErrMonitorAlive) { // it is not dead after all: looked at again next time
				a.log.Error(err, "Could not clean up after a dead monitor", "container", id)
			}
			continue
		}
		a.log.Info("Container monitor died; its container was killed", "container", id, "monitorPid", j.MonitorPid)
		a.restartLost(id)
	}
}

// monitorIDs lists the monitors of every container the agent records.
func (a *Agent) monitorIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for _, pr := range a.pods {
		for _, c := range pr.containers {
			ids = append(ids, c.id)
		}
	}
	return ids
}

// journalChanged says whether a journal read from disk differs from the one recorded.
func (a *Agent) journalChanged(id string, j *protocol.Journal) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _, c := a.containerByID(id)
	if c == nil {
		return false
	}
	old := c.journal
	return old == nil || old.State != j.State || old.RestartCount != j.RestartCount || len(old.Runs) != len(j.Runs) ||
		old.Current() != nil && j.Current() != nil && (old.Current().Exit == nil) != (j.Current().Exit == nil)
}

// containerByID finds the record of a container by its monitor ID. Callers hold mu.
func (a *Agent) containerByID(id string) (*podRecord, string, *ctrRecord) {
	for _, pr := range a.pods {
		for name, c := range pr.containers {
			if c.id == id {
				return pr, name, c
			}
		}
	}
	return nil, "", nil
}

// startAdoptedProbes starts the probes of an app container whose run agentd did
// not start itself (adopted, or found starting), from the run's start in j.
func (a *Agent) startAdoptedProbes(pod *corev1.Pod, name string, cr *ctrRecord, j *protocol.Journal) {
	spec, isInit := containerSpec(pod, name)
	if spec == nil || isInit {
		return
	}
	var startedAt time.Time
	if cur := j.Current(); cur != nil {
		startedAt = cur.StartedAt
	}
	a.startProbes(pod, spec, cr, startedAt)
}

// restartLost applies the restart policy to a container whose monitor was lost:
// the record is dropped so Plan starts a fresh monitor, keeping the restart count.
func (a *Agent) restartLost(id string) {
	a.mu.Lock()
	pr, name, c := a.containerByID(id)
	if c == nil {
		a.mu.Unlock()
		return
	}
	pod := pr.pod
	restart := pod.Spec.RestartPolicy == corev1.RestartPolicyAlways
	j, err := protocol.ReadJournal(filepath.Join(a.opts.RunDir, "monitors", id))
	if err == nil {
		c.journal = j
		if e := j.LastExit(); e != nil && e.ExitCode != 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
			restart = true
		}
	}
	if err != nil || len(j.Runs) == 0 {
		// Its monitor died before the container ever ran: it is started as if
		// for the first time, whatever the policy, as kubelet does when
		// creating a container failed.
		restart = true
	}
	if c.probeCancel != nil {
		c.probeCancel()
	}
	a.mu.Unlock()
	a.events.Eventf(state.PodObject(pod, name), state.Warning, protocol.ReasonMonitorLost, "The monitor of container %s died; its container was killed", name)
	if restart {
		if err := a.rt.Remove(id); err != nil {
			// Kept: checked again, never started twice.
			a.log.Error(err, "Could not remove the state of a lost container monitor", "container", id)
		} else {
			a.mu.Lock()
			delete(pr.containers, name)
			a.mu.Unlock()
		}
	}
	a.changed(pod.UID)
}

// killPod stops every container of a pod in parallel within its grace period
// (preStop hooks first), then removes its monitors, network and sandbox.
func (a *Agent) killPod(pod *corev1.Pod, why string) {
	a.mu.Lock()
	pr := a.pods[pod.UID]
	if pr == nil {
		a.mu.Unlock()
		return
	}
	pr.terminating = true
	pr.deleted = time.Now()
	type target struct {
		name string
		c    *ctrRecord
	}
	var targets []target
	for name, c := range pr.containers {
		targets = append(targets, target{name, c})
	}
	pr.stopProbes()
	sb := pr.sandbox
	started := pr.startTime
	a.mu.Unlock()
	a.changed(pod.UID)
	if sb != nil {
		if err := savePod(sb.Dir, &savedPod{Pod: pod, Sandbox: sb, Started: started, Terminating: true}); err != nil {
			a.log.Error(err, "Could not record that the pod is being removed", "pod", klog(pod))
		}
	}
	crashpoint.Hit("pod-kill-recorded")

	grace := gracePeriod(pod)
	deadline := time.Now().Add(grace)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func(t target) {
			defer wg.Done()
			spec, _ := containerSpec(pod, t.name)
			m := a.rt.Inspect(context.Background(), t.c.id)
			if m.State == runtime.MonitorAlive && m.Journal != nil && m.Journal.State == protocol.StateRunning {
				a.events.Eventf(state.PodObject(pod, t.name), state.Normal, "Killing", "Stopping container %s", t.name)
				if spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil {
					if msg, err := a.runHook(pod, spec, t.c.id, spec.Lifecycle.PreStop, time.Until(deadline)); err != nil {
						a.events.Eventf(state.PodObject(pod, t.name), state.Warning, "FailedPreStopHook", "PreStopHook failed: %v %s", err, msg)
					}
				}
			}
			remaining := time.Until(deadline)
			if remaining < 0 {
				remaining = 0
			}
			ctx, cancel := context.WithTimeout(context.Background(), remaining+30*time.Second)
			defer cancel()
			if _, err := a.rt.Stop(ctx, t.c.id, remaining); err != nil {
				a.log.Error(err, "Could not stop container", "pod", klog(pod), "container", t.name)
			}
			if err := a.rt.Remove(t.c.id); err != nil {
				a.log.Error(err, "Could not remove container", "pod", klog(pod), "container", t.name)
			}
		}(t)
	}
	wg.Wait()
	crashpoint.Hit("pod-containers-stopped")
	netns := ""
	if sb != nil {
		netns = sb.NetNS
	}
	a.teardownSandbox(context.Background(), pod.UID, netns)
	a.mu.Lock()
	delete(a.pods, pod.UID)
	a.mu.Unlock()
	a.log.Info("Pod stopped", "pod", klog(pod), "reason", why)
	a.watchers.deleted(pod)
}

// teardownSandbox detaches a pod from the network (netns "" for a host-network
// pod) and removes its sandbox, volumes and cgroup. Each step is idempotent, so
// a removal that agentd's crash interrupted is finished by running it again.
func (a *Agent) teardownSandbox(ctx context.Context, uid types.UID, netns string) {
	if n := a.network(); n != nil && netns != "" {
		if err := n.Teardown(ctx, string(uid), netns); err != nil {
			a.log.Error(err, "Could not tear down pod network", "uid", uid)
		}
		crashpoint.Hit("pod-network-removed")
	}
	a.rt.RemoveSandbox(string(uid))
}

func gracePeriod(pod *corev1.Pod) time.Duration {
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

func klog(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

// shutdown leaves the pods to their monitors (live restore) or stops them all in
// parallel within their grace periods.
func (a *Agent) shutdown() error {
	// A pod being started when the signal came must be finished, so it is known
	// (and stopped below when live restore is off) rather than left half made.
	a.inflight.Wait()
	a.mu.Lock()
	live := a.liveRestore && !a.clusterOn
	var pods []*corev1.Pod
	for _, pr := range a.pods {
		if pr.stopProbes(); !pr.terminating {
			pods = append(pods, pr.pod)
		}
	}
	a.mu.Unlock()
	if live {
		a.saveState(true)
		a.log.Info("Stopping agentd; live restore is on, containers keep running", "pods", len(pods))
		return nil
	}
	defer a.saveState(true)
	a.log.Info("Stopping agentd and its pods", "pods", len(pods))
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func(p *corev1.Pod) {
			defer wg.Done()
			a.killPod(p, "agentd stopping")
		}(p)
	}
	wg.Wait()
	return nil
}

// stopProbes stops the probes of a pod's containers. Callers hold Agent.mu.
func (pr *podRecord) stopProbes() {
	for _, c := range pr.containers {
		if c.probeCancel != nil {
			c.probeCancel()
		}
	}
}

// sortedPods returns the records' pods with status, sorted by namespace/name.
func (a *Agent) sortedPods() []corev1.Pod {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]corev1.Pod, 0, len(a.pods)+len(a.desired))
	seen := map[types.UID]bool{}
	for uid, pr := range a.pods {
		seen[uid] = true
		out = append(out, a.podWithStatus(pr))
	}
	for _, d := range a.allDesired() {
		if !seen[d.UID] {
			p := d.DeepCopy()
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: state.QOSClass(d)}
			p.CreationTimestamp = metav1.NewTime(a.started)
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp)
	})
	return out
}

// podWithStatus is a pod as the API shows it. Callers hold mu.
func (a *Agent) podWithStatus(pr *podRecord) corev1.Pod {
	p := pr.pod.DeepCopy()
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	p.CreationTimestamp = metav1.NewTime(pr.startTime)
	if pr.terminating {
		t := metav1.NewTime(pr.deleted)
		p.DeletionTimestamp = &t
		p.DeletionGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	}
	info := &state.PodInfo{SandboxReady: pr.sandbox != nil, StartTime: pr.startTime, HostIP: "", Containers: map[string]*state.ContainerInfo{}}
	if pr.sandbox != nil {
		info.PodIP, info.HostIP = pr.sandbox.PodIP, pr.sandbox.HostIP
	}
	for name, c := range pr.containers {
		info.Containers[name] = &state.ContainerInfo{Journal: c.journal, Waiting: c.waiting, WaitingMessage: c.waitingMessage,
			Ready: c.ready, Started: c.started, ImageID: c.imageID}
	}
	p.Status = state.PodStatus(pr.pod, info, time.Now())
	if len(pr.unmanaged) > 0 {
		p.Status.Reason = "Unmanaged"
		p.Status.Message = "its monitors speak an older, incompatible protocol; agentd does not start a duplicate: stop it with: agentctl delete pod --unmanaged " + p.Name + " (agentd then runs it from its manifest)"
	}
	return *p
}

var _ api.Backend = (*Agent)(nil)
