package runtime

import (
	"errors"
	"fmt"
	"path/filepath"

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
	if cfg.Log.Root != "" && cfg.Log.Root != r.cfg.LogDir { // "": written before Root existed
		bad("log root %q, want %q", cfg.Log.Root, r.cfg.LogDir)
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

// checkCgroups proves that cfg's container and monitor cgroups are those
// ContainerConfig gives container id under cgroup-parent.
func (r *Runtime) checkCgroups(id string, cfg *protocol.ContainerConfig) error {
	if checkComponent("pod UID", cfg.Pod.UID) != nil || checkComponent("container name", cfg.Name) != nil || MonitorID(cfg.Pod.UID, cfg.Name) != id {
		return fmt.Errorf("%w: monitor %s: its cgroups cannot be derived from pod UID %q and container name %q", ErrForeignRecord, id, cfg.Pod.UID, cfg.Name)
	}
	want := Cgroup(&corev1.Container{Name: cfg.Name}, r.cfg.CgroupParent, cfg.Pod.UID)
	var errs []error
	if cfg.Cgroup.Path != want.Path {
		errs = append(errs, fmt.Errorf("%w: monitor %s: container cgroup %q, want %q under cgroup-parent %s", ErrForeignRecord, id, cfg.Cgroup.Path, want.Path, r.cfg.CgroupParent))
	}
	if cfg.Cgroup.MonitorPath != want.MonitorPath {
		errs = append(errs, fmt.Errorf("%w: monitor %s: monitor cgroup %q, want %q under cgroup-parent %s", ErrForeignRecord, id, cfg.Cgroup.MonitorPath, want.MonitorPath, r.cfg.CgroupParent))
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
