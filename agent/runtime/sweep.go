package runtime

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// SandboxNetNS is where a pod's network namespace is pinned, whether or not it
// still is: a restarted agentd tears down a network attachment with it.
func (r *Runtime) SandboxNetNS(uid string) string {
	return filepath.Join(r.sandboxDir(uid), "ns", "net")
}

// PodsWithState lists the pod UIDs that have anything left on the host: a
// sandbox in run-dir, volumes in root, a pod cgroup under cgroup-parent. A
// multi-step set-up or removal that agentd's crash interrupted leaves a subset
// of these, which the next agentd finds here.
func (r *Runtime) PodsWithState() []string {
	seen := map[string]bool{}
	var out []string
	add := func(uid string) {
		if checkComponent("pod UID", uid) == nil && !seen[uid] {
			seen[uid] = true
			out = append(out, uid)
		}
	}
	for _, dir := range []string{filepath.Join(r.cfg.RunDir, "pods"), filepath.Join(r.cfg.Root, "pods")} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				add(e.Name())
			}
		}
	}
	if checkCgroup(r.cfg.CgroupParent) == nil {
		for _, root := range cgroupRoots() {
			for _, tier := range qosTiers {
				entries, _ := os.ReadDir(filepath.Join(root, r.cfg.CgroupParent, tier))
				for _, e := range entries {
					if uid, ok := strings.CutPrefix(e.Name(), "pod-"); ok && e.IsDir() {
						add(uid)
					}
				}
			}
		}
	}
	return out
}

// ContainersWithState lists the container (monitor) IDs that have anything left
// on the host: a monitor state directory in run-dir, or runs under root. A
// removal that agentd's crash interrupted, or a run-dir emptied by a reboot,
// leaves only the second, which IDs does not see.
func (r *Runtime) ContainersWithState() []string {
	seen := map[string]bool{}
	var out []string
	dirs := []string{filepath.Join(r.cfg.RunDir, protocol.MonitorsDir)}
	if r.cfg.Root != "" {
		dirs = append(dirs, filepath.Join(r.cfg.Root, containersDir))
	}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if id := e.Name(); e.IsDir() && checkComponent("container id", id) == nil && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out
}

// Sandboxes lists the UIDs of the pods that have a sandbox directory in run-dir.
func (r *Runtime) Sandboxes() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.RunDir, "pods"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && checkComponent("pod UID", e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// SandboxDir is a pod's sandbox directory, where the agent keeps its record of
// the pod (beside the runtime's files, removed with them).
func (r *Runtime) SandboxDir(uid string) string { return r.sandboxDir(uid) }
