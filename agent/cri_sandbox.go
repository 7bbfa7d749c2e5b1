package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/network"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/cri/record"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// The CRI's sandboxes are pods of agentd's (podRecord with cri set): same
// sandbox, monitors, logs and restore as static pods, but the reconciler
// never plans for them (observed skips them) and their pod workers never see
// them: the CRI's requests change them, one at a time per sandbox (criPod.op).

// criPod is the CRI part of a pod record.
type criPod struct {
	// op serialises the CRI requests that change this sandbox or its
	// containers. Taken before Agent.mu, never while holding it.
	op sync.Mutex
	// rec is the sandbox's record; nil while RunPodSandbox makes it. Guarded
	// by Agent.mu (replaced, never changed in place).
	rec *record.Sandbox
	// ctrs are its containers by CRI ID. Guarded by Agent.mu (records
	// replaced, never changed in place).
	ctrs map[string]*record.Container
}

// criState is what the CRI keeps beside the pods: reserved names and the log
// directories of its sandboxes (the runtime's CRILogRoot). Safe for
// concurrent use; mu is a leaf lock.
type criState struct {
	mu       sync.Mutex
	names    map[string]string // reserved name → the ID holding it; guarded by mu
	logRoots map[string]string // sandbox ID → LogDirectory; guarded by mu
}

// reserve reserves name for id; false if another ID holds it.
func (s *criState) reserve(name, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names == nil {
		s.names = map[string]string{}
	}
	if holder, ok := s.names[name]; ok && holder != id {
		return false
	}
	s.names[name] = id
	return true
}

// release frees name if id holds it.
func (s *criState) release(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] == id {
		delete(s.names, name)
	}
}

func (s *criState) setLogRoot(id, dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logRoots == nil {
		s.logRoots = map[string]string{}
	}
	if dir == "" {
		delete(s.logRoots, id)
		return
	}
	s.logRoots[id] = dir
}

// logRoot is the runtime's CRILogRoot hook.
func (s *criState) logRoot(podUID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.logRoots[podUID]
	return d, ok
}

// containerKey is the name a container reserves: per sandbox.
func containerKey(sandboxID string, md *runtimeapi.ContainerMetadata) string {
	return sandboxID + "/" + record.ContainerKey(md)
}

// criSandbox finds CRI sandbox id: its pod record, or nil.
func (a *Agent) criSandbox(id string) *podRecord {
	if !record.ValidID(id) {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if pr := a.pods[types.UID(id)]; pr != nil && pr.cri != nil {
		return pr
	}
	return nil
}

// RunPodSandbox implements criserver.Backend: the name is reserved, the pod
// record made (so the orphan collector leaves it alone), then the sandbox,
// its network and last its record on disk; a failure undoes what was done.
func (b criBackend) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	a := b.a
	id := record.NewID()
	pod, err := record.SandboxPod(id, cfg)
	if err != nil {
		return "", fmt.Errorf("%w: %w", criserver.ErrInvalidArgument, err)
	}
	key := record.SandboxKey(cfg.Metadata)
	if !a.cri.reserve(key, id) {
		return "", fmt.Errorf("%w: sandbox name %q is reserved by another sandbox", criserver.ErrAlreadyExists, key)
	}
	cp := &criPod{ctrs: map[string]*record.Container{}}
	cp.op.Lock()
	defer cp.op.Unlock()
	a.mu.Lock()
	a.pods[pod.UID] = &podRecord{pod: pod, containers: map[string]*ctrRecord{}, startTime: time.Now(), startObserved: true, cri: cp}
	a.mu.Unlock()
	a.cri.setLogRoot(id, cfg.LogDirectory)
	undo := func() {
		a.mu.Lock()
		delete(a.pods, pod.UID)
		a.mu.Unlock()
		a.cri.setLogRoot(id, "")
		a.cri.release(key, id)
	}
	if d := cfg.LogDirectory; d != "" {
		// As CRI-O does: the client (root) named it; kubelet makes it itself.
		if err := os.MkdirAll(d, 0o755); err != nil {
			undo()
			return "", fmt.Errorf("sandbox %s: log directory: %w", key, err)
		}
	}
	a.updateQOS("")
	sb, err := a.rt.EnsureSandbox(pod)
	if err != nil {
		a.rt.RemoveSandbox(id)
		undo()
		a.updateQOS("")
		return "", fmt.Errorf("sandbox %s: %w", key, err)
	}
	rec := &record.Sandbox{ID: id, Config: cfg, RuntimeHandler: handler, CreatedAt: time.Now(), State: record.StateReady}
	if n := a.network(); n != nil && !pod.Spec.HostNetwork {
		ip, err := setupNetworkWithPorts(context.WithoutCancel(ctx), n, id, sb.NetNS, criPortMappings(cfg.GetPortMappings()))
		if err != nil {
			a.teardownSandbox(context.Background(), pod.UID, sb.NetNS)
			undo()
			return "", fmt.Errorf("sandbox %s: pod network: %w", key, err)
		}
		sb.PodIP = ip
	}
	if !pod.Spec.HostNetwork {
		rec.IP = sb.PodIP
	}
	if err := savePod(sb.Dir, &savedPod{Sandbox: sb, Started: rec.CreatedAt, CRI: rec}); err != nil {
		a.teardownSandbox(context.Background(), pod.UID, sb.NetNS)
		undo()
		return "", fmt.Errorf("sandbox %s: record: %w", key, err)
	}
	a.mu.Lock()
	pr := a.pods[pod.UID]
	pr.sandbox = sb
	cp.rec = rec
	a.mu.Unlock()
	a.log.Info("CRI sandbox ready", "sandbox", id, "name", key, "ip", rec.IP)
	a.changed(pod.UID)
	return id, nil
}

// StopPodSandbox implements criserver.Backend: its containers stop at once
// (the client stopped them with their grace periods already), the network is
// released, and the sandbox is NOTREADY. Its pinned namespaces and records
// stay until RemovePodSandbox.
func (b criBackend) StopPodSandbox(ctx context.Context, id string) error {
	pr := b.a.criSandbox(id)
	if pr == nil {
		return nil
	}
	pr.cri.op.Lock()
	defer pr.cri.op.Unlock()
	return b.a.stopCRISandbox(ctx, pr, 0)
}

// stopCRISandbox stops a CRI sandbox's containers within grace and makes it
// NOTREADY. Callers hold pr.cri.op.
func (a *Agent) stopCRISandbox(ctx context.Context, pr *podRecord, grace time.Duration) error {
	a.mu.Lock()
	rec, sb := pr.cri.rec, pr.sandbox
	var ctrs []*record.Container
	for _, c := range pr.cri.ctrs {
		ctrs = append(ctrs, c)
	}
	a.mu.Unlock()
	if rec == nil || sb == nil {
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ctrs))
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.stopCRIContainer(ctx, c, grace)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if rec.State == record.StateNotReady {
		return nil
	}
	if n := a.network(); n != nil && sb.NetNS != "" {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removalTimeout)
		err := n.Teardown(tctx, rec.ID, sb.NetNS)
		cancel()
		if err != nil {
			return fmt.Errorf("sandbox %s: pod network: %w", rec.ID, err)
		}
	}
	nrec := *rec
	nrec.State = record.StateNotReady
	if err := savePod(sb.Dir, &savedPod{Sandbox: sb, Started: pr.startTime, CRI: &nrec}); err != nil {
		return fmt.Errorf("sandbox %s: record: %w", rec.ID, err)
	}
	a.mu.Lock()
	pr.cri.rec = &nrec
	a.mu.Unlock()
	a.log.Info("CRI sandbox stopped", "sandbox", rec.ID)
	a.changed(pr.pod.UID)
	return nil
}

// RemovePodSandbox implements criserver.Backend.
func (b criBackend) RemovePodSandbox(ctx context.Context, id string) error {
	a := b.a
	pr := a.criSandbox(id)
	if pr == nil {
		return nil
	}
	pr.cri.op.Lock()
	defer pr.cri.op.Unlock()
	if err := a.stopCRISandbox(ctx, pr, 0); err != nil {
		return err
	}
	a.mu.Lock()
	rec := pr.cri.rec
	var ctrs []*record.Container
	for _, c := range pr.cri.ctrs {
		ctrs = append(ctrs, c)
	}
	a.mu.Unlock()
	if rec == nil {
		return nil // being made: not known to the client yet
	}
	for _, c := range ctrs {
		if err := a.removeCRIContainer(ctx, pr, c); err != nil {
			return err
		}
	}
	a.teardownSandbox(ctx, pr.pod.UID, "") // the network went with the stop
	a.mu.Lock()
	delete(a.pods, pr.pod.UID)
	a.mu.Unlock()
	a.cri.setLogRoot(id, "")
	a.cri.release(record.SandboxKey(rec.Config.Metadata), id)
	a.log.Info("CRI sandbox removed", "sandbox", id)
	a.changed(pr.pod.UID)
	a.watchers.notify()
	return nil
}

// PodSandboxStatus implements criserver.Backend.
func (b criBackend) PodSandboxStatus(_ context.Context, id string) (*runtimeapi.PodSandboxStatus, error) {
	a := b.a
	pr := a.criSandbox(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	if pr == nil || pr.cri.rec == nil {
		return nil, fmt.Errorf("sandbox %q: %w", id, criserver.ErrNotFound)
	}
	return sandboxStatus(pr.cri.rec), nil
}

// PodSandboxes implements criserver.Backend.
func (b criBackend) PodSandboxes(context.Context) ([]*runtimeapi.PodSandbox, error) {
	a := b.a
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []*runtimeapi.PodSandbox{}
	for _, pr := range a.pods {
		if pr.cri == nil || pr.cri.rec == nil {
			continue
		}
		st := sandboxStatus(pr.cri.rec)
		out = append(out, &runtimeapi.PodSandbox{Id: st.Id, Metadata: st.Metadata, State: st.State, CreatedAt: st.CreatedAt,
			Labels: st.Labels, Annotations: st.Annotations, RuntimeHandler: st.RuntimeHandler})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

// sandboxStatus is a sandbox's status as its record says.
func sandboxStatus(rec *record.Sandbox) *runtimeapi.PodSandboxStatus {
	cfg := rec.Config
	state := runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	if rec.State == record.StateReady {
		state = runtimeapi.PodSandboxState_SANDBOX_READY
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	st := &runtimeapi.PodSandboxStatus{
		Id: rec.ID, Metadata: cfg.Metadata, State: state, CreatedAt: rec.CreatedAt.UnixNano(),
		Labels: cfg.Labels, Annotations: cfg.Annotations, RuntimeHandler: rec.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: ns.GetNetwork(), Pid: ns.GetPid(), Ipc: ns.GetIpc(),
		}}},
	}
	if rec.IP != "" && state == runtimeapi.PodSandboxState_SANDBOX_READY {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: rec.IP}
	} else {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{}
	}
	return st
}

// checkCRIRecord is checkRecord for the record of a CRI sandbox: its CRI part
// instead of a manifest's validation, and the sandbox the pod rebuilt from it
// would have.
func (a *Agent) checkCRIRecord(uid string, sp *savedPod) error {
	if err := record.ValidateSandbox(uid, sp.CRI); err != nil {
		return fmt.Errorf("pod record of %s: %w", uid, err)
	}
	if sp.Sandbox == nil {
		return fmt.Errorf("pod record of %s: no sandbox", uid)
	}
	pod, err := record.SandboxPod(uid, sp.CRI.Config)
	if err != nil {
		return fmt.Errorf("pod record of %s: %w", uid, err)
	}
	return a.rt.CheckSandbox(pod, sp.Sandbox)
}

// criRecordsDir holds a sandbox's container records.
func criRecordsDir(sandboxDir string) string { return filepath.Join(sandboxDir, "cri") }

// saveCRIContainer writes a container's record atomically.
func saveCRIContainer(sandboxDir string, c *record.Container) error {
	dir := criRecordsDir(sandboxDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.WriteJSON(filepath.Join(dir, c.ID+".json"), c)
}

// loadCRIContainers reads a sandbox's container records; those that are
// unreadable or fail record.ValidateContainer are logged and removed, never
// used.
func (a *Agent) loadCRIContainers(sandboxDir, sandboxID, logDir string) map[string]*record.Container {
	out := map[string]*record.Container{}
	dir := criRecordsDir(sandboxDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Error(err, "Could not read the CRI container records", "sandbox", sandboxID)
		}
		return out
	}
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() {
			continue // a temporary file of an interrupted write
		}
		c, err := readJSON[record.Container](filepath.Join(dir, name))
		if err == nil {
			err = record.ValidateContainer(sandboxID, id, c, logDir)
		}
		if err != nil {
			a.log.Error(err, "Not adopting a CRI container record agentd did not make", "sandbox", sandboxID, "file", name)
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		out[id] = c
	}
	return out
}

// adoptCRI takes over a CRI sandbox an earlier agentd left, with the same
// IDs: its containers' monitors by reconcile.RestoreCRIContainer. With live
// restore off the sandbox comes back NOTREADY, its network released, as a
// containerd's sandboxes after a reboot; the client then makes a new one.
func (a *Agent) adoptCRI(ctx context.Context, sp *savedPod, ms []*runtime.Monitor, live bool, since time.Time) {
	rec := sp.CRI
	id := rec.ID
	pod, _ := record.SandboxPod(id, rec.Config) // checked by checkCRIRecord
	a.cri.setLogRoot(id, rec.Config.LogDirectory)
	a.cri.reserve(record.SandboxKey(rec.Config.Metadata), id)
	ctrs := a.loadCRIContainers(sp.Sandbox.Dir, id, rec.Config.LogDirectory)
	byID := map[string]*runtime.Monitor{}
	for _, m := range ms {
		byID[m.ID] = m
	}
	pr := &podRecord{pod: pod, sandbox: sp.Sandbox, startTime: sp.Started, containers: map[string]*ctrRecord{}, startObserved: true,
		cri: &criPod{rec: rec, ctrs: ctrs}}
	for cid, c := range ctrs {
		a.cri.reserve(containerKey(id, c.Metadata), cid)
		mid := c.Config.ID
		m, found := byID[mid]
		delete(byID, mid)
		mf := reconcile.MonitorRuns
		if found {
			mf = monitorFound(m.State)
		}
		cr := &ctrRecord{id: mid, cgroup: c.Config.Cgroup.Path}
		var j *protocol.Journal
		if found {
			j = m.Journal
		}
		switch act := reconcile.RestoreCRIContainer(c.StartedOnce, found, mf, live); act {
		case reconcile.CRIStop:
			sj, err := a.rt.Stop(ctx, mid, 0)
			if err != nil {
				a.log.Error(err, "Could not stop a CRI container an earlier agentd left", "sandbox", id, "container", cid)
			} else {
				j = sj
			}
		case reconcile.CRILost:
			cj, err := a.rt.Cleanup(ctx, mid)
			if err != nil && !errors.Is(err, runtime.ErrNotFound) {
				a.log.Error(err, "Could not clean up after a dead monitor", "sandbox", id, "container", cid)
			}
			if cj != nil {
				j = cj
			}
		case reconcile.CRILeaveUnmanaged:
			pr.unmanaged = append(pr.unmanaged, mid)
		case reconcile.CRIAdopt:
			if j != nil && j.State == protocol.StateCreating {
				cr.starting = true
			}
		}
		if j != nil {
			a.status.SetJournal(mid, j)
		}
		a.status.SetImageID(mid, c.ImageID)
		cr.seen = seenOf(j)
		pr.containers[c.Config.Name] = cr
		a.replay(pod, c.Config.Name, j, since)
	}
	var foreign []*runtime.Monitor
	for _, m := range byID {
		foreign = append(foreign, m) // a monitor without a container record
	}
	if len(foreign) > 0 {
		a.log.Info("Stopping monitors of a CRI sandbox that have no container record", "sandbox", id, "monitors", len(foreign))
		a.stopMonitors(ctx, a.rt, foreign)
	}
	if !live && rec.State == record.StateReady {
		if n := a.network(); n != nil && sp.Sandbox.NetNS != "" {
			if err := n.Teardown(context.WithoutCancel(ctx), id, sp.Sandbox.NetNS); err != nil {
				a.log.Error(err, "Could not release the network of a CRI sandbox", "sandbox", id)
			}
		}
		nrec := *rec
		nrec.State = record.StateNotReady
		if err := savePod(sp.Sandbox.Dir, &savedPod{Sandbox: sp.Sandbox, Started: sp.Started, CRI: &nrec}); err != nil {
			a.log.Error(err, "Could not record a CRI sandbox as not ready", "sandbox", id)
		}
		pr.cri.rec = &nrec
	}
	a.mu.Lock()
	a.pods[pod.UID] = pr
	a.mu.Unlock()
	a.log.Info("Adopted CRI sandbox", "sandbox", id, "state", pr.cri.rec.State, "containers", len(ctrs))
}

// stopCRIPodForShutdown is shutdown's stop of a CRI sandbox when live
// restore is off: its containers stop, its network is released, and it
// stays, NOTREADY, with its records (the client sees it again after the
// restart, as after a reboot of containerd's node).
func (a *Agent) stopCRIPodForShutdown(pr *podRecord) {
	pr.cri.op.Lock()
	defer pr.cri.op.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), removalTimeout)
	defer cancel()
	if err := a.stopCRISandbox(ctx, pr, minGracePeriod); err != nil {
		a.log.Error(err, "Could not stop a CRI sandbox", "sandbox", pr.pod.UID)
	}
}

// criPodView is the pod `agentctl get pods` shows for a CRI sandbox: one
// container per CRI container name (its latest attempt), named as the client
// named it, with the monitor ID of the container's status. Callers hold mu.
func criPodView(pr *podRecord) (*corev1.Pod, map[string]string) {
	p := pr.pod.DeepCopy()
	if pr.cri.rec != nil {
		if md := pr.cri.rec.Config.Metadata; md != nil {
			p.Annotations["agentd.io/cri.name"] = md.Name
		}
	}
	latest := map[string]*record.Container{}
	for _, c := range pr.cri.ctrs {
		n := c.Metadata.Name
		if l := latest[n]; l == nil || c.Metadata.Attempt > l.Metadata.Attempt || c.Metadata.Attempt == l.Metadata.Attempt && c.CreatedAt.After(l.CreatedAt) {
			latest[n] = c
		}
	}
	ids := map[string]string{}
	names := make([]string, 0, len(latest))
	for n := range latest {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := latest[n]
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: c.Image})
		ids[n] = c.Config.ID
	}
	return p, ids
}

// criPodWithStatus is podWithStatus for a CRI sandbox. Callers hold mu.
func (a *Agent) criPodWithStatus(pr *podRecord) corev1.Pod {
	pod, ids := criPodView(pr)
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	pod.CreationTimestamp = metav1.NewTime(pr.startTime)
	ready := pr.sandbox != nil && pr.cri.rec != nil && pr.cri.rec.State == record.StateReady
	info := &state.PodInfo{SandboxReady: ready, StartTime: pr.startTime, Containers: map[string]*state.ContainerInfo{}}
	if pr.sandbox != nil {
		info.PodIP, info.HostIP = pr.sandbox.PodIP, pr.sandbox.HostIP
	}
	for name, id := range ids {
		info.Containers[name] = a.status.Info(id)
	}
	pod.Status = state.PodStatus(pod, info, time.Now())
	return *pod
}

// readJSON reads a JSON file into a new T.
func readJSON[T any](path string) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &v, nil
}

// criPortMappings are a sandbox's port mappings as the pod network forwards
// them; a mapping without a host port is only informational (as in CRI-O).
func criPortMappings(pms []*runtimeapi.PortMapping) []network.PortMapping {
	var out []network.PortMapping
	for _, pm := range pms {
		if pm.GetHostPort() <= 0 {
			continue
		}
		proto := "TCP"
		switch pm.GetProtocol() {
		case runtimeapi.Protocol_UDP:
			proto = "UDP"
		case runtimeapi.Protocol_SCTP:
			proto = "SCTP"
		}
		out = append(out, network.PortMapping{HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(), Protocol: proto, HostIP: pm.GetHostIp()})
	}
	return out
}
