package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
	"github.com/agentd-project/agentd/hack/internal/yardstick"
)

// agentMonitor drives the agent-monitor binary as agentd does, through its
// public contract only (package protocol): it writes the container's
// protocol.ContainerConfig into a state directory of its own, runs
// `agent-monitor start --state-dir DIR` with a sync pipe on fd 3 (the monitor
// takes the state dir's lock itself and reports once the first run started),
// and reads the monitor's protocol.Journal. Its containers get what conmon+runc's
// get from `runc spec`: private pid, net, ipc, uts and mount namespaces, runc's
// default capabilities, no seccomp filter, an overlay rootfs over the same
// unpacked image, restart policy Never.
//
// It stops a container by killing its process: with restart policy Never the
// monitor then records the exit, cleans up the run (unmounts its rootfs) and
// exits. That is not agentd's stop (a request on the control socket), which the
// benchmark does not time.
type agentMonitor struct {
	bin      string // agent-monitor; agent-monitor-lean sits beside it
	stateDir string // one state dir per container below it
	logDir   string
	libctr   string // libcontainer's state root
	parent   string // cgroup parent
	rootfs   string

	mu   sync.Mutex
	live map[string]*yardstick.Container // prepared and not yet stopped
}

func newAgentMonitor(dir, bin, rootfs string) (*agentMonitor, error) {
	d := &agentMonitor{
		bin:      filepath.Join(bin, "agent-monitor"),
		stateDir: filepath.Join(dir, "state"),
		logDir:   filepath.Join(dir, "logs"),
		libctr:   filepath.Join(dir, "libcontainer"),
		parent:   fmt.Sprintf("/agentd-bench-%d", os.Getpid()),
		rootfs:   rootfs,
		live:     map[string]*yardstick.Container{},
	}
	for _, p := range []string{d.stateDir, d.logDir, d.libctr} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *agentMonitor) Name() string { return "agent-monitor" }

func (d *agentMonitor) dir(c *yardstick.Container) string { return filepath.Join(d.stateDir, c.ID) }

func (d *agentMonitor) Prepare(name string, args []string) (*yardstick.Container, error) {
	id := "bench-" + name
	cfg := &protocol.ContainerConfig{
		ID:     id,
		Name:   name,
		Pod:    protocol.PodRef{Namespace: "bench", Name: "bench", UID: "bench"},
		Image:  protocol.ImageRef{Name: "localhost/busybox:latest"},
		Rootfs: protocol.Rootfs{Layers: []string{d.rootfs}, Driver: "overlay"},
		Process: protocol.Process{
			Args:            args,
			Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:             "/",
			Capabilities:    []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}, // runc spec's
			NoNewPrivileges: true,
		},
		Hostname: id,
		Cgroup:   protocol.Cgroup{Path: d.parent + "/" + id, MonitorPath: d.parent + "/monitors/" + id},
		// Never rotate: the throughput run counts every byte of one file.
		Log:       protocol.LogConfig{Dir: filepath.Join(d.logDir, id), Root: d.logDir, MaxSize: 1 << 40, MaxFiles: 1},
		Restart:   protocol.Restart{Policy: protocol.RestartNever},
		StateRoot: d.libctr,
	}
	// The first run's log file, as protocol.LogConfig names it; Start checks it
	// against the journal.
	c := &yardstick.Container{Name: name, ID: id, LogDir: cfg.Log.Dir, LogPath: filepath.Join(cfg.Log.Dir, "0.log")}
	d.mu.Lock()
	d.live[id] = c // from here on Close cleans it up
	d.mu.Unlock()
	data, err := json.Marshal(cfg)
	if err != nil {
		return c, err
	}
	for _, p := range []string{d.dir(c), c.LogDir} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return c, err
		}
	}
	return c, os.WriteFile(filepath.Join(d.dir(c), protocol.ConfigFile), data, 0o600)
}

// Start runs `agent-monitor start`, which spawns the detached monitor and exits;
// the monitor reports on the sync pipe once the container's first run started
// (or failed) and closes it. The journal then names the run.
func (d *agentMonitor) Start(ctx context.Context, c *yardstick.Container) error {
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer syncR.Close()
	cmd := exec.CommandContext(ctx, d.bin, "start", "--state-dir", d.dir(c))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.ExtraFiles = []*os.File{syncW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run()
	syncW.Close()
	if err != nil {
		return fmt.Errorf("agent-monitor start: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	report := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(syncR); report <- b }()
	var msg []byte
	select {
	case msg = <-report:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("agent-monitor: no report on its sync pipe within 30 s")
	}
	j, err := readJournal(d.dir(c))
	if err != nil {
		return fmt.Errorf("monitor reported %q: %w", bytes.TrimSpace(msg), err)
	}
	if j.MonitorPid > 0 {
		c.MonitorPids = []int{j.MonitorPid}
	}
	run := j.Current()
	if run == nil || run.Pid <= 0 {
		return fmt.Errorf("container did not start; the monitor reported %q", bytes.TrimSpace(msg))
	}
	c.Pid = run.Pid
	c.Priv = run.PidStartTime
	if run.LogPath != c.LogPath {
		return fmt.Errorf("the monitor logs to %s, not to %s as protocol.LogConfig says", run.LogPath, c.LogPath)
	}
	return nil
}

// Exited reports whether the journal says Exited: the monitor writes that only
// after it drained the container's pipes and closed the log.
func (d *agentMonitor) Exited(c *yardstick.Container) bool {
	j, err := readJournal(d.dir(c))
	return err == nil && j.State == protocol.StateExited
}

// Stop kills the container's process (when it is still the one the journal
// names), waits for the monitor to record the exit and to be gone — its last
// image, `agent-monitor next`, unmounts the run's rootfs — and removes the state,
// the log and the cgroups.
func (d *agentMonitor) Stop(ctx context.Context, c *yardstick.Container) error {
	var errs []error
	if c.Pid > 0 && !d.Exited(c) {
		if start, ok := c.Priv.(uint64); ok && startTime(c.Pid) == start {
			_ = unix.Kill(c.Pid, unix.SIGKILL)
		}
		if !benchutil.WaitUntil(ctx, 20*time.Second, func() bool { return d.Exited(c) }) {
			errs = append(errs, fmt.Errorf("%s: no exit recorded 20 s after SIGKILL", c.ID))
		}
	}
	for _, pid := range c.MonitorPids {
		// The lean monitor execs `agent-monitor next` after the exit; while a
		// multi-threaded process execs, its leader shows as a zombie: wait until
		// no thread is left.
		if !benchutil.WaitUntil(ctx, 20*time.Second, func() bool { return benchutil.NoThreadLeft(pid) }) {
			errs = append(errs, fmt.Errorf("monitor pid %d of %s still runs 20 s after its container exited", pid, c.ID))
		}
	}
	if len(errs) == 0 {
		for _, p := range []string{d.dir(c), c.LogDir} {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
		benchutil.RemoveCgroup(d.parent + "/" + c.ID)
		benchutil.RemoveCgroup(d.parent + "/monitors/" + c.ID)
	}
	d.mu.Lock()
	delete(d.live, c.ID)
	d.mu.Unlock()
	return errors.Join(errs...)
}

func (d *agentMonitor) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d.mu.Lock()
	left := make([]*yardstick.Container, 0, len(d.live))
	for _, c := range d.live {
		left = append(left, c)
	}
	d.mu.Unlock()
	err := yardstick.StopAll(ctx, d, left)
	benchutil.RemoveCgroup(d.parent)
	return err
}

func readJournal(dir string) (*protocol.Journal, error) {
	b, err := os.ReadFile(filepath.Join(dir, protocol.JournalFile))
	if err != nil {
		return nil, err
	}
	var j protocol.Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", protocol.JournalFile, err)
	}
	return &j, nil
}

// startTime is field 22 of /proc/<pid>/stat (0 when unreadable): with the pid it
// identifies a process.
func startTime(pid int) uint64 {
	f, err := benchutil.StatFields(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
