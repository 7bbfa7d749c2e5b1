package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	if e.running() {
		_ = e.cmd.Process.Signal(syscall.SIGHUP)
		if _, err := e.waitLog("Configuration changed", 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("live-restore off at SIGHUP: %w", err))
		}
		if _, err := e.stop(5 * time.Minute); err != nil {
			errs = append(errs, err)
			e.kill()
		}
	}
	// Monitors left (agentd killed, or the SIGHUP did not take): an agentd with live
	// restore off stops every monitor it finds at start; with no manifests it starts
	// nothing.
	if ms, _ := os.ReadDir(filepath.Join(e.runDir, "monitors")); len(ms) > 0 {
		logf("clean-up: %d monitor(s) left; starting agentd once more (live restore off, no manifests) to stop them", len(ms))
		_ = os.RemoveAll(e.manifests)
		_ = os.MkdirAll(e.manifests, 0o755)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if _, err := e.start(ctx, "cleanup"); err != nil {
			errs = append(errs, fmt.Errorf("clean-up start: %w", err))
		}
		cancel()
		if _, err := e.stop(5 * time.Minute); err != nil {
			errs = append(errs, err)
		}
		e.kill()
	}
	if e.o.logsDir != "" {
		if err := e.copyLogs(); err != nil {
			errs = append(errs, fmt.Errorf("-logs: %w", err))
		}
	}
	left := e.processes()
	for i := 0; len(left) > 0 && i < 10; i++ {
		time.Sleep(500 * time.Millisecond) // a monitor's last step may still be finishing
		left = e.processes()
	}
	for _, p := range left {
		errs = append(errs, fmt.Errorf("left running: %s (not killed: see why before killing it by hand)", p))
	}
	mounts := mountsUnder(e.base)
	for _, mp := range mounts {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	if len(mounts) > 0 {
		errs = append(errs, fmt.Errorf("left mounted (unmounted now): %d, e.g. %s", len(mounts), mounts[0]))
	}
	for _, root := range cgroupRoots() {
		dir := filepath.Join(root, e.parent)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		removeEmptyTree(dir)
		if _, err := os.Stat(dir); err == nil {
			errs = append(errs, fmt.Errorf("cgroup left: %s", dir))
		}
	}
	if _, err := net.InterfaceByName(e.bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", e.bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", e.bridge, err, out))
		}
	}
	if _, err := net.InterfaceByName(e.bridge); err == nil {
		errs = append(errs, fmt.Errorf("bridge %s left", e.bridge))
	}
	errs = append(errs, e.cleanupIptables()...)
	if m := mountsUnder(e.base); len(m) > 0 {
		errs = append(errs, fmt.Errorf("still mounted, %s kept: %v", e.base, m))
	} else if err := os.RemoveAll(e.base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		logf("clean-up: nothing left (no process, mount under %s, cgroup under %s, bridge %s, nat rule for %s)", e.base, e.parent, e.bridge, e.subnet)
	}
	return errors.Join(errs...)
}

// processes lists the processes of this run: binaries under base (agentd,
// monitors) and anything in a cgroup under our parent (containers).
func (e *env) processes() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if strings.HasPrefix(exe, e.base+"/") || strings.Contains(string(cg), ":"+e.parent+"/") || strings.Contains(string(cg), ":"+e.parent+"\n") {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			out = append(out, fmt.Sprintf("pid %d %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))))
		}
	}
	return out
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// cgroupRoots are the cgroup hierarchies: v2's unified root, or v1's controllers.
func cgroupRoots() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, d := range ents {
		p := filepath.Join("/sys/fs/cgroup", d.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() { // v1 has symlinks like cpu -> cpu,cpuacct
			out = append(out, p)
		}
	}
	return out
}

// removeEmptyTree removes dir and its sub-cgroups, deepest first (rmdir only:
// a cgroup with a process stays).
func removeEmptyTree(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

// cleanupIptables removes nat POSTROUTING rules for sources in our subnet (the
// bridge plugin's masquerading; agentd removes them at pod stop) and their
// chains. Each one found is an error: agentd should have removed it.
func (e *env) cleanupIptables() []error {
	p, err := netip.ParsePrefix(e.subnet)
	if err != nil {
		return nil
	}
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return nil
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "-A" {
			continue
		}
		src, chain := "", ""
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "-s":
				src = f[i+1]
			case "-j":
				chain = f[i+1]
			}
		}
		sp, err := netip.ParsePrefix(src)
		if err != nil || !p.Overlaps(sp) {
			continue
		}
		errs = append(errs, fmt.Errorf("nat rule left (removed now): %s", line))
		_ = exec.Command("sh", "-c", "iptables -w -t nat -D"+strings.TrimPrefix(line, "-A")).Run()
		if strings.HasPrefix(chain, "CNI-") {
			_ = exec.Command("iptables", "-w", "-t", "nat", "-F", chain).Run()
			_ = exec.Command("iptables", "-w", "-t", "nat", "-X", chain).Run()
		}
	}
	return errs
}

// copyLogs copies agentd's logs of this run into -logs.
func (e *env) copyLogs() error {
	if err := os.MkdirAll(e.o.logsDir, 0o755); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(e.base, "agentd-*.log"))
	for _, f := range files {
		if err := copyFile(f, filepath.Join(e.o.logsDir, filepath.Base(f)), 0o644); err != nil {
			return err
		}
	}
	logf("agentd's logs copied to %s", e.o.logsDir)
	return nil
}
