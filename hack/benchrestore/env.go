package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/agentd-project/agentd/cri"
)

// nodeName is agentd's node-name: static pods are named <manifest name>-<node>.
const nodeName = "brestore"

// env is the agentd of this run with everything of its own: a work directory
// (binaries, manifests, root, run-dir, log-dir, config, agentd's logs), a cgroup
// parent, a bridge and a subnet.
type env struct {
	o                       *options
	base, bin               string
	manifests, root, runDir string
	logDir, socket, config  string
	parent, bridge, subnet  string
	version                 string

	pods    int // manifests written
	cmd     *exec.Cmd
	logFile string // agentd's output of the current run
	exited  chan struct{}
	exitErr error
	runs    int
	api     *apiClient
}

func newEnv(o *options) (*env, error) {
	o.abs()
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("work directory %s is not empty", o.dir)
	}
	e := &env{o: o, base: o.dir, bin: filepath.Join(o.dir, "bin"),
		manifests: filepath.Join(o.dir, "manifests"), root: filepath.Join(o.dir, "root"),
		runDir: filepath.Join(o.dir, "run"), logDir: filepath.Join(o.dir, "logs"),
		config: filepath.Join(o.dir, "config.json"), parent: o.parent, subnet: o.subnet}
	e.socket = filepath.Join(e.runDir, "agent.sock")
	e.api = newAPIClient(e.socket)
	if e.bridge = o.bridge; e.bridge == "" {
		for n := 0; n < 100 && e.bridge == ""; n++ {
			if _, err := net.InterfaceByName(fmt.Sprintf("agbr%d", n)); err != nil {
				e.bridge = fmt.Sprintf("agbr%d", n)
			}
		}
		if e.bridge == "" {
			return nil, errors.New("no free bridge name agbr0..agbr99")
		}
	} else if _, err := net.InterfaceByName(e.bridge); err == nil {
		return nil, fmt.Errorf("bridge %s exists already: pick another with -bridge", e.bridge)
	}
	if err := checkSubnet(e.subnet); err != nil {
		return nil, err
	}
	for _, root := range cgroupRoots() {
		if _, err := os.Stat(filepath.Join(root, e.parent)); err == nil {
			return nil, fmt.Errorf("cgroup %s exists already: pick another -cgroup-parent", filepath.Join(root, e.parent))
		}
	}
	return e, nil
}

// checkSubnet refuses a subnet overlapping an address of this host.
func checkSubnet(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("-subnet %q: %w", s, err)
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if q, err := netip.ParsePrefix(ipn.String()); err == nil && q.Overlaps(p) {
					return fmt.Errorf("subnet %s overlaps %s on %s: pick another with -subnet", s, ipn, ifc.Name)
				}
			}
		}
	}
	return nil
}

// prepare copies the binaries (a concurrent `make build` must not swap them under
// a running benchmark), writes the config and imports the test image.
func (e *env) prepare(ctx context.Context) error {
	if err := os.MkdirAll(e.bin, 0o755); err != nil {
		return err
	}
	for _, b := range []string{"agentd", "agentctl", "agent-monitor", "agent-monitor-lean"} {
		if err := copyFile(filepath.Join(e.o.bin, b), filepath.Join(e.bin, b), 0o755); err != nil {
			return fmt.Errorf("%w (run `make build image` first)", err)
		}
	}
	out, err := exec.Command(filepath.Join(e.bin, "agentd"), "--version").Output()
	if err != nil {
		return fmt.Errorf("agentd --version: %w", err)
	}
	e.version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "agentd"))
	if err := os.MkdirAll(e.manifests, 0o755); err != nil {
		return err
	}
	if err := e.writeConfig(true); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(e.bin, "agentctl"), "--root", e.root, "image", "import", e.o.image).CombinedOutput(); err != nil {
		return fmt.Errorf("agentctl image import %s: %w: %s", e.o.image, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func (e *env) writeConfig(liveRestore bool) error {
	cfg := map[string]any{
		"manifest-dir":  e.manifests,
		"root":          e.root,
		"run-dir":       e.runDir,
		"log-dir":       e.logDir,
		"node-name":     nodeName,
		"cgroup-parent": e.parent,
		"live-restore":  liveRestore,
		"log-format":    "json", // nanosecond timestamps for "agentd is running"
		"network":       map[string]string{"bridge": e.bridge, "subnet": e.subnet},
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	return os.WriteFile(e.config, data, 0o600)
}

// start execs agentd (argv0 may be another agentd binary, e.g. under perf) and
// returns the time just before the exec; it does not wait for anything.
func (e *env) exec(label string, argv ...string) (time.Time, error) {
	if e.running() {
		return time.Time{}, errors.New("agentd runs already")
	}
	if len(argv) == 0 {
		argv = []string{filepath.Join(e.bin, "agentd")}
	}
	argv = append(argv, "--config-file", e.config)
	e.runs++
	e.logFile = filepath.Join(e.base, fmt.Sprintf("agentd-%02d-%s.log", e.runs, label))
	out, err := os.OpenFile(e.logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return time.Time{}, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C in the terminal reaches us, and we stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return t0, err
	}
	e.cmd, e.exited, e.exitErr = cmd, make(chan struct{}), nil
	// For hack/bench-restore.sh's last resort, should this process be killed.
	_ = os.WriteFile(filepath.Join(e.base, "agentd.pid"), []byte(fmt.Sprintln(cmd.Process.Pid)), 0o644)
	go func() { e.exitErr = cmd.Wait(); close(e.exited) }()
	return t0, nil
}

// start runs agentd and waits until its API answers.
func (e *env) start(ctx context.Context, label string) (time.Duration, error) {
	t0, err := e.exec(label)
	if err != nil {
		return 0, err
	}
	if err := e.waitAPI(ctx, 60*time.Second); err != nil {
		return 0, err
	}
	took := time.Since(t0)
	if b, _ := os.ReadFile(e.logFile); strings.Contains(string(b), "Pod networking unavailable") {
		return took, fmt.Errorf("agentd runs without pod networking (CNI plugins or iptables missing? run hack/install-deps.sh)\n%s", e.logTail(20))
	}
	return took, nil
}

func (e *env) waitAPI(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-e.exited:
			return fmt.Errorf("agentd exited at start: %v\n%s", e.exitErr, e.logTail(30))
		default:
		}
		if _, err := e.api.get(ctx, "/version"); err == nil {
			return nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("agentd does not answer on %s: %v\n%s", e.socket, err, e.logTail(30))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) running() bool {
	if e.cmd == nil {
		return false
	}
	select {
	case <-e.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for agentd to exit.
func (e *env) stop(timeout time.Duration) (time.Duration, error) {
	if !e.running() {
		return 0, nil
	}
	t0 := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-e.exited:
		if e.exitErr != nil {
			return time.Since(t0), fmt.Errorf("agentd exited with %v after SIGTERM\n%s", e.exitErr, e.logTail(20))
		}
		return time.Since(t0), nil
	case <-time.After(timeout):
		return time.Since(t0), fmt.Errorf("agentd did not exit within %v of SIGTERM\n%s", timeout, e.logTail(20))
	}
}

func (e *env) kill() {
	if e.running() {
		_ = e.cmd.Process.Signal(syscall.SIGKILL)
		<-e.exited
	}
}

func (e *env) logTail(n int) string {
	b, _ := os.ReadFile(e.logFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "agentd log (last lines, " + e.logFile + "):\n  " + strings.Join(lines, "\n  ")
}

const podTemplate = `apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 10 & wait; done"]
`

func podName(i int) string { return fmt.Sprintf("br-%04d", i) }

// writePods writes manifests for pods [from, to) as tools should: a dotfile the
// source skips, then rename.
func (e *env) writePods(from, to int) error {
	for i := from; i < to; i++ {
		name := podName(i)
		tmp := filepath.Join(e.manifests, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf(podTemplate, name)), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(e.manifests, name+".yaml")); err != nil {
			return err
		}
	}
	e.pods = to
	return nil
}

// monitorPids reads <run-dir>/monitors/*/journal.json: monitor pid by monitor id.
func (e *env) monitorPids() map[string]int {
	out := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(e.runDir, "monitors", "*", cri.JournalFile))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var j cri.Journal
		if json.Unmarshal(b, &j) == nil && j.MonitorPid > 0 {
			out[filepath.Base(filepath.Dir(f))] = j.MonitorPid
		}
	}
	return out
}

// logLine is one line of agentd's JSON log.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// readLog parses the current run's log.
func (e *env) readLog() []logLine {
	f, err := os.Open(e.logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg != "" {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits for a log line with msg in the current run's log.
func (e *env) waitLog(msg string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range e.readLog() {
			if l.Msg == msg {
				return l.Time, nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no log line %q within %v\n%s", msg, timeout, e.logTail(10))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
