package benchutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupRoots are the cgroup hierarchies' mount points: v2's unified root, or
// v1's controllers (and a hybrid system's "unified"); v1's symlinks such as
// cpu -> cpu,cpuacct are left out.
func CgroupRoots() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, d := range ents {
		p := filepath.Join("/sys/fs/cgroup", d.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// RemoveEmptyTree removes dir and its sub-cgroups, deepest first (rmdir fails on
// a cgroup that still has processes: it is then left).
func RemoveEmptyTree(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			RemoveEmptyTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}

// RemoveCgroup removes the cgroup path (and its empty children) in every
// hierarchy; "" and "/" are ignored.
func RemoveCgroup(path string) {
	if path == "" || path == "/" {
		return
	}
	for _, root := range CgroupRoots() {
		RemoveEmptyTree(filepath.Join(root, path))
	}
}

// RemoveCgroups removes the cgroup path in every hierarchy, as RemoveCgroup, and
// returns an error for each one that is left ("cgroup left: <dir>").
func RemoveCgroups(path string) []error {
	var errs []error
	for _, root := range CgroupRoots() {
		dir := filepath.Join(root, path)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		RemoveEmptyTree(dir)
		if _, err := os.Stat(dir); err == nil {
			errs = append(errs, fmt.Errorf("cgroup left: %s", dir))
		}
	}
	return errs
}

// MountsUnder lists mount points at or below dir, deepest first.
func MountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// RemoveUnlessMounted removes dir, or keeps it and says so when something is
// still mounted under it.
func RemoveUnlessMounted(dir string) error {
	if m := MountsUnder(dir); len(m) > 0 {
		return fmt.Errorf("still mounted, %s kept: %v", dir, m)
	}
	return os.RemoveAll(dir)
}

// RemoveBridge deletes the network interface name if it exists and returns an
// error when that failed or it is still there.
func RemoveBridge(name string) []error {
	var errs []error
	if _, err := net.InterfaceByName(name); err == nil {
		if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", name, err, out))
		}
	}
	if _, err := net.InterfaceByName(name); err == nil {
		errs = append(errs, fmt.Errorf("bridge %s left", name))
	}
	return errs
}

// RemoveNATRules removes nat POSTROUTING rules for sources in subnet and the
// chains they jump to: agentd's masquerading of the whole subnet (a jump to
// its AGENTD-MASQ- chain), which it keeps while stopped since its pods may
// still run, and the CNI bridge plugin's per-pod masquerading (an older
// agentd's; agentd removes it at pod stop). Each per-pod rule found is an
// error: agentd should have removed it. Without iptables there is nothing to
// find.
func RemoveNATRules(subnet string) []error {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil
	}
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return nil // no iptables: agentd could not have added rules either
	}
	var errs []error
	for _, r := range natRulesIn(string(out), p) {
		if !r.agentds {
			errs = append(errs, fmt.Errorf("nat rule left (removed now): %s", r.line))
		}
		_ = exec.Command("sh", "-c", "iptables -w -t nat -D"+strings.TrimPrefix(r.line, "-A")).Run()
		if strings.HasPrefix(r.chain, "CNI-") || r.agentds {
			_ = exec.Command("iptables", "-w", "-t", "nat", "-F", r.chain).Run()
			_ = exec.Command("iptables", "-w", "-t", "nat", "-X", r.chain).Run()
		}
	}
	return errs
}

// natRule is a POSTROUTING rule for sources in a subnet, as iptables -S prints it.
type natRule struct {
	line, chain string // chain: the one it jumps to
	agentds     bool   // agentd's masquerading of the whole subnet, not a pod's
}

// natRulesIn picks the rules for sources in p out of `iptables -t nat -S
// POSTROUTING`.
func natRulesIn(out string, p netip.Prefix) []natRule {
	var rules []natRule
	for _, line := range strings.Split(out, "\n") {
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
		rules = append(rules, natRule{line: line, chain: chain, agentds: sp == p && strings.HasPrefix(chain, "AGENTD-MASQ-")})
	}
	return rules
}

// Run is what a benchmark run of agentd owns: a work directory (the copy of the
// binaries, agentd's state, the working directory of everything agentd runs), a
// cgroup parent, a bridge and a subnet.
type Run struct {
	Base, Parent, Bridge, Subnet string
}

// RunProcess is a process of a run.
type RunProcess struct {
	Pid int
	Cmd string
	// Ours: in the run's cgroup parent, or running a binary or a root of its work
	// directory, so safe to kill; else a helper that merely uses the directory.
	Ours bool
}

// Processes lists the processes of the run: in a cgroup under Parent, or with
// Base in their command line, root or working directory (monitors name their
// state directory, containers' roots are under it, agentd's helpers run in it).
// This process and its ancestors are left out.
func (r Run) Processes() []RunProcess {
	var out []RunProcess
	for _, p := range Processes(Ancestors()) {
		if !Alive(p.Pid) {
			continue
		}
		inParent := p.InCgroup(r.Parent)
		if !inParent && !p.Uses(r.Base) {
			continue
		}
		cmd := p.Cmd
		if cmd == "" {
			cmd = "[" + ExeName(p.Pid) + "]"
		}
		out = append(out, RunProcess{p.Pid, cmd, inParent || strings.HasPrefix(p.Exe, r.Base+"/") || strings.HasPrefix(p.Root, r.Base+"/")})
	}
	return out
}

// Clean removes what is left of the run once agentd and its monitors were
// stopped, and returns an error for each thing it found. It waits up to wait
// for the run's processes to end (a CNI plugin agentd did not wait for, a
// monitor's last step); then, with kill, it kills those that are its own by
// pid, and reports the rest, left alone. Then it unmounts what is mounted under
// Base and removes the cgroups, the bridge and the nat rules. Base itself is
// left to the caller (RemoveUnlessMounted), which may want to keep a log first.
func (r Run) Clean(wait time.Duration, kill bool) []error {
	var errs []error
	left := r.Processes()
	for deadline := time.Now().Add(wait); len(left) > 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		left = r.Processes()
	}
	var killed []int
	for _, p := range left {
		switch {
		case p.Ours && kill:
			errs = append(errs, fmt.Errorf("left running: pid %d %s (killed now)", p.Pid, p.Cmd))
			_ = unix.Kill(p.Pid, unix.SIGKILL)
			killed = append(killed, p.Pid)
		default:
			errs = append(errs, fmt.Errorf("left running, with %s as its directory or in its command line or in cgroup %s: pid %d %s (left alone: see why before killing it)",
				r.Base, r.Parent, p.Pid, p.Cmd))
		}
	}
	for _, pid := range killed {
		if !WaitUntil(context.Background(), 5*time.Second, func() bool { return NoThreadLeft(pid) }) {
			errs = append(errs, fmt.Errorf("pid %d still running after SIGKILL", pid))
		}
	}
	for _, mp := range MountsUnder(r.Base) {
		errs = append(errs, fmt.Errorf("left mounted: %s (unmounted now)", mp))
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
	errs = append(errs, RemoveCgroups(r.Parent)...)
	errs = append(errs, RemoveBridge(r.Bridge)...)
	return append(errs, RemoveNATRules(r.Subnet)...)
}
