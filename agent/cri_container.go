package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/cri/crilog"
	"github.com/agentd-project/agentd/cri/record"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// The CRI's containers are monitors of agentd's, one per container (the
// monitor ID is runtime.MonitorID(sandbox ID, record.ContainerName(id))),
// with restart policy Never: the CRI client restarts containers, as a new
// container. Their records (<sandbox dir>/cri/<id>.json) say what the
// client asked; their journals what happened.

// criContainerRec finds CRI container id: its sandbox's pod record and its
// record, or nil. Callers hold nothing.
func (a *Agent) criContainerRec(id string) (*podRecord, *record.Container) {
	if !record.ValidID(id) {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pr := range a.pods {
		if pr.cri == nil {
			continue
		}
		if c := pr.cri.ctrs[id]; c != nil {
			return pr, c
		}
	}
	return nil, nil
}

// CreateContainer implements criserver.Backend: the monitor's config is built
// now (a bad image or mount fails here), and the record written: CREATED.
func (b criBackend) CreateContainer(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig) (string, error) {
	a := b.a
	pr := a.criSandbox(sandboxID)
	if pr == nil {
		return "", fmt.Errorf("sandbox %q: %w", sandboxID, criserver.ErrNotFound)
	}
	pr.cri.op.Lock()
	defer pr.cri.op.Unlock()
	a.mu.Lock()
	rec, sb, pod := pr.cri.rec, pr.sandbox, pr.pod
	a.mu.Unlock()
	if rec == nil || sb == nil || a.criSandbox(sandboxID) == nil {
		return "", fmt.Errorf("sandbox %q: %w", sandboxID, criserver.ErrNotFound)
	}
	if rec.State != record.StateReady {
		return "", fmt.Errorf("%w: sandbox %s is not ready", criserver.ErrFailedPrecondition, sandboxID)
	}
	logDir := rec.Config.LogDirectory
	if err := record.ValidateContainerConfig(cfg, logDir); err != nil {
		return "", fmt.Errorf("%w: %w", criserver.ErrInvalidArgument, err)
	}
	img, err := a.images.Resolve(cfg.Image.Image)
	if err != nil {
		if errors.Is(err, runtime.ErrImageNeverPull) {
			return "", fmt.Errorf("image %q: %w", cfg.Image.Image, criserver.ErrNotFound)
		}
		return "", fmt.Errorf("image %q: %w", cfg.Image.Image, err)
	}
	id := record.NewID()
	key := containerKey(sandboxID, cfg.Metadata)
	if !a.cri.reserve(key, id) {
		return "", fmt.Errorf("%w: container name %q is reserved in sandbox %s", criserver.ErrAlreadyExists, record.ContainerKey(cfg.Metadata), sandboxID)
	}
	pcfg, err := criContainerConfig(pod, sb, id, cfg, img, a.rt.Settings(), logDir)
	if err != nil {
		a.cri.release(key, id)
		return "", fmt.Errorf("%w: container %s: %w", criserver.ErrInvalidArgument, cfg.Metadata.Name, err)
	}
	c := &record.Container{
		ID: id, SandboxID: sandboxID, Metadata: cfg.Metadata, Labels: cfg.Labels, Annotations: cfg.Annotations,
		Image: cfg.Image.Image, ImageID: img.ID, ImageRef: firstNonEmptyString(img.Name, cfg.Image.Image),
		LogPath: cfg.LogPath, Mounts: cfg.Mounts, CreatedAt: time.Now(), Config: pcfg,
	}
	if err := saveCRIContainer(sb.Dir, c); err != nil {
		a.cri.release(key, id)
		return "", fmt.Errorf("container %s: record: %w", cfg.Metadata.Name, err)
	}
	a.mu.Lock()
	pr.cri.ctrs[id] = c
	pr.containers[pcfg.Name] = &ctrRecord{id: pcfg.ID}
	a.mu.Unlock()
	a.status.SetImageID(pcfg.ID, img.ID)
	a.changed(pr.pod.UID)
	return id, nil
}

func firstNonEmptyString(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// criContainerConfig builds the monitor's config of CRI container id from
// the client's config, through a corev1.Container as for a manifest's
// container (runtime.ContainerConfig), plus what only the CRI has: its
// mounts as binds, its log file beneath the sandbox's LogDirectory, its
// resources. It is pure.
func criContainerConfig(pod *corev1.Pod, sb *runtime.Sandbox, id string, cfg *runtimeapi.ContainerConfig, img *runtime.Image, s *runtime.Settings, logDir string) (*protocol.ContainerConfig, error) {
	pod = pod.DeepCopy()
	c := &corev1.Container{
		Name: record.ContainerName(id), Image: cfg.Image.GetImage(),
		Command: cfg.Command, Args: cfg.Args, WorkingDir: cfg.WorkingDir,
		// runtime.ContainerConfig makes them protocol.Process's Stdin,
		// StdinOnce and Tty once the monitor keeps stdin (criattach).
		Stdin: cfg.Stdin, StdinOnce: cfg.StdinOnce, TTY: cfg.Tty,
	}
	for _, kv := range cfg.Envs {
		c.Env = append(c.Env, corev1.EnvVar{Name: kv.Key, Value: string(kv.Value)})
	}
	imgCopy := *img
	lsc := cfg.GetLinux().GetSecurityContext()
	if lsc != nil {
		sc := &corev1.SecurityContext{}
		if lsc.Privileged {
			sc.Privileged = ptrTo(true)
		}
		if caps := lsc.Capabilities; caps != nil {
			sc.Capabilities = &corev1.Capabilities{}
			for _, d := range caps.DropCapabilities {
				sc.Capabilities.Drop = append(sc.Capabilities.Drop, corev1.Capability(d))
			}
			for _, ad := range caps.AddCapabilities {
				sc.Capabilities.Add = append(sc.Capabilities.Add, corev1.Capability(ad))
			}
		}
		if lsc.RunAsUser != nil {
			sc.RunAsUser = ptrTo(lsc.RunAsUser.Value)
		} else if lsc.RunAsUsername != "" {
			imgCopy.User = lsc.RunAsUsername
		}
		if lsc.RunAsGroup != nil {
			sc.RunAsGroup = ptrTo(lsc.RunAsGroup.Value)
		}
		if lsc.ReadonlyRootfs {
			sc.ReadOnlyRootFilesystem = ptrTo(true)
		}
		if lsc.NoNewPrivs {
			sc.AllowPrivilegeEscalation = ptrTo(false)
		}
		switch lsc.Seccomp.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
		case runtimeapi.SecurityProfile_Unconfined:
			if lsc.Seccomp != nil {
				sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			}
		case runtimeapi.SecurityProfile_Localhost:
			return nil, fmt.Errorf("a Localhost seccomp profile is not supported")
		}
		if len(lsc.SupplementalGroups) > 0 {
			if pod.Spec.SecurityContext == nil {
				pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
			}
			pod.Spec.SecurityContext.SupplementalGroups = lsc.SupplementalGroups
		}
		switch lsc.GetNamespaceOptions().GetPid() {
		case runtimeapi.NamespaceMode_NODE:
			pod.Spec.HostPID = true
		case runtimeapi.NamespaceMode_TARGET:
			return nil, fmt.Errorf("PID namespace mode TARGET is not supported")
		}
	}
	pcfg, err := runtime.ContainerConfig(pod, c, false, &imgCopy, sb, s)
	if err != nil {
		return nil, err
	}
	pcfg.Image.Name = cfg.Image.GetImage()
	// The client's mounts win over the sandbox's files at the same place (kubelet
	// gives /etc/hosts itself).
	given := map[string]bool{}
	for _, m := range cfg.Mounts {
		given[filepath.Clean(m.ContainerPath)] = true
	}
	var mounts []protocol.Mount
	for _, m := range pcfg.Mounts {
		if !given[filepath.Clean(m.Destination)] {
			mounts = append(mounts, m)
		}
	}
	for _, m := range cfg.Mounts {
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
		default:
			opts = append(opts, "rprivate")
		}
		if m.Readonly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, protocol.Mount{Source: filepath.Clean(m.HostPath), Destination: filepath.Clean(m.ContainerPath), Type: "bind", Options: opts})
	}
	pcfg.Mounts = mounts
	if cfg.LogPath != "" {
		pcfg.Log.Root, pcfg.Log.File = logDir, cfg.LogPath
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		if r.MemoryLimitInBytes > 0 {
			pcfg.Cgroup.MemoryLimit = r.MemoryLimitInBytes
		}
		if r.CpuShares > 0 {
			pcfg.Cgroup.CPUShares = uint64(r.CpuShares)
		}
		if r.CpuQuota > 0 && r.CpuPeriod > 0 {
			pcfg.Cgroup.CPUQuota, pcfg.Cgroup.CPUPeriod = r.CpuQuota, uint64(r.CpuPeriod)
		}
		cpus, mems := r.CpusetCpus, r.CpusetMems
		set := &protocol.Resources{}
		if cpus != "" {
			set.CpusetCpus = &cpus
		}
		if mems != "" {
			set.CpusetMems = &mems
		}
		if err := set.Check(); err != nil {
			return nil, err
		}
		pcfg.Cgroup = set.Apply(pcfg.Cgroup)
	}
	pcfg.Restart.Policy = protocol.RestartNever // the CRI client restarts containers
	// The sandbox's sysctls reach pcfg.Sysctls through record.SandboxPod's
	// pod.Spec.SecurityContext.Sysctls (runtime.ContainerConfig).
	return pcfg, nil
}

func ptrTo[T any](v T) *T { return &v }

// lockCRIContainer finds container id and takes its sandbox's op. It returns
// the container's record and sandbox as they are once the op is held (another
// call may have changed or removed them meanwhile), and unlock, which releases
// the op; ErrNotFound when there is no such container any more.
func (a *Agent) lockCRIContainer(id string) (pr *podRecord, c *record.Container, sb *runtime.Sandbox, unlock func(), err error) {
	pr, c = a.criContainerRec(id)
	if c == nil {
		return nil, nil, nil, nil, fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	pr.cri.op.Lock()
	a.mu.Lock()
	c, sb = pr.cri.ctrs[id], pr.sandbox
	a.mu.Unlock()
	if c == nil || sb == nil {
		pr.cri.op.Unlock()
		return nil, nil, nil, nil, fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	return pr, c, sb, pr.cri.op.Unlock, nil
}

// putCRIContainer makes c, a changed copy of one of pr's container records, the
// record: on disk first, then in memory. Callers hold pr.cri.op.
func (a *Agent) putCRIContainer(pr *podRecord, sb *runtime.Sandbox, c *record.Container) error {
	if err := saveCRIContainer(sb.Dir, c); err != nil {
		return fmt.Errorf("container %s: record: %w", c.ID, err)
	}
	a.mu.Lock()
	pr.cri.ctrs[c.ID] = c
	a.mu.Unlock()
	return nil
}

// StartContainer implements criserver.Backend.
func (b criBackend) StartContainer(ctx context.Context, id string) error {
	a := b.a
	pr, c, sb, unlock, err := a.lockCRIContainer(id)
	if err != nil {
		return err
	}
	defer unlock()
	a.mu.Lock()
	rec := pr.cri.rec
	a.mu.Unlock()
	if c.StartedOnce {
		return fmt.Errorf("%w: container %s was started already (only a CREATED container starts)", criserver.ErrFailedPrecondition, id)
	}
	if rec.State != record.StateReady {
		return fmt.Errorf("%w: sandbox %s is not ready", criserver.ErrFailedPrecondition, rec.ID)
	}
	nc := *c
	nc.StartedOnce = true
	if err := a.putCRIContainer(pr, sb, &nc); err != nil {
		return err
	}
	if f := c.Config.Log.File; f != "" {
		// The client reads the file as soon as the start returns (critest's
		// reopen spec); the monitor opens it a moment later. Made here beneath
		// the log directory without following anything planted there.
		w, err := crilog.Open(c.Config.Log.Root, f, crilog.Options{})
		if err != nil {
			return fmt.Errorf("container %s: log file: %w", id, err)
		}
		_ = w.Close()
	}
	defer a.startingImage(c.ImageID)()
	_, err = a.rt.Start(context.WithoutCancel(ctx), c.Config)
	a.refreshJournal(c.Config.ID)
	a.changed(pr.pod.UID)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// StopContainer implements criserver.Backend.
func (b criBackend) StopContainer(ctx context.Context, id string, timeout int64) error {
	a := b.a
	pr, c := a.criContainerRec(id)
	if c == nil {
		return nil
	}
	pr.cri.op.Lock()
	defer pr.cri.op.Unlock()
	return a.stopCRIContainer(ctx, c, time.Duration(max(timeout, 0))*time.Second)
}

// stopCRIContainer stops a container that was started (stop signal, KILL
// after grace); its monitor's state stays for its status. Callers hold its
// sandbox's op.
func (a *Agent) stopCRIContainer(ctx context.Context, c *record.Container, grace time.Duration) error {
	a.mu.Lock()
	pr, _ := a.criContainerRecLocked(c.ID)
	if pr != nil {
		c = pr.cri.ctrs[c.ID]
	}
	a.mu.Unlock()
	if pr == nil || !c.StartedOnce {
		return nil
	}
	// The RPC's deadline is kubelet's (timeout + its own margin); a stop once
	// begun is not cut short.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+removalTimeout)
	defer cancel()
	j, err := a.rt.Stop(sctx, c.Config.ID, grace)
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("stop container %s: %w", c.ID, err)
	}
	if j != nil {
		a.applyJournal(c.Config.ID, j)
	}
	return nil
}

// criContainerRecLocked is criContainerRec for callers that hold mu.
func (a *Agent) criContainerRecLocked(id string) (*podRecord, *record.Container) {
	for _, pr := range a.pods {
		if pr.cri != nil && pr.cri.ctrs[id] != nil {
			return pr, pr.cri.ctrs[id]
		}
	}
	return nil, nil
}

// RemoveContainer implements criserver.Backend.
func (b criBackend) RemoveContainer(ctx context.Context, id string) error {
	a := b.a
	pr, c := a.criContainerRec(id)
	if c == nil {
		return nil
	}
	pr.cri.op.Lock()
	defer pr.cri.op.Unlock()
	return a.removeCRIContainer(ctx, pr, c)
}

// removeCRIContainer stops a container (at once) and removes its monitor and
// record. Callers hold its sandbox's op.
func (a *Agent) removeCRIContainer(ctx context.Context, pr *podRecord, c *record.Container) error {
	if err := a.stopCRIContainer(ctx, c, 0); err != nil {
		return err
	}
	mid := c.Config.ID
	if err := a.rt.Remove(mid); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	a.mu.Lock()
	sb := pr.sandbox
	a.mu.Unlock()
	if sb != nil {
		if err := os.Remove(filepath.Join(criRecordsDir(sb.Dir), c.ID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove container %s: record: %w", c.ID, err)
		}
	}
	a.mu.Lock()
	delete(pr.cri.ctrs, c.ID)
	delete(pr.containers, c.Config.Name)
	a.mu.Unlock()
	a.status.Remove(mid)
	a.cri.release(containerKey(c.SandboxID, c.Metadata), c.ID)
	a.changed(pr.pod.UID)
	return nil
}

// criJournal is a container's journal: what its monitor wrote last, else
// what agentd learnt of it (the journal of a monitor whose state is gone).
func (a *Agent) criJournal(mid string) *protocol.Journal {
	if j, err := a.rt.Journal(mid); err == nil {
		return j
	}
	return a.status.Journal(mid)
}

// criStatus is what a container's record and journal say of its state:
// without a journal it is CREATED, or EXITED (MonitorLost) if it was
// started; Creating and Running are RUNNING; an exit is EXITED. It is pure.
func criStatus(c *record.Container, j *protocol.Journal) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: c.Metadata, State: runtimeapi.ContainerState_CONTAINER_CREATED,
		CreatedAt: c.CreatedAt.UnixNano(), Image: &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image},
		ImageRef: c.ImageID, ImageId: c.ImageID, Labels: c.Labels, Annotations: c.Annotations, Mounts: c.Mounts,
	}
	if c.LogPath != "" {
		st.LogPath = filepath.Join(c.Config.Log.Root, c.LogPath)
	}
	st.Resources = criResources(c.Config)
	var run *protocol.Run
	if j != nil {
		run = j.Current()
	}
	switch {
	case run == nil && c.StartedOnce && (j == nil || j.State != protocol.StateCreating):
		st.State, st.Reason, st.ExitCode = runtimeapi.ContainerState_CONTAINER_EXITED, protocol.ReasonMonitorLost, 255
		st.Message = "its monitor is gone: the container was never seen running, or agentd lost it"
	case run == nil:
		if j != nil {
			st.State = runtimeapi.ContainerState_CONTAINER_RUNNING // being created by its monitor
		}
	case run.Exit == nil:
		st.State, st.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, run.StartedAt.UnixNano()
	default:
		st.State = runtimeapi.ContainerState_CONTAINER_EXITED
		st.StartedAt, st.FinishedAt = run.StartedAt.UnixNano(), run.Exit.FinishedAt.UnixNano()
		st.ExitCode, st.Reason, st.Message = int32(run.Exit.ExitCode), run.Exit.Reason, run.Exit.Message
		if run.Exit.Reason == protocol.ReasonStartError {
			st.StartedAt = 0
		}
	}
	return st
}

// criResources are the limits a container's config gives it, as
// ContainerStatus reports them (containerd reports its spec's): those it was
// created with, as UpdateContainerResources changed them. A CPU quota's
// period is the kernel's default when none was given. It is pure.
func criResources(cfg *protocol.ContainerConfig) *runtimeapi.ContainerResources {
	if cfg == nil {
		return nil
	}
	cg := cfg.Cgroup
	r := &runtimeapi.LinuxContainerResources{
		CpuShares: int64(cg.CPUShares), MemoryLimitInBytes: cg.MemoryLimit,
		CpusetCpus: cg.CpusetCpus, CpusetMems: cg.CpusetMems, CpuPeriod: int64(cg.CPUPeriod),
	}
	if cg.CPUQuota > 0 {
		r.CpuQuota = cg.CPUQuota
		if r.CpuPeriod == 0 {
			r.CpuPeriod = 100000
		}
	}
	if adj := cfg.Process.OOMScoreAdj; adj != nil {
		r.OomScoreAdj = int64(*adj)
	}
	return &runtimeapi.ContainerResources{Linux: r}
}

// ContainerStatus implements criserver.Backend.
func (b criBackend) ContainerStatus(_ context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	_, c := b.a.criContainerRec(id)
	if c == nil {
		return nil, fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	return criStatus(c, b.a.criJournal(c.Config.ID)), nil
}

// Containers implements criserver.Backend.
func (b criBackend) Containers(context.Context) ([]*runtimeapi.Container, error) {
	a := b.a
	a.mu.Lock()
	var ctrs []*record.Container
	for _, pr := range a.pods {
		if pr.cri == nil {
			continue
		}
		for _, c := range pr.cri.ctrs {
			ctrs = append(ctrs, c)
		}
	}
	a.mu.Unlock()
	out := make([]*runtimeapi.Container, 0, len(ctrs))
	for _, c := range ctrs {
		st := criStatus(c, a.criJournal(c.Config.ID))
		out = append(out, &runtimeapi.Container{
			Id: c.ID, PodSandboxId: c.SandboxID, Metadata: c.Metadata, Image: st.Image, ImageRef: st.ImageRef, ImageId: st.ImageId,
			State: st.State, CreatedAt: st.CreatedAt, Labels: c.Labels, Annotations: c.Annotations,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

// ReopenContainerLog implements criserver.Backend.
func (b criBackend) ReopenContainerLog(ctx context.Context, id string) error {
	_, c := b.a.criContainerRec(id)
	if c == nil {
		return fmt.Errorf("container %q: %w", id, criserver.ErrNotFound)
	}
	if st := criStatus(c, b.a.criJournal(c.Config.ID)); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("%w: container %s is not running", criserver.ErrFailedPrecondition, id)
	}
	if err := b.a.rt.ReopenLog(ctx, c.Config.ID); err != nil {
		return fmt.Errorf("reopen the log of container %s: %w", id, err)
	}
	return nil
}

// UpdateContainerResources implements criserver.Backend, as containerd does
// it: a CREATED container's record gets the limits it will start with; a
// RUNNING one's monitor sets them on its cgroup and keeps them in its config
// (protocol.OpUpdate), then the record gets what the monitor says is in force;
// an EXITED one is refused (it never runs again: the client creates a new
// container).
func (b criBackend) UpdateContainerResources(ctx context.Context, id string, upd *protocol.Resources) error {
	a := b.a
	pr, c, sb, unlock, err := a.lockCRIContainer(id)
	if err != nil {
		return err
	}
	defer unlock()
	cg := upd.Apply(c.Config.Cgroup)
	switch st := criStatus(c, a.criJournal(c.Config.ID)); st.State {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		now, err := a.rt.Update(ctx, c.Config.ID, upd)
		switch {
		case errors.Is(err, protocol.ErrInvalid):
			return fmt.Errorf("%w: update container %s: %w", criserver.ErrInvalidArgument, id, err)
		case errors.Is(err, protocol.ErrNotRunning):
			return fmt.Errorf("%w: container %s is not running: %w", criserver.ErrFailedPrecondition, id, err)
		case err != nil:
			return fmt.Errorf("update container %s: %w", id, err)
		}
		cg = *now
	default:
		return fmt.Errorf("%w: container %s is %s: only a created or running container's resources can be updated",
			criserver.ErrFailedPrecondition, id, criStateName(st.State))
	}
	nc := *c
	cfg := *c.Config
	cfg.Cgroup = cg
	nc.Config = &cfg
	return a.putCRIContainer(pr, sb, &nc)
}

// criStateName is a CRI container state as crictl prints it (Exited, …).
func criStateName(s runtimeapi.ContainerState) string {
	name := strings.TrimPrefix(s.String(), "CONTAINER_")
	return strings.ToUpper(name[:1]) + strings.ToLower(name[1:])
}
