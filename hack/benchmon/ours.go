package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/spec"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// ours runs containers under agent-monitor through agent/runtime, as agentd does:
// one pod (one sandbox: pinned net/ipc/uts namespaces, /etc files, /dev/shm) whose
// containers are started one by one, each with its own monitor.
type ours struct {
	rt     *runtime.Runtime
	img    *runtime.Image
	dir    string
	runDir string
	parent string // cgroup parent
	pod    *corev1.Pod
	sb     *runtime.Sandbox

	mu   sync.Mutex
	live map[string]*container // prepared and not yet stopped

	stops, stopEarly atomic.Int64 // runtime.Stop calls; those that returned while the monitor still ran
}

func newOurs(dir, bin string, img *runtime.Image) (*ours, error) {
	o := &ours{
		img:    img,
		dir:    dir,
		runDir: filepath.Join(dir, "run"),
		parent: fmt.Sprintf("/agentd-bench-%d", os.Getpid()),
		live:   map[string]*container{},
	}
	rt, err := runtime.New(runtime.Config{
		Settings: runtime.Settings{
			RunDir:        o.runDir,
			LogDir:        filepath.Join(dir, "logs"),
			CgroupParent:  o.parent,
			StorageDriver: "overlay",
			NodeName:      "benchnode",
			LogMaxSize:    1 << 40, // never rotate: the throughput run counts every byte of one file
			LogMaxFiles:   1,
		},
		Root:         filepath.Join(dir, "root"),
		MonitorPath:  filepath.Join(bin, "agent-monitor"),
		StartTimeout: 30 * time.Second,
	}, logr.Discard())
	if err != nil {
		return nil, err
	}
	o.rt = rt
	pod, err := spec.Parse([]byte(`apiVersion: v1
kind: Pod
metadata: {name: bench, namespace: default}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: localhost/busybox:latest
    command: ["true"]
`), spec.Source{Path: filepath.Join(dir, "bench.yaml"), NodeName: "benchnode"})
	if err != nil {
		return nil, err
	}
	o.pod = pod
	if o.sb, err = rt.EnsureSandbox(pod); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *ours) Name() string { return "agent-monitor" }

func (o *ours) stateDir(id string) string { return filepath.Join(o.runDir, "monitors", id) }

func (o *ours) Prepare(name string, args []string) (*container, error) {
	c := o.pod.Spec.Containers[0] // a copy; only Name and Command change
	c.Name = name
	c.Command = args
	c.Args = nil
	cfg, err := runtime.ContainerConfig(o.pod, &c, false, o.img, o.sb, o.rt.Settings())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Log.Dir, 0o755); err != nil {
		return nil, err
	}
	ct := &container{Name: name, ID: cfg.ID, Args: args, LogDir: cfg.Log.Dir, LogPath: protocol.LogPath(cfg, 0), priv: cfg}
	o.mu.Lock()
	o.live[ct.ID] = ct
	o.mu.Unlock()
	return ct, nil
}

func (o *ours) Start(ctx context.Context, c *container) error {
	st, err := o.rt.Start(ctx, c.priv.(*protocol.ContainerConfig))
	if st != nil && st.MonitorPid > 0 {
		c.MonitorPids = []int{st.MonitorPid}
		c.Pid = st.Pid
	}
	return err
}

// Exited reads the monitor's journal from disk: it says Exited only after the
// monitor drained the container's pipes and closed the log.
func (o *ours) Exited(c *container) bool {
	j, err := protocol.ReadJournal(o.stateDir(c.ID))
	return err == nil && j.State == protocol.StateExited
}

func (o *ours) Stop(ctx context.Context, c *container) error {
	pid := 0
	if len(c.MonitorPids) > 0 {
		pid = c.MonitorPids[0]
	}
	err := o.stopAndRemove(ctx, c.ID, pid)
	if rerr := os.RemoveAll(c.LogDir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	o.mu.Lock()
	delete(o.live, c.ID)
	o.mu.Unlock()
	return err
}

// stopAndRemove stops a monitor, waits until its process is really gone, and
// removes its state and cgroups.
//
// runtime.Stop can return while the monitor still works: after the exit it execs
// from agent-monitor-lean into `agent-monitor next` (which unmounts the rootfs and
// destroys the libcontainer state), and while a multi-threaded process execs, its
// thread-group leader shows as a zombie in /proc/<pid>/stat — which
// protocol.ProcessAlive counts as gone. runtime.Remove would then delete the
// state directory under the running `next`, which fails and leaves the overlay
// mount and cgroups behind. So wait until no thread of the monitor is left.
func (o *ours) stopAndRemove(ctx context.Context, id string, pid int) error {
	if _, err := os.Stat(o.stateDir(id)); err != nil {
		return nil
	}
	var errs []error
	if pid == 0 {
		if j, err := protocol.ReadJournal(o.stateDir(id)); err == nil {
			pid = j.MonitorPid
		}
	}
	if _, err := o.rt.Stop(ctx, id, 0); err != nil {
		errs = append(errs, err)
	}
	o.stops.Add(1)
	if pid > 0 && !benchutil.NoThreadLeft(pid) {
		o.stopEarly.Add(1)
	}
	if pid > 0 && !benchutil.WaitUntil(ctx, 20*time.Second, func() bool { return benchutil.NoThreadLeft(pid) }) {
		errs = append(errs, fmt.Errorf("monitor pid %d of %s still runs 20 s after its stop", pid, id))
	}
	if err := o.rt.Remove(id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *ours) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	o.mu.Lock()
	left := make([]*container, 0, len(o.live))
	for _, c := range o.live {
		left = append(left, c)
	}
	o.mu.Unlock()
	errs = append(errs, stopAll(ctx, o, left))
	// Monitors found in run-dir that we never knew of (a Start that failed half-way).
	if ms, err := o.rt.List(ctx); err == nil {
		for _, m := range ms {
			errs = append(errs, o.stopAndRemove(ctx, m.ID, 0))
		}
	}
	if o.pod != nil {
		o.rt.RemoveSandbox(string(o.pod.UID))
	}
	benchutil.RemoveCgroup(o.parent)
	return errors.Join(errs...)
}

// stopAll stops containers in parallel.
func stopAll(ctx context.Context, d driver, cs []*container) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(cs))
	sem := make(chan struct{}, 8)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := d.Stop(ctx, c); err != nil {
				errc <- fmt.Errorf("%s %s: %w", d.Name(), c.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
