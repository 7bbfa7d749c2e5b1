// Package agent is agentd's wiring: one loop that feeds manifest snapshots, the
// cluster's pods and the runtime's events to reconcile.Plan and hands each pod
// that has work to its pod worker. Where a pod's life is decided: package
// reconcile (Plan, the restore decisions, retry delays). Where it is carried
// out: the pod workers' syncPod (sync.go), the runtime (package runtime, behind
// runtime.Interface) and the monitors. What the API shows comes from the status
// manager (status.go) through the pure functions of package state; the API and
// the cluster reach the agent through adapters (backend.go, clusterhost.go).
//
// Settings: every agentd setting (see agent/config) reaches it through Options.
package agent

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/agent/imagegc"
	"github.com/agentd-project/agentd/agent/metrics"
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
	ManifestDir string
	Root        string
	RunDir      string
	LogDir      string
	Socket      string
	CRISocket   string // the Kubernetes CRI's socket; "" turns it off
	// CRIStreamAddress is where the CRI's streaming server (exec, attach, port forward) listens; "" turns it off.
	CRIStreamAddress string
	NodeName         string
	StorageDriver    string
	CgroupParent     string
	LiveRestore      bool
	RelistInterval   time.Duration
	BackoffBase      time.Duration
	SeccompDefault   bool  // RuntimeDefault for containers that name no seccomp profile
	PidsLimit        int64 // every container's pids.max; 0 is none
	MonitorPath      string
	ImageLimits      image.Limits // image-max-size, image-store-max-size
	ImageGC          imagegc.Policy
	ImageGCPeriod    time.Duration
	// EventSpamFilter drops events past client-go's spam budget, as kubelet's
	// recorder does (state.RecorderOptions); agentd turns it on.
	EventSpamFilter bool
	Pull            PullOptions
	Network         network.Config
	Log             logr.Logger
	// RestoreSensitive are the settings whose change means running pods are
	// replaced rather than adopted (key → value).
	RestoreSensitive map[string]string
	// Version is agentd's version, registered with the node in cluster mode.
	Version string
	Cluster ClusterOptions
	// Metrics, when not nil, are the agent's Prometheus metrics, served on
	// MetricsAddress (metrics-address); nil turns instrumentation off.
	Metrics        *metrics.Metrics
	MetricsAddress string
}

// ImageStore is the agent's view of the image store.
type ImageStore interface {
	List() ([]image.Image, error)
	Import(ctx context.Context, archive string) ([]image.Image, error)
	// Resolve finds a container's image (runtime.ErrImageNeverPull when absent).
	Resolve(ref string) (*runtime.Image, error)
	SetLimits(image.Limits)
}

// PodNetwork attaches pods to the node's pod network (package network).
type PodNetwork interface {
	Setup(ctx context.Context, podUID, netnsPath string) (string, error)
	Teardown(ctx context.Context, podUID, netnsPath string) error
	Collect(ctx context.Context, keep func(podUID string) bool) ([]string, error)
	ProtectHostPorts(ctx context.Context, ports []uint16) error
}

var _ PodNetwork = (*network.Network)(nil)

// Agent runs the pods of a manifest directory and of the cluster.
type Agent struct {
	opts   Options
	log    logr.Logger
	rt     runtime.Interface
	images ImageStore
	// imageMgr pulls images by the containers' pull policies (imagepull.go).
	imageMgr *imageManager
	events   *state.Recorder
	status   *statusManager
	workers  *podWorkers
	cluster  *cluster.Node
	started  time.Time
	// endStartupGC gives the GC back its GOGC after the start (startupGC); a
	// no-op once done, or when Run never lowered it.
	endStartupGC func()
	// probeClock is the probes' clock (a fake one in tests).
	probeClock probe.Clock

	// netw is the pod network, nil when unavailable; its set-up (CNI plugin
	// checks) runs beside restore: read it through network(), which waits.
	netw     PodNetwork
	netReady chan struct{}

	qosMu sync.Mutex // serialises updateQOS

	// store is the image store, and gc its garbage collector (both nil in
	// tests with a fake store); gc
	// runs every gcPeriod, and at once with a new period from gcKick.
	store    *image.Store
	gc       *imagegc.Collector
	gcPeriod atomic.Int64
	gcKick   chan struct{}

	mu      sync.Mutex               // guards the fields below
	pods    map[types.UID]*podRecord // the pods the agent runs
	desired []*corev1.Pod            // static pods
	// synced is set by the first manifest snapshot: until then an empty desired
	// state means "not read yet", not "remove every pod".
	synced bool
	// clusterDesired are the pods of the cluster's DaemonSets this node runs.
	clusterDesired []*corev1.Pod
	// fileErrors are the manifest files' errors of the last snapshot, by path,
	// reason and message: an event is recorded for each when it first shows.
	fileErrors map[string]bool
	// desiredSince is when each desired pod (static or the cluster's) was first
	// desired: its creation time, shown before it starts (noteDesired).
	desiredSince map[types.UID]time.Time
	// liveRestore is the configured value; it may change at SIGHUP. It is in
	// effect only while clusterOn is false (liveRestoreOn).
	liveRestore bool
	clusterOn   bool
	joinErr     error // why cluster.enabled could not join yet
	// imagesStarting counts the containers being made from each image ID.
	imagesStarting map[string]int
	// sweeping are the pods whose leftovers collectOrphans removes; their
	// workers leave them alone until it is done.
	sweeping map[types.UID]bool

	// collecting is set while collectOrphans stops what belongs to no pod.
	collecting atomic.Bool

	// metrics is Options.Metrics (nil: off); resources reads cgroups for
	// /metrics/resource and top (instrument.go).
	metrics   *metrics.Metrics
	resources *metrics.Resources

	// cri is what the CRI keeps beside the pods (cri_sandbox.go).
	cri criState

	wake     chan struct{}
	watchers watchers
	warnings []string // for info; set before Run serves the API
}

// podRecord is a pod the agent runs. Fields are guarded by Agent.mu.
type podRecord struct {
	pod         *corev1.Pod
	sandbox     *runtime.Sandbox
	terminating bool
	deleted     time.Time
	startTime   time.Time
	containers  map[string]*ctrRecord
	unmanaged   []string // monitor IDs of an incompatible version: shown, never duplicated
	// startObserved: its start duration was observed (or it was adopted).
	startObserved bool
	// cri is set for a sandbox a CRI client made (cri_sandbox.go): the
	// reconciler and the pod workers leave it alone.
	cri *criPod
}

// ctrRecord is a container of a pod; its status is in the status manager, by
// id. Fields are guarded by Agent.mu.
type ctrRecord struct {
	id          string // monitor ID
	retryAt     time.Time
	probeCancel context.CancelFunc
	probes      *probe.Set
	seen        journalSeen
	// starting: a monitor adopted (or found by Start) while it was still
	// creating its container; its probes start once its journal says Running.
	starting bool
	// lost: the runtime reported its monitor dead; the pod's worker cleans up.
	lost bool
	// killing: a kill of its current run (restartContainer) is under way.
	killing bool
	// preStop is the last run whose preStop hook was started (preStopOnce).
	preStop *preStopRun
	// cgroup is the cgroup an adopted container's monitor was configured with
	// (an earlier agentd's layout may differ); "": runtime.Cgroup's.
	cgroup string
}

// preStopRun is a run of a container whose preStop hook was started; done is
// closed when the hook has returned.
type preStopRun struct {
	run  string // runKey
	done chan struct{}
}

// New prepares an agent with the real runtime, image store and network; Run
// starts it.
func New(opts Options) (*Agent, error) {
	images, err := image.Open(filepath.Join(opts.Root, "images"))
	if err != nil {
		return nil, err
	}
	images.SetLimits(opts.ImageLimits)
	// The pull settings' files first: a bad one fails the start before anything runs.
	pullOpts, err := pullerOptions(opts.Root, opts.Pull, opts.Log.WithName("pull"))
	if err != nil {
		return nil, err
	}
	var a *Agent // set below, before the runtime calls the hook
	rt, err := runtime.New(runtime.Config{
		CRILogRoot: func(uid string) (string, bool) { return a.cri.logRoot(uid) },
		Settings: runtime.Settings{
			Root: opts.Root, RunDir: opts.RunDir, LogDir: opts.LogDir, CgroupParent: opts.CgroupParent,
			StorageDriver: opts.StorageDriver, NodeName: opts.NodeName, BackoffBase: opts.BackoffBase,
			SeccompDefault: opts.SeccompDefault, PidsLimit: opts.PidsLimit, NodeMemory: nodeMemory(),
			NodeMilliCPU: nodeMilliCPU(), NodeEphemeralStorage: nodeEphemeralStorage(opts.Root),
		},
		MonitorPath: opts.MonitorPath,
	}, opts.Log.WithName("runtime"))
	if err != nil {
		return nil, err
	}
	a = newAgent(opts, rt, storeImages{images})
	a.store = images
	a.imageMgr.setPuller(pull.New(images, pullOpts))
	a.gc = a.newImageGC(images)
	a.gc.SetPolicy(opts.ImageGC)
	if opts.Network.StateDir == "" {
		opts.Network.StateDir = filepath.Join(opts.RunDir, "network")
	}
	go func() {
		n, err := network.New(opts.Network)
		if err != nil {
			// Pods still run, each with its own loopback only; say so once.
			a.log.Error(err, "Pod networking unavailable: pods get a loopback-only network namespace")
			a.setNetwork(nil)
			return
		}
		a.setNetwork(n)
		// Once for the whole subnet, so that no pod's set-up runs iptables
		// for it. Restore need not wait: a pod's set-up waits for it (or
		// does it itself, as when it failed here).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.SetupMasquerade(ctx); err != nil {
			a.log.Error(err, "Could not set up masquerading for the pod network; pods' network set-up will retry it")
		}
	}()
	return a, nil
}

// newAgent wires an agent to its runtime and images; the network comes later,
// through setNetwork.
func newAgent(opts Options, rt runtime.Interface, images ImageStore) *Agent {
	a := &Agent{opts: opts, log: opts.Log, rt: rt, images: images, pods: map[types.UID]*podRecord{},
		wake: make(chan struct{}, 1), netReady: make(chan struct{}), liveRestore: opts.LiveRestore,
		started: time.Now(), status: newStatusManager(), events: state.NewRecorderWithOptions(opts.NodeName, 1000, state.RecorderOptions{SpamFilter: opts.EventSpamFilter, Log: opts.Log.WithName("events")}),
		probeClock: probe.RealClock{}, imagesStarting: map[string]int{}, gcKick: make(chan struct{}, 1), endStartupGC: func() {}}
	a.gcPeriod.Store(int64(cmp.Or(opts.ImageGCPeriod, 5*time.Minute)))
	a.imageMgr = newImageManager(images, a.events, opts.BackoffBase, clock.RealClock{}, opts.Log.WithName("images"))
	// Work on pods is not cancelled by the signal that stops agentd: a start under
	// way finishes, to be stopped or kept (only a pull ends, at Shutdown).
	a.workers = newPodWorkers(context.Background(), a.timedSync(a.syncPod))
	a.cluster = cluster.New(cluster.Config{
		Root: opts.Root, NodeName: opts.NodeName, Labels: opts.Cluster.NodeLabels, Version: opts.Version,
		EtcdEndpoints: opts.Cluster.EtcdEndpoints, EtcdTLS: opts.Cluster.EtcdTLS, NodeTTL: opts.Cluster.NodeTTL,
		Host: clusterHost{a}, Log: opts.Log.WithName("cluster"),
	})
	a.instrument()
	return a
}

// setNetwork hands the agent its pod network (nil: unavailable); once.
func (a *Agent) setNetwork(n PodNetwork) {
	a.netw = n
	close(a.netReady)
}

// network returns the pod network once it is set up, or nil when it is unavailable.
func (a *Agent) network() PodNetwork {
	<-a.netReady
	return a.netw
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

// SetImageLimits changes the disk budget of the image imports that start from now on (SIGHUP).
func (a *Agent) SetImageLimits(l image.Limits) { a.images.SetLimits(l) }

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
		go clusterHost{a}.ProtectClusterPorts(nil) // what an agentd that crashed in a cluster left
	}
	a.autoJoin(ctx)
	a.endStartupGC = sync.OnceFunc(startupGC())
	defer a.endStartupGC()
	if err := a.restore(ctx); err != nil {
		return err
	}
	srv, err := api.Listen(a.opts.Socket, apiBackend{a}, a.log.WithName("api"))
	if err != nil {
		return err
	}
	defer srv.Close()
	a.restoreQOS()
	if a.opts.MetricsAddress != "" && a.metrics != nil {
		ms, err := metrics.Listen(a.opts.MetricsAddress, a.metrics.Handler(), a.log.WithName("metrics"))
		if err != nil {
			return err
		}
		defer ms.Close()
		a.log.Info("Serving metrics", "address", ms.Addr().String(), "paths", "/metrics, /metrics/resource")
	}
	stopCRI, err := a.serveCRI()
	if err != nil {
		return err
	}
	defer stopCRI()

	snapshots := make(chan source.Snapshot, 1)
	go func() {
		if err := source.Run(ctx, source.Config{Dir: a.opts.ManifestDir, NodeName: a.opts.NodeName, Relist: a.opts.RelistInterval, Log: a.log.WithName("source")}, snapshots); err != nil && ctx.Err() == nil {
			a.log.Error(err, "Manifest source stopped")
		}
	}()
	if a.gc != nil {
		go a.runImageGC(ctx)
	}
	if own, canLower := ownOOMScoreAdj(); oomScoresCapped(own, canLower) {
		a.log.Info("WARNING: agentd lacks CAP_SYS_RESOURCE: container monitors and Guaranteed containers keep agentd's oom_score_adj instead of their lower one",
			"oomScoreAdj", own, "monitorOOMScoreAdj", protocol.MonitorOOMScoreAdj, "guaranteedOOMScoreAdj", runtime.GuaranteedOOMScoreAdj)
	}
	return a.loop(ctx, snapshots)
}

// loop is the agent's one loop: it takes snapshots and runtime events, and after
// each one hands every pod that has work to its worker. It returns when ctx is
// done, after shutdown.
func (a *Agent) loop(ctx context.Context, snapshots <-chan source.Snapshot) error {
	loopCtx, stopLoop := context.WithCancel(context.Background())
	defer stopLoop()
	// The watch reports every journal once when it begins: what a monitor wrote
	// between restore's read and now is not missed.
	events, err := a.rt.Watch(loopCtx)
	if err != nil {
		return err
	}
	a.log.Info("agentd is running", "manifestDir", a.opts.ManifestDir, "socket", a.opts.Socket, "liveRestore", a.liveRestoreOn())

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// The first collection, a second after start, finds what restore could not
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
		case ev, ok := <-events:
			if !ok {
				events = nil // the watch ended: only when loopCtx is done
				continue
			}
			a.handleEvent(ev)
		case <-a.wake:
		case now := <-tick.C:
			// A second into the loop restore is long done, and so is the first
			// snapshot's start of pods: the GC is the operator's again.
			a.endStartupGC()
			if now.Sub(lastCheck) >= 5*time.Second {
				lastCheck = now
				// The network's state is read with iptables: less often.
				withNetwork := now.Sub(lastNetCheck) >= time.Minute
				if withNetwork {
					lastNetCheck = now
				}
				a.collectOrphans(loopCtx, withNetwork)
			}
		}
		a.dispatch()
	}
}

// liveRestoreOn says whether live restore is in effect: configured, and not in cluster mode.
func (a *Agent) liveRestoreOn() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.liveRestore && !a.clusterOn
}

// poke wakes the loop, which then dispatches again.
func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// changed wakes API watchers, and the cluster when a DaemonSet's pod changed.
func (a *Agent) changed(uid types.UID) {
	a.mu.Lock()
	ds := uid != "" && a.pods[uid] != nil && a.pods[uid].pod.Annotations[daemonset.AnnotationDaemonSet] != ""
	a.mu.Unlock()
	a.watchers.notify()
	a.observePodStart(uid)
	if ds {
		a.cluster.PodsChanged()
	}
}

// applySnapshot takes a new desired state; invalid files become events.
func (a *Agent) applySnapshot(snap source.Snapshot) {
	a.mu.Lock()
	a.desired = snap.Pods
	a.synced = true
	a.noteDesired(time.Now())
	var fresh []source.FileError
	a.fileErrors, fresh = newFileErrors(a.fileErrors, snap.Errors)
	a.mu.Unlock()
	for _, fe := range fresh {
		a.events.Event(a.nodeObject(), state.Warning, fe.Reason,
			fmt.Sprintf("%s: %v", fe.Path, fe.Err))
	}
	a.changed("")
}

// newFileErrors returns the errors of a snapshot by key, and those of them that
// were not in the last snapshot's (seen): a file that stays broken is reported
// once, not again with every change elsewhere in the directory, which would
// also spend the node's budget of Warning events (the spam filter); one that is
// fixed and broken again is reported again.
func newFileErrors(seen map[string]bool, errs []source.FileError) (map[string]bool, []source.FileError) {
	now := make(map[string]bool, len(errs))
	var fresh []source.FileError
	for _, fe := range errs {
		k := fe.Path + "\x00" + fe.Reason + "\x00" + fe.Err.Error()
		if !seen[k] && !now[k] {
			fresh = append(fresh, fe)
		}
		now[k] = true
	}
	return now, fresh
}

// noteDesired records when each desired pod was first desired, and forgets the
// pods no longer desired. Callers hold mu.
func (a *Agent) noteDesired(now time.Time) {
	if a.desiredSince == nil {
		a.desiredSince = map[types.UID]time.Time{}
	}
	want := map[types.UID]bool{}
	for _, p := range a.allDesired() {
		want[p.UID] = true
		if _, ok := a.desiredSince[p.UID]; !ok {
			a.desiredSince[p.UID] = now
		}
	}
	for uid := range a.desiredSince {
		if !want[uid] {
			delete(a.desiredSince, uid)
		}
	}
}

// allDesired is the static pods and the cluster's. Callers hold mu.
func (a *Agent) allDesired() []*corev1.Pod {
	if len(a.clusterDesired) == 0 {
		return a.desired
	}
	return append(slices.Clip(a.desired), a.clusterDesired...)
}

// observed is what Plan sees of the pods the agent runs. Callers hold mu.
func (a *Agent) observed() reconcile.Observed {
	obs := reconcile.Observed{}
	for uid, pr := range a.pods {
		if pr.cri != nil {
			continue // the CRI client's: never planned for
		}
		ps := &reconcile.PodState{Pod: pr.pod, Sandbox: pr.sandbox != nil, Terminating: pr.terminating, Containers: map[string]reconcile.ContainerState{}}
		for name, c := range pr.containers {
			cs := reconcile.ContainerState{RetryAt: c.retryAt}
			j := a.status.Journal(c.id)
			switch {
			case j != nil:
				cs.Exists, cs.State = true, j.State
				if e := j.LastExit(); e != nil {
					cs.ExitCode = e.ExitCode
				}
				if cspec, _ := containerSpec(pr.pod, name); cspec != nil && j.State == protocol.StateRunning {
					if ci := a.status.Info(c.id); ci != nil {
						cs.Started, _ = state.Readiness(cspec, ci.StartupPassed, ci.ReadinessPassed)
					}
				}
			case c.starting:
				cs.Exists, cs.State = true, protocol.StateCreating
			}
			ps.Containers[name] = cs
		}
		obs[uid] = ps
	}
	return obs
}

// plan is the plan of every pod now; nil until the first manifest snapshot.
func (a *Agent) plan() []reconcile.Action {
	a.mu.Lock()
	if !a.synced {
		a.mu.Unlock()
		return nil
	}
	obs := a.observed()
	desired := a.allDesired()
	a.mu.Unlock()
	return reconcile.Plan(desired, obs, time.Now())
}

// dispatch hands every pod the plan has work for to its worker.
func (a *Agent) dispatch() {
	defer a.reconcileDone(time.Now())
	seen := map[types.UID]bool{}
	for _, act := range a.plan() {
		if act.Kind == reconcile.KillPod {
			// A pull for a pod being removed ends (kubelet cancels the sync of
			// a pod it kills); its kill then runs on the pod's worker.
			a.workers.CancelSync(act.UID)
		}
		if !seen[act.UID] {
			seen[act.UID] = true
			a.workers.UpdatePod(act.UID, podUpdate{})
		}
	}
}

func klog(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

// shutdown leaves the pods to their monitors (live restore) or stops them all in
// parallel within their grace periods.
func (a *Agent) shutdown() error {
	// Work under way (a pod being started) is finished, so the pod is known (and
	// stopped below when live restore is off) rather than left half made.
	a.workers.Shutdown()
	a.mu.Lock()
	live := a.liveRestore && !a.clusterOn
	var pods []*corev1.Pod
	var criPods []*podRecord
	for _, pr := range a.pods {
		if pr.cri != nil {
			criPods = append(criPods, pr)
			continue
		}
		if pr.stopProbes(); !pr.terminating {
			pods = append(pods, pr.pod)
		}
	}
	a.mu.Unlock()
	if live {
		a.saveState(true)
		a.log.Info("Stopping agentd; live restore is on, containers keep running", "pods", len(pods), "criSandboxes", len(criPods))
		return nil
	}
	defer a.saveState(true)
	a.log.Info("Stopping agentd and its pods", "pods", len(pods), "criSandboxes", len(criPods))
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func(p *corev1.Pod) {
			defer wg.Done()
			a.killPod(p, "agentd stopping")
		}(p)
	}
	for _, pr := range criPods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.stopCRIPodForShutdown(pr)
		}()
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

// sortedPods returns the records' pods with status, and the desired pods not
// started yet, sorted by namespace/name (listPods).
func (a *Agent) sortedPods() []corev1.Pod {
	a.mu.Lock()
	defer a.mu.Unlock()
	running := make([]corev1.Pod, 0, len(a.pods))
	for _, pr := range a.pods {
		running = append(running, a.podWithStatus(pr))
	}
	return listPods(running, a.allDesired(), a.desiredSince, a.started)
}

// listPods is what the API lists: the pods the agent runs (with their status)
// and the desired pods it has not started yet, Pending, created when they were
// first desired (since; agentd's start when unknown). A desired pod whose name a
// running pod holds (the old copy of a changed manifest, which must be gone
// before the new one starts) is not listed beside it: a name has one row, as an
// API server has one object per name. Sorted by namespace and name.
func listPods(running []corev1.Pod, desired []*corev1.Pod, since map[types.UID]time.Time, started time.Time) []corev1.Pod {
	out := slices.Clone(running)
	seen := map[types.UID]bool{}
	names := map[string]bool{}
	for _, p := range running {
		seen[p.UID] = true
		names[p.Namespace+"/"+p.Name] = true
	}
	for _, d := range desired {
		if seen[d.UID] || names[d.Namespace+"/"+d.Name] {
			continue
		}
		p := d.DeepCopy()
		p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: state.QOSClass(d)}
		created, ok := since[d.UID]
		if !ok {
			created = started
		}
		p.CreationTimestamp = metav1.NewTime(created)
		out = append(out, *p)
	}
	sort.SliceStable(out, func(i, j int) bool {
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
	if pr.cri != nil {
		return a.criPodWithStatus(pr)
	}
	p := pr.pod.DeepCopy()
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	// Created when first desired, when that is known and earlier than its start
	// (it waited for an old copy to go): its AGE does not jump back as it starts.
	created := pr.startTime
	if t, ok := a.desiredSince[pr.pod.UID]; ok && t.Before(created) {
		created = t
	}
	p.CreationTimestamp = metav1.NewTime(created)
	if pr.terminating {
		t := metav1.NewTime(pr.deleted)
		p.DeletionTimestamp = &t
		p.DeletionGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	}
	info := &state.PodInfo{SandboxReady: pr.sandbox != nil, StartTime: pr.startTime, Containers: map[string]*state.ContainerInfo{}}
	if pr.sandbox != nil {
		info.PodIP, info.HostIP = pr.sandbox.PodIP, pr.sandbox.HostIP
	}
	for name, c := range pr.containers {
		info.Containers[name] = a.status.Info(c.id)
	}
	p.Status = state.PodStatus(pr.pod, info, time.Now())
	if len(pr.unmanaged) > 0 {
		p.Status.Reason = "Unmanaged"
		p.Status.Message = "its monitors speak an older, incompatible protocol; agentd does not start a duplicate: stop it with: agentctl delete pod --unmanaged " + p.Name + " (agentd then runs it from its manifest)"
	}
	return *p
}

// storeImages is the image store as the agent sees it.
type storeImages struct{ *image.Store }

func (s storeImages) Resolve(ref string) (*runtime.Image, error) {
	return runtime.ResolveImage(s.Store, ref)
}

var _ ImageStore = storeImages{}
