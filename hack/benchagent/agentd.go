package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// env is one agentd of this run with everything of its own: a work directory
// (manifests, root, run-dir, log-dir, config file, agentd's log), a cgroup
// parent, a bridge and a subnet.
type env struct {
	benchutil.Agentd
	o                              *options
	base, bin                      string
	manifests, root, runDir        string
	logDir, socket, config, logOut string
	parent, bridge, subnet         string

	client *api.Client
}

func newEnv(o *options, base, bin string) (*env, error) {
	e := &env{o: o, base: base, bin: bin,
		manifests: filepath.Join(base, "manifests"),
		root:      filepath.Join(base, "root"),
		runDir:    filepath.Join(base, "run"),
		logDir:    filepath.Join(base, "logs"),
		config:    filepath.Join(base, "config.json"),
		logOut:    filepath.Join(base, "agentd.log"),
		parent:    fmt.Sprintf("/agentd-bench-%d", os.Getpid()),
		subnet:    o.subnet,
	}
	e.LogFile = e.logOut
	e.socket = filepath.Join(e.runDir, "agent.sock")
	e.client = api.NewClient(e.socket)
	if err := os.MkdirAll(e.manifests, 0o755); err != nil {
		return nil, err
	}
	var err error
	if e.bridge, err = benchutil.PickBridge(o.bridge, "agbench", 1000); err != nil {
		return nil, err
	}
	if err := benchutil.CheckSubnet(e.subnet); err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"manifest-dir":    e.manifests,
		"root":            e.root,
		"run-dir":         e.runDir,
		"socket":          e.socket,
		"log-dir":         e.logDir,
		"cgroup-parent":   e.parent,
		"live-restore":    false, // SIGTERM stops the pods: that is what the stop benchmark times
		"log-level":       o.logLevel,
		"seccomp-default": o.seccompDefault,
		"network":         map[string]string{"bridge": e.bridge, "subnet": e.subnet},
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(e.config, data, 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// start runs agentd and waits until its API answers; it returns how long that took.
func (e *env) start(ctx context.Context) (time.Duration, error) {
	t0, err := e.Exec(benchutil.ExecConfig{
		Argv:   []string{filepath.Join(e.bin, "agentd"), "--config-file", e.config},
		Log:    e.logOut,
		Append: true,
		Header: fmt.Sprintf("==== agentd started by benchagent at %s", time.Now().Format(time.RFC3339Nano)),
		// Its working directory is ours, and so is that of everything it runs (CNI
		// plugins, iptables): the clean-up finds those by it.
		Dir: e.base,
	})
	if err != nil {
		return 0, err
	}
	if err := e.WaitAPI(ctx, 30*time.Second, e.socket, func(ctx context.Context) error {
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := e.client.Info(ictx)
		return err
	}); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// write puts a manifest in place (temporary dotfile, then rename).
func (e *env) write(name, content string) error {
	return benchutil.WriteManifest(e.manifests, name, content)
}

// cleanup stops agentd and removes everything of this run. It returns what it
// found left over (each also removed where it could be).
func (e *env) cleanup(saveLog string) error {
	var errs []error
	if e.Running() {
		if _, err := e.Stop(60 * time.Second); err != nil {
			errs = append(errs, err)
			e.Kill()
		}
	}
	errs = append(errs, e.StopLeftMonitors(e.bin, e.manifests, 60*time.Second,
		func(format string, args ...any) { fmt.Printf(format+"\n", args...) },
		func(ctx context.Context) error { _, err := e.start(ctx); return err })...)
	// What agentd left (it should not have) and helpers it did not wait for (a CNI
	// plugin still adding a pod when agentd exited goes on, and adds its nat rules,
	// after agentd is gone): waited for before the network is checked.
	errs = append(errs, benchutil.Run{Base: e.base, Parent: e.parent, Bridge: e.bridge, Subnet: e.subnet}.Clean(30*time.Second, true)...)
	if saveLog == "" && len(errs) > 0 {
		saveLog = e.base + ".agentd.log"
	}
	if saveLog != "" {
		if b, err := os.ReadFile(e.logOut); err == nil && os.WriteFile(saveLog, b, 0o644) == nil {
			fmt.Printf("agentd's log (this run's clean-up included) saved to %s\n", saveLog)
		}
	}
	if err := benchutil.RemoveUnlessMounted(e.base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		fmt.Printf("clean-up: nothing left (no process, mount, cgroup under %s, bridge %s or nat rule for %s; %s removed)\n",
			e.parent, e.bridge, e.subnet, e.base)
	}
	return errors.Join(errs...)
}
