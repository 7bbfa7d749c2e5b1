package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// cleanup stops every pod and removes everything of this run; it returns what it
// found left over (each also removed where it safely could be).
func (e *env) cleanup() error {
	var errs []error
	logf("clean-up: stopping %d pods (agentd with live restore off)", e.pods)
	// live-restore is reloadable: SIGHUP, then SIGTERM stops every pod in parallel.
	if err := e.writeConfig(false); err != nil {
		errs = append(errs, err)
	}
	if e.Running() {
		_ = e.Signal(syscall.SIGHUP)
		if err := e.waitLiveRestoreOff(); err != nil {
			errs = append(errs, err)
		}
		if _, err := e.Stop(5 * time.Minute); err != nil {
			errs = append(errs, err)
			e.Kill()
		}
	}
	// Monitors left (agentd killed, or the SIGHUP did not take).
	errs = append(errs, e.StopLeftMonitors(e.bin, e.manifests, 5*time.Minute, logf,
		func(ctx context.Context) error { _, err := e.start(ctx, "cleanup"); return err })...)
	if e.o.logsDir != "" {
		if err := e.copyLogs(); err != nil {
			errs = append(errs, fmt.Errorf("-logs: %w", err))
		}
	}
	// Left alone, not killed: what agentd left is a finding to look into.
	errs = append(errs, benchutil.Run{Base: e.base, Parent: e.parent, Bridge: e.bridge, Subnet: e.subnet}.Clean(5*time.Second, false)...)
	if err := benchutil.RemoveUnlessMounted(e.base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		logf("clean-up: nothing left (no process, mount under %s, cgroup under %s, bridge %s, nat rule for %s)", e.base, e.parent, e.bridge, e.subnet)
	}
	return errors.Join(errs...)
}

// waitLiveRestoreOff waits until agentd's API says live restore is off (after the
// SIGHUP that reloads the config).
func (e *env) waitLiveRestoreOff() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		i, err := e.api.info(ctx)
		if err == nil && !i.LiveRestoreEnabled {
			return nil
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("live restore still on 10 s after SIGHUP (last error: %v)\n%s", last, e.LogTail(10))
}

// copyLogs copies agentd's logs of this run into -logs.
func (e *env) copyLogs() error {
	if err := os.MkdirAll(e.o.logsDir, 0o755); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(e.base, "agentd-*.log"))
	for _, f := range files {
		if err := benchutil.CopyFile(f, filepath.Join(e.o.logsDir, filepath.Base(f)), 0o644); err != nil {
			return err
		}
	}
	logf("agentd's logs copied to %s", e.o.logsDir)
	return nil
}
