package yardstick

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// conmonRunc runs containers the way CRI-O and Podman do: Debian's conmon, which
// daemonizes, runs `runc create` and then stays as the container's parent and log
// writer (k8s-file driver); the caller then runs `runc start`.
//
// Each container gets an OCI bundle: a config.json made from `runc spec` (args,
// terminal false, writable rootfs, cgroupsPath under our own cgroup parent; runc's
// default namespaces: pid, net, ipc, uts, mount) and an overlay rootfs whose
// read-only lower dir is the unpacked test image (Unpack), with a per-container
// upper/work dir in the bundle — the same rootfs hack/benchmon gives agent-monitor.
type ConmonRunc struct {
	conmon, runc string
	dir          string
	runcRoot     string
	exitDir      string
	sockDir      string
	parent       string // cgroup parent
	lower        string // the unpacked image
	template     map[string]any
	syncLog      bool // let conmon sync(2) its log at container exit (its default)

	mu   sync.Mutex
	live map[string]*Container
}

type conmonCtr struct {
	bundle  string
	rootfs  string
	mounted bool
	syncR   *os.File // conmon's sync pipe; kept open while the container lives
	started bool
}

// NewConmonRunc returns the driver, with its directories under dir; rootfs is the
// unpacked image. syncLog lets conmon sync(2) the log at the container's exit
// (conmon's default; agent-monitor does not).
func NewConmonRunc(dir, conmonPath, runcPath, rootfs string, syncLog bool) (*ConmonRunc, error) {
	d := &ConmonRunc{
		conmon:   conmonPath,
		runc:     runcPath,
		dir:      dir,
		runcRoot: filepath.Join(dir, "runc"),
		exitDir:  filepath.Join(dir, "exits"),
		sockDir:  filepath.Join(dir, "sock"),
		parent:   fmt.Sprintf("/agentd-bench-conmon-%d", os.Getpid()),
		lower:    rootfs,
		syncLog:  syncLog,
		live:     map[string]*Container{},
	}
	for _, p := range []string{d.runcRoot, d.exitDir, d.sockDir, filepath.Join(dir, "bundles"), filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	tmp := filepath.Join(dir, "spec-template")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	if out, err := exec.Command(runcPath, "spec", "--bundle", tmp).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("runc spec: %w: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(tmp, "config.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &d.template); err != nil {
		return nil, fmt.Errorf("runc spec: %w", err)
	}
	_ = os.RemoveAll(tmp)
	return d, nil
}

func (d *ConmonRunc) Name() string { return "conmon+runc" }

// config makes a container's config.json from runc's default spec.
func (d *ConmonRunc) config(id string, args []string) ([]byte, error) {
	raw, err := json.Marshal(d.template) // a deep copy
	if err != nil {
		return nil, err
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	p, ok := s["process"].(map[string]any)
	if !ok {
		return nil, errors.New("runc spec has no process")
	}
	p["args"] = args
	p["terminal"] = false
	s["root"] = map[string]any{"path": "rootfs", "readonly": false}
	s["hostname"] = id
	l, ok := s["linux"].(map[string]any)
	if !ok {
		return nil, errors.New("runc spec has no linux section")
	}
	l["cgroupsPath"] = d.parent + "/" + id
	return json.MarshalIndent(s, "", "  ")
}

func (d *ConmonRunc) Prepare(name string, args []string) (*Container, error) {
	id := "bench-" + name
	bundle := filepath.Join(d.dir, "bundles", id)
	cc := &conmonCtr{bundle: bundle, rootfs: filepath.Join(bundle, "rootfs")}
	c := &Container{Name: name, ID: id, LogDir: filepath.Join(d.dir, "logs", id), Priv: cc}
	c.LogPath = filepath.Join(c.LogDir, "ctr.log")
	d.mu.Lock()
	d.live[id] = c // from here on Close cleans it up
	d.mu.Unlock()
	for _, p := range []string{cc.rootfs, filepath.Join(bundle, "upper"), filepath.Join(bundle, "work"), c.LogDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	opts := "lowerdir=" + d.lower + ",upperdir=" + filepath.Join(bundle, "upper") + ",workdir=" + filepath.Join(bundle, "work")
	if err := unix.Mount("overlay", cc.rootfs, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("mount overlay rootfs for %s: %w", id, err)
	}
	cc.mounted = true
	cfg, err := d.config(id, args)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// Start runs conmon (which forks, daemonizes and runs `runc create`), waits for
// its report on the sync pipe, then runs `runc start`.
func (d *ConmonRunc) Start(ctx context.Context, c *Container) error {
	cc := c.Priv.(*conmonCtr)
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return err
	}
	cc.syncR = syncR
	args := []string{
		"--api-version", "1",
		"-c", c.ID, "-u", c.ID, "-n", c.Name,
		"-r", d.runc,
		"-b", cc.bundle,
		"-p", filepath.Join(cc.bundle, "pidfile"),
		"-P", filepath.Join(cc.bundle, "conmon.pid"),
		"-l", "k8s-file:" + c.LogPath,
		"--log-size-max", "-1",
		"--exit-dir", d.exitDir,
		"--socket-dir-path", d.sockDir,
		"--runtime-arg", "--root=" + d.runcRoot,
		"--log-level", "error",
	}
	if !d.syncLog {
		args = append(args, "--no-sync-log")
	}
	cmd := exec.CommandContext(ctx, d.conmon, args...)
	cmd.ExtraFiles = []*os.File{syncW} // fd 3
	cmd.Env = append(os.Environ(), "_OCI_SYNCPIPE=3")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err = cmd.Run() // returns when conmon's first process exits, having forked the daemon
	syncW.Close()
	cc.started = true
	if pid, perr := readPidFile(filepath.Join(cc.bundle, "conmon.pid")); perr == nil {
		c.MonitorPids = []int{pid} // written by conmon's first process before it exits
	}
	if err != nil {
		return fmt.Errorf("conmon: %w: %s", err, strings.TrimSpace(stderr.String()))
	}

	type syncMsg struct {
		Data    int    `json:"data"`
		Message string `json:"message"`
	}
	done := make(chan error, 1)
	var m syncMsg
	go func() { done <- json.NewDecoder(syncR).Decode(&m) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("conmon sync pipe: %w (%s)", err, strings.TrimSpace(stderr.String()))
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("conmon: no report on its sync pipe within 30 s")
	}
	if m.Data < 0 {
		return fmt.Errorf("runc create failed: %s", m.Message)
	}
	c.Pid = m.Data
	if out, err := exec.CommandContext(ctx, d.runc, "--root", d.runcRoot, "start", c.ID).CombinedOutput(); err != nil {
		return fmt.Errorf("runc start: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (d *ConmonRunc) exitFile(c *Container) string { return filepath.Join(d.exitDir, c.ID) }

// Exited reports whether conmon wrote the container's exit file.
func (d *ConmonRunc) Exited(c *Container) bool {
	_, err := os.Stat(d.exitFile(c))
	return err == nil
}

func (d *ConmonRunc) Stop(ctx context.Context, c *Container) error {
	cc := c.Priv.(*conmonCtr)
	var errs []error
	if cc.started {
		if len(c.MonitorPids) == 0 {
			if pid, err := readPidFile(filepath.Join(cc.bundle, "conmon.pid")); err == nil {
				c.MonitorPids = []int{pid}
			}
		}
		_ = exec.CommandContext(ctx, d.runc, "--root", d.runcRoot, "kill", c.ID, "KILL").Run()
		benchutil.WaitUntil(ctx, 10*time.Second, func() bool { return d.Exited(c) })
		if out, err := exec.CommandContext(ctx, d.runc, "--root", d.runcRoot, "delete", "--force", c.ID).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "does not exist") {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", c.ID, err, strings.TrimSpace(string(out))))
		}
		for _, pid := range c.MonitorPids {
			if !benchutil.WaitUntil(ctx, 10*time.Second, func() bool { return !benchutil.Alive(pid) }) && isConmonOf(pid, c.ID) {
				_ = unix.Kill(pid, unix.SIGKILL)
				if !benchutil.WaitUntil(ctx, 5*time.Second, func() bool { return !benchutil.Alive(pid) }) {
					errs = append(errs, fmt.Errorf("conmon pid %d of %s survives SIGKILL", pid, c.ID))
				}
			}
		}
	}
	if cc.syncR != nil {
		cc.syncR.Close()
	}
	if cc.mounted {
		for unix.Unmount(cc.rootfs, unix.MNT_DETACH) == nil {
		}
		cc.mounted = false
	}
	for _, p := range []string{cc.bundle, c.LogDir, d.exitFile(c), filepath.Join(d.sockDir, c.ID)} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	benchutil.RemoveCgroup(d.parent + "/" + c.ID)
	d.mu.Lock()
	delete(d.live, c.ID)
	d.mu.Unlock()
	return errors.Join(errs...)
}

func (d *ConmonRunc) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d.mu.Lock()
	left := make([]*Container, 0, len(d.live))
	for _, c := range d.live {
		left = append(left, c)
	}
	d.mu.Unlock()
	err := StopAll(ctx, d, left)
	benchutil.RemoveCgroup(d.parent)
	return err
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// isConmonOf reports whether pid is the conmon of container id (not a reused pid).
func isConmonOf(pid int, id string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	if len(args) == 0 || filepath.Base(args[0]) != "conmon" {
		return false
	}
	for _, a := range args {
		if a == id {
			return true
		}
	}
	return false
}

// StopAll stops containers of d in parallel.
func StopAll(ctx context.Context, d Driver, cs []*Container) error {
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
