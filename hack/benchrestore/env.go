package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/hack/internal/benchutil"
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

	pods             int // manifests written
	runs             int
	api              *apiClient
	benchutil.Agentd // LogFile: agentd's output of the current run
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
	if e.bridge, err = benchutil.PickBridge(o.bridge, "agbr", 100); err != nil {
		return nil, err
	}
	if err := benchutil.CheckSubnet(e.subnet); err != nil {
		return nil, err
	}
	for _, root := range benchutil.CgroupRoots() {
		if _, err := os.Stat(filepath.Join(root, e.parent)); err == nil {
			return nil, fmt.Errorf("cgroup %s exists already: pick another -cgroup-parent", filepath.Join(root, e.parent))
		}
	}
	return e, nil
}

// prepare copies the binaries (a concurrent `make build` must not swap them under
// a running benchmark), writes the config and imports the test image.
func (e *env) prepare(ctx context.Context) error {
	if err := benchutil.CopyBinaries(e.o.bin, e.bin); err != nil {
		return fmt.Errorf("%w (run `make build image` first)", err)
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
	return benchutil.ImportImage(ctx, e.bin, e.root, e.o.image)
}

func (e *env) writeConfig(liveRestore bool) error {
	cfg := map[string]any{
		"manifest-dir":  e.manifests,
		"root":          e.root,
		"run-dir":       e.runDir,
		"socket":        e.socket,
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

// exec execs agentd (argv may be another agentd binary, or a wrapper such as perf
// and agentd) and returns the time just before the exec; it does not wait for
// anything. Each run logs to its own file.
func (e *env) exec(label string, argv ...string) (time.Time, error) {
	if len(argv) == 0 {
		argv = []string{filepath.Join(e.bin, "agentd")}
	}
	argv = append(argv, "--config-file", e.config)
	e.runs++
	t0, err := e.Exec(benchutil.ExecConfig{Argv: argv, Log: filepath.Join(e.base, fmt.Sprintf("agentd-%02d-%s.log", e.runs, label))})
	if err == nil {
		// For hack/bench-restore.sh's last resort, should this process be killed.
		_ = os.WriteFile(filepath.Join(e.base, "agentd.pid"), []byte(fmt.Sprintln(e.Pid())), 0o644)
	}
	return t0, err
}

// start runs agentd and waits until its API answers.
func (e *env) start(ctx context.Context, label string) (time.Duration, error) {
	t0, err := e.exec(label)
	if err != nil {
		return 0, err
	}
	if err := e.WaitAPI(ctx, 60*time.Second, e.socket, func(ctx context.Context) error {
		_, err := e.api.get(ctx, api.PathVersion)
		return err
	}); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
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
		if err := benchutil.WriteManifest(e.manifests, name+".yaml", fmt.Sprintf(podTemplate, name)); err != nil {
			return err
		}
	}
	e.pods = to
	return nil
}

// logLine is one line of agentd's JSON log.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// readLog parses the current run's log.
func (e *env) readLog() []logLine {
	f, err := os.Open(e.LogFile)
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

// logTime is the time of the current run's first log line with msg; false when
// there is none within timeout. Log lines are agentd's to change: what is
// measured from them is reported when they are there, never required.
func (e *env) logTime(msg string, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range e.readLog() {
			if l.Msg == msg {
				return l.Time, true
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
