package runtime

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// ErrForeignRecord is returned for a monitor's saved config that is not shaped as
// agentd makes one for its id. Everything under run-dir may have been planted (by
// a container that escaped, or left by a crafted earlier state), and the config
// names what a clean-up kills and removes: agentd acts on it only when it names
// nothing but what agentd itself would have made, and otherwise leaves it, with
// its files, to the operator.
var ErrForeignRecord = errors.New("monitor record names what agentd would not have made")

// checkConfig proves that cfg, read from the state directory of monitor id, is
// shaped exactly as ContainerConfig makes it under this runtime's settings: its
// id, its pod and container names, libcontainer's state root and the log and
// termination paths (checkRecord), its container's and monitor's cgroups
// under cgroup-parent (checkCgroups) and its runs directory (checkRunsPlace). Every mismatch is named.
func (r *Runtime) checkConfig(id string, cfg *protocol.ContainerConfig) error {
	return errors.Join(r.checkRecord(id, cfg), r.checkCgroups(id, cfg), r.checkRunsPlace(id, cfg))
}

// checkRunsPlace proves that cfg keeps its runs where agentd puts them: in its
// own directory under root, or (written before RunsDir existed) in its state
// dir. `agent-monitor kill` destroys what it finds there, so a record naming
// another place, planted or written under another root, is not cleaned up.
func (r *Runtime) checkRunsPlace(id string, cfg *protocol.ContainerConfig) error {
	if rd := cfg.Rootfs.RunsDir; rd != "" && rd != r.runsDir(id) {
		return fmt.Errorf("%w: monitor %s: runs directory %q, want %q under root", ErrForeignRecord, id, rd, r.runsDir(id))
	}
	return nil
}

// checkRecord is checkConfig without the cgroups.
func (r *Runtime) checkRecord(id string, cfg *protocol.ContainerConfig) error {
	if err := checkComponent("container id", id); err != nil {
		return err
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: monitor %s: "+format, append([]any{ErrForeignRecord, id}, args...)...))
	}
	if cfg.ID != id {
		bad("its config is for %q", cfg.ID)
	}
	uid, name := cfg.Pod.UID, cfg.Name
	if checkComponent("pod UID", uid) != nil || checkComponent("container name", name) != nil || MonitorID(uid, name) != id {
		// Nothing else can be derived from names that are not agentd's.
		bad("pod UID %q and container name %q do not make its id", uid, name)
		return errors.Join(errs...)
	}
	if want := filepath.Join(r.cfg.RunDir, "libcontainer"); cfg.StateRoot != want {
		bad("libcontainer state root %q, want %q", cfg.StateRoot, want)
	}
	podDir := cfg.Pod.Namespace + "_" + cfg.Pod.Name + "_" + uid
	if checkComponent("pod log directory", podDir) != nil {
		bad("pod log directory %q is not one path component", podDir)
	} else if want := filepath.Join(r.cfg.LogDir, podDir, name); cfg.Log.Dir != want {
		bad("log directory %q, want %q", cfg.Log.Dir, want)
	}
	if cfg.Log.Root != "" && cfg.Log.Root != r.cfg.LogDir && !r.criLogRoot(uid, cfg.Log.Root) { // "": written before Root existed
		bad("log root %q, want %q", cfg.Log.Root, r.cfg.LogDir)
	}
	if err := cfg.Log.CheckFile(); err != nil {
		errs = append(errs, fmt.Errorf("%w: monitor %s: %w", ErrForeignRecord, id, err))
	}
	if h := cfg.Termination.HostPath; h != "" {
		// Under the pod's data dir on root; before DataDir, under its run-dir sandbox.
		want := filepath.Join(r.dataDir(uid), "containers", name, "termination-log")
		if old := filepath.Join(r.sandboxDir(uid), "containers", name, "termination-log"); h != want && h != old {
			bad("termination log %q, want %q", h, want)
		}
	}
	// Layers are only ever read (the image store need not be under root), never
	// removed: their shape is checked, not their place.
	for _, l := range cfg.Rootfs.Layers {
		if !filepath.IsAbs(l) || filepath.Clean(l) != l {
			bad("image layer %q is not a clean absolute path", l)
		}
	}
	return errors.Join(errs...)
}

// criLogRoot says whether root is the log directory the CRI client gave pod
// uid (Config.CRILogRoot), a clean absolute path.
func (r *Runtime) criLogRoot(uid, root string) bool {
	if r.cfg.CRILogRoot == nil {
		return false
	}
	want, ok := r.cfg.CRILogRoot(uid)
	return ok && want == root && filepath.IsAbs(root) && filepath.Clean(root) == root
}

// checkCgroups proves that cfg's container and monitor cgroups are those
// ContainerConfig gives container id under cgroup-parent, in any QoS tier: the
// record does not say the pod's class, and an agentd before the tiers put every
// pod where Guaranteed ones are now.
func (r *Runtime) checkCgroups(id string, cfg *protocol.ContainerConfig) error {
	if checkComponent("pod UID", cfg.Pod.UID) != nil || checkComponent("container name", cfg.Name) != nil || MonitorID(cfg.Pod.UID, cfg.Name) != id {
		return fmt.Errorf("%w: monitor %s: its cgroups cannot be derived from pod UID %q and container name %q", ErrForeignRecord, id, cfg.Pod.UID, cfg.Name)
	}
	var errs []error
	var tiers []string
	for _, p := range podCgroups(r.cfg.CgroupParent, cfg.Pod.UID) {
		tiers = append(tiers, filepath.Join(p, cfg.Name))
	}
	if !slices.Contains(tiers, cfg.Cgroup.Path) {
		errs = append(errs, fmt.Errorf("%w: monitor %s: container cgroup %q, want one of %q under cgroup-parent %s", ErrForeignRecord, id, cfg.Cgroup.Path, tiers, r.cfg.CgroupParent))
	}
	if want := monitorCgroup(r.cfg.CgroupParent, cfg.Pod.UID, cfg.Name); cfg.Cgroup.MonitorPath != want {
		errs = append(errs, fmt.Errorf("%w: monitor %s: monitor cgroup %q, want %q under cgroup-parent %s", ErrForeignRecord, id, cfg.Cgroup.MonitorPath, want, r.cfg.CgroupParent))
	}
	return errors.Join(errs...)
}

// checkDirs proves that agentd's directories are absolute: every path the
// runtime derives, and every check above, starts from them.
func checkDirs(c *Config) error {
	for _, d := range []struct{ key, path string }{{"root", c.Root}, {"run-dir", c.RunDir}, {"log-dir", c.LogDir}} {
		if !filepath.IsAbs(d.path) {
			return fmt.Errorf("%s %q is not an absolute path: give the full path", d.key, d.path)
		}
	}
	if err := checkCgroup(c.CgroupParent); err != nil {
		return fmt.Errorf("cgroup-parent: %w: give an absolute cgroup path such as /agent", err)
	}
	return nil
}

// CheckSandbox proves that sb, read from a pod's record (pod.json, under
// run-dir), names only what EnsureSandbox makes for pod: its directories and
// /etc files, its pinned namespaces, and for each volume the directory its spec
// gives (an emptyDir under root, a hostPath's own path). Containers started
// again after a restore are given these paths as mounts, so a record naming
// anything else is not agentd's. Records of an older agentd (no DataDir, hosts
// in run-dir) pass.
func (r *Runtime) CheckSandbox(pod *corev1.Pod, sb *Sandbox) error {
	uid := string(pod.UID)
	if err := checkComponent("pod UID", uid); err != nil {
		return err
	}
	dir, data := r.sandboxDir(uid), r.dataDir(uid)
	var errs []error
	want := func(what, got string, ok ...string) {
		if !slices.Contains(ok, got) {
			errs = append(errs, fmt.Errorf("%w: pod %s: %s %q, want %q", ErrForeignRecord, uid, what, got, ok[0]))
		}
	}
	want("sandbox directory", sb.Dir, dir)
	want("data directory", sb.DataDir, data, "")
	want("/etc/hosts", sb.Hosts, filepath.Join(data, "hosts"), filepath.Join(dir, "hosts"))
	want("/etc/hostname", sb.Hostname, filepath.Join(dir, "hostname"))
	want("resolv.conf", sb.ResolvConf, filepath.Join(dir, "resolv.conf"))
	want("/dev/shm", sb.Shm, filepath.Join(dir, "shm"), "")
	want("network namespace", sb.NetNS, filepath.Join(dir, "ns", "net"), "")
	want("IPC namespace", sb.IPCNS, filepath.Join(dir, "ns", "ipc"), "")
	want("UTS namespace", sb.UTSNS, filepath.Join(dir, "ns", "uts"), "")
	specs := map[string]*corev1.Volume{}
	for i := range pod.Spec.Volumes {
		specs[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	for name, src := range sb.Volumes {
		switch v := specs[name]; {
		case v == nil:
			errs = append(errs, fmt.Errorf("%w: pod %s: volume %q is not in its spec", ErrForeignRecord, uid, name))
		case v.EmptyDir != nil, IsDownwardVolume(v):
			want("volume "+name, src, filepath.Join(r.volumeDir(uid), name))
		case v.HostPath != nil:
			want("volume "+name, src, v.HostPath.Path)
		default:
			errs = append(errs, fmt.Errorf("%w: pod %s: volume %q has a directory but is of a kind agentd gives none", ErrForeignRecord, uid, name))
		}
	}
	return errors.Join(errs...)
}
