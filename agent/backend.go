package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	agentruntime "github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/version"
	"github.com/agentd-project/agentd/cri/crilog"
)

// watchers fans "something changed" out to API watches.
type watchers struct {
	mu   sync.Mutex // guards subs
	subs map[chan struct{}]bool
}

func (w *watchers) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.subs == nil {
		w.subs = map[chan struct{}]bool{}
	}
	w.subs[ch] = true
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

func (w *watchers) notify() {
	w.mu.Lock()
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
}

// apiBackend is the agent as agentctl's API sees it (api.Backend).
type apiBackend struct{ a *Agent }

var _ api.Backend = apiBackend{}

// Pods implements api.Backend.
func (b apiBackend) Pods() []corev1.Pod { return b.a.sortedPods() }

// Events implements api.Backend.
func (b apiBackend) Events(uid types.UID) []corev1.Event { return b.a.events.List(uid) }

// Subscribe implements api.Backend.
func (b apiBackend) Subscribe() (<-chan struct{}, func()) { return b.a.watchers.subscribe() }

// Info implements api.Backend.
func (b apiBackend) Info() api.Info {
	a := b.a
	info := api.Info{
		ServerVersion:   version.Version,
		NodeName:        a.opts.NodeName,
		ManifestDir:     a.opts.ManifestDir,
		Root:            a.opts.Root,
		RunDir:          a.opts.RunDir,
		LogDir:          a.opts.LogDir,
		StorageDriver:   a.opts.StorageDriver,
		CgroupParent:    a.opts.CgroupParent,
		CgroupVersion:   cgroupVersion(),
		KernelVersion:   kernelVersion(),
		MonitorProtocol: monitorProtocol(),
	}
	a.mu.Lock()
	info.LiveRestoreEnabled = a.liveRestore && !a.clusterOn
	if a.liveRestore && a.clusterOn {
		info.LiveRestoreDisabledReason = "cluster mode is on"
	}
	if a.joinErr != nil {
		info.Warnings = append(info.Warnings, fmt.Sprintf("cluster.enabled: could not join the cluster's etcd at %v yet (trying again): %v",
			a.opts.Cluster.EtcdEndpoints, a.joinErr))
	}
	info.Pods = len(a.pods)
	for _, pr := range a.pods {
		for _, c := range pr.containers {
			info.Containers++
			if j := a.status.Journal(c.id); j != nil && j.State == protocol.StateRunning {
				info.ContainersRunning++
			} else if j != nil && j.State == protocol.StateExited {
				info.ContainersExited++
			}
		}
	}
	a.mu.Unlock()
	if imgs, err := a.images.List(); err == nil {
		info.Images = len(imgs)
	}
	info.Cluster = a.cluster.Status()
	info.Warnings = append(info.Warnings, a.warnings...)
	if a.network() == nil {
		info.Warnings = append(info.Warnings, "pod networking is unavailable: pods have a loopback-only network (install containernetworking-plugins)")
	}
	return info
}

// ServerVersion implements api.Backend.
func (b apiBackend) ServerVersion() (string, string) { return version.Version, monitorProtocol() }

func monitorProtocol() string {
	return fmt.Sprintf("%s/%d.%d", protocol.Name, protocol.Major, protocol.Minor)
}

// Images implements api.Backend.
func (b apiBackend) Images() ([]api.Image, error) {
	a := b.a
	imgs, err := a.images.List()
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, api.Image{ID: i.ID, Names: i.Names, Size: i.Size})
	}
	return out, nil
}

// ImportImage implements api.Backend.
func (b apiBackend) ImportImage(ctx context.Context, path string) ([]api.Image, error) {
	a := b.a
	imgs, err := a.images.Import(ctx, path)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, api.Image{ID: i.ID, Names: i.Names, Size: i.Size})
	}
	a.poke() // pods waiting for this image are retried at once
	a.resetImageRetries()
	return out, nil
}

// RemoveImage implements api.Backend: like `docker rmi`, it refuses to
// delete an image a container uses; taking one name off an image that keeps
// others is fine.
func (b apiBackend) RemoveImage(ctx context.Context, ref string) error {
	a := b.a
	if a.store == nil {
		return fmt.Errorf("%w: this agent has no image store", api.ErrUnavailable)
	}
	img, err := a.store.Get(ref)
	if errors.Is(err, image.ErrNotFound) {
		return fmt.Errorf("%w: %v", api.ErrNotFound, err)
	}
	if err != nil {
		return err
	}
	untagOnly := len(img.Names) > 1 && slices.ContainsFunc(img.Names, func(n string) bool {
		norm, err := image.NormalizeName(ref)
		return err == nil && norm == n
	})
	if user, used := a.imageInUse(img.ID); used && !untagOnly {
		return fmt.Errorf("%w: image %s (%s) is in use by %s: delete the pod first", api.ErrConflict, ref, img.ID, user)
	}
	if err := a.store.Remove(ref); err != nil {
		return fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	return nil
}

// PruneImages implements api.Backend.
func (b apiBackend) PruneImages(ctx context.Context) ([]api.Image, error) {
	a := b.a
	if a.gc == nil {
		return nil, fmt.Errorf("%w: this agent has no image store", api.ErrUnavailable)
	}
	imgs, err := a.gc.Prune(ctx)
	out := make([]api.Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, api.Image{ID: i.ID, Names: i.Names, Size: i.Size})
	}
	return out, err
}

// PullImage implements api.Backend: a pull as `crictl pull` asks for one,
// without pull policy, events or back-off; containers that waited for the
// image under the Never policy try again at once.
func (b apiBackend) PullImage(ctx context.Context, ref string, progress func(api.PullProgress)) (*api.PullResult, error) {
	a := b.a
	if _, err := image.NormalizeName(ref); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	p := a.imageMgr.currentPuller()
	if p == nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, errNoPuller)
	}
	res, err := p.Pull(ctx, ref, nil, func(pp pull.Progress) {
		progress(api.PullProgress{Layer: pp.Layer, Status: pp.Status, Done: pp.Done, Total: pp.Total})
	})
	if err != nil {
		a.log.Info("Image pull failed", "image", ref, "error", err.Error())
		return nil, fmt.Errorf("pull %s: %s", ref, pullErrorMessage(err))
	}
	a.log.Info("Image pulled", "image", ref, "id", res.ImageID, "digest", res.Digest, "size", res.Size, "duration", res.Duration)
	a.resetImageRetries()
	return &api.PullResult{Image: api.Image{ID: res.ImageID, Names: res.Names, Size: res.Size}, Digest: res.Digest, Duration: res.Duration}, nil
}

// resetImageRetries lets containers that waited for an image try again now.
func (a *Agent) resetImageRetries() {
	a.mu.Lock()
	for _, pr := range a.pods {
		for _, c := range pr.containers {
			if a.status.Waiting(c.id) == "ErrImageNeverPull" {
				c.retryAt = time.Time{}
			}
		}
	}
	a.mu.Unlock()
	a.poke()
}

// DeleteUnmanaged implements api.Backend.
func (b apiBackend) DeleteUnmanaged(namespace, name string) error {
	a := b.a
	a.mu.Lock()
	var pod *corev1.Pod
	var cri bool
	for _, pr := range a.pods {
		if pr.pod.Namespace == namespace && pr.pod.Name == name && pr.cri != nil {
			cri = true
			continue
		}
		if pr.pod.Namespace == namespace && pr.pod.Name == name && len(pr.unmanaged) > 0 && !pr.terminating {
			pod = pr.pod
		}
	}
	a.mu.Unlock()
	if pod == nil && cri {
		return fmt.Errorf("%w: pod %s/%s is owned by the CRI client (kubelet, crictl): remove it there (crictl stopp and rmp)", api.ErrConflict, namespace, name)
	}
	if pod == nil {
		return fmt.Errorf("%w: no unmanaged pod %q in namespace %q", api.ErrNotFound, name, namespace)
	}
	a.workers.UpdatePod(pod.UID, podUpdate{kill: true, reason: "deleted as unmanaged"})
	return nil
}

// findContainer returns the monitor ID and current journal of a pod's container; an
// empty container name means the pod's only (first) app container, as kubectl.
func (a *Agent) findContainer(namespace, name, container string) (string, *protocol.Journal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var pr *podRecord
	for _, p := range a.pods {
		if p.pod.Namespace == namespace && p.pod.Name == name && (pr == nil || !p.terminating) {
			pr = p
		}
	}
	if pr == nil {
		return "", nil, fmt.Errorf("%w: pod %q not found in namespace %q", api.ErrNotFound, name, namespace)
	}
	if container == "" {
		if len(pr.pod.Spec.Containers) > 1 {
			var names []string
			for _, c := range pr.pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return "", nil, fmt.Errorf("%w: a container name must be specified for pod %s, choose one of: [%s]", api.ErrBadRequest, name, strings.Join(names, " "))
		}
		container = pr.pod.Spec.Containers[0].Name
	}
	c := pr.containers[container]
	if spec, _ := containerSpec(pr.pod, container); spec == nil {
		return "", nil, fmt.Errorf("%w: container %s is not valid for pod %s", api.ErrBadRequest, container, name)
	}
	var j *protocol.Journal
	if c != nil {
		j = a.status.Journal(c.id)
	}
	if j == nil {
		return "", nil, fmt.Errorf("%w: container %q in pod %q is waiting to start", api.ErrBadRequest, container, name)
	}
	return c.id, j, nil
}

// LogFile implements api.Backend: the CRI log of the current (or previous) run,
// beneath log-dir.
func (b apiBackend) LogFile(namespace, name, container string, previous bool) (root, file string, err error) {
	a := b.a
	_, j, err := a.findContainer(namespace, name, container)
	if err != nil {
		return "", "", err
	}
	runs := j.Runs
	var path string
	switch prev := previousRun(j); {
	case previous && prev == nil:
		return "", "", fmt.Errorf("%w: previous terminated container %q in pod %q not found", api.ErrBadRequest, container, name)
	case previous:
		path = prev.LogPath
	case len(runs) == 0:
		return "", "", fmt.Errorf("%w: container %q in pod %q has not started", api.ErrBadRequest, container, name)
	default:
		path = runs[len(runs)-1].LogPath
	}
	file, err = crilog.Beneath(a.opts.LogDir, path)
	if err != nil {
		return "", "", fmt.Errorf("container %q in pod %q logs to %s, outside log-dir %s (was log-dir changed?): %w", container, name, path, a.opts.LogDir, err)
	}
	return a.opts.LogDir, file, nil
}

// previousRun is the run `logs --previous` prints: the one the status's
// lastState.terminated describes (state.containerStatus), so in back-off the run that
// has just ended, else the one before the current. nil when there is none.
func previousRun(j *protocol.Journal) *protocol.Run {
	i := len(j.Runs) - 2
	if j.State == protocol.StateBackOff {
		i = len(j.Runs) - 1
	}
	if i < 0 || j.Runs[i].Exit == nil {
		return nil
	}
	return &j.Runs[i]
}

// Exec implements api.Backend.
func (b apiBackend) Exec(ctx context.Context, namespace, name, container string, req *protocol.ExecRequest, s api.Streams) (int, error) {
	a := b.a
	id, j, err := a.findContainer(namespace, name, container)
	if err != nil {
		return -1, err
	}
	if j.State != protocol.StateRunning {
		return -1, fmt.Errorf("%w: cannot exec into a container that is not running", api.ErrBadRequest)
	}
	return a.rt.Exec(ctx, id, req, agentruntime.ExecIO{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Resize: s.Resize})
}

// Attach implements api.Backend, as kubelet serves kubectl attach: the container
// must be running; stdin needs a container with stdin: true.
func (b apiBackend) Attach(ctx context.Context, namespace, name, container string, s api.Streams) error {
	a := b.a
	id, j, err := a.findContainer(namespace, name, container)
	if err != nil {
		return err
	}
	if j.State != protocol.StateRunning {
		return fmt.Errorf("%w: cannot attach to a container that is not running", api.ErrBadRequest)
	}
	err = a.rt.Attach(ctx, id, agentruntime.AttachIO{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Resize: s.Resize})
	if errors.Is(err, protocol.ErrInvalid) || errors.Is(err, protocol.ErrNotRunning) || errors.Is(err, protocol.ErrUnsupported) {
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	return err
}

func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		return "1 (hybrid)"
	}
	return "1"
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(b))
}
