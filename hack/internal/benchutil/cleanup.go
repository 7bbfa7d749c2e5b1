package benchutil

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

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

// RemoveNATRules removes nat POSTROUTING rules for sources in subnet (the CNI
// bridge plugin's masquerading, one per pod; agentd removes them at pod stop)
// and the CNI- chains they jump to. Each one found is an error: agentd should
// have removed it. Without iptables there is nothing to find.
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
