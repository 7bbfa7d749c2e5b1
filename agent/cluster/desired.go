package cluster

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/spec"
)

// The desired-state cache: the cluster pods this node was last told to run, kept in <root>/cluster/desired.json
// (written atomically whenever they change), so that a node that starts while the cluster's etcd cannot be reached
// runs them instead of nothing, and catches up when etcd answers (the controller then replaces them).

// desiredCache is the file's content.
type desiredCache struct {
	// PodSecurity is the level the pods were admitted under; they are checked against it again when read.
	PodSecurity admission.Level `json:"podSecurity"`
	Pods        []*corev1.Pod   `json:"pods"`
}

func (n *Node) desiredPath() string { return filepath.Join(n.cfg.Root, "cluster", "desired.json") }

// saveDesired records pods; a failure is logged, not fatal (the cache only helps a start without etcd).
func (n *Node) saveDesired(level admission.Level, pods []*corev1.Pod) {
	b, err := json.Marshal(desiredCache{PodSecurity: level, Pods: pods})
	if err == nil {
		err = atomicfile.WriteFile(n.desiredPath(), b, 0o600)
	}
	if err != nil {
		n.log.Error(err, "Could not save the cluster pods this node runs; a start without etcd would run none", "path", n.desiredPath())
	}
}

// restoreDesired hands the Host the pods of the cache, if any, each checked again: a pod that does not decode,
// was not made from a DaemonSet, or breaks the recorded level is left out.
func (n *Node) restoreDesired() {
	b, err := os.ReadFile(n.desiredPath())
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var c desiredCache
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err == nil {
		_, err = admission.ParseLevel(string(c.PodSecurity))
	}
	if err != nil {
		n.log.Error(err, "Ignoring the cache of cluster pods", "path", n.desiredPath())
		return
	}
	var pods []*corev1.Pod
	for _, p := range c.Pods {
		if p == nil || p.Annotations[daemonset.AnnotationDaemonSet] == "" || p.Spec.NodeName != n.cfg.NodeName {
			continue
		}
		if errs := spec.Validate(p); len(errs) > 0 {
			n.log.Error(&spec.FieldErrors{List: errs}, "Leaving out a cached cluster pod", "pod", p.Name)
			continue
		}
		if v := admission.Check(c.PodSecurity, &p.ObjectMeta, &p.Spec, ""); len(v) > 0 {
			n.log.Error(admission.Error(c.PodSecurity, v), "Leaving out a cached cluster pod", "pod", p.Name)
			continue
		}
		pods = append(pods, p)
	}
	if len(pods) > 0 {
		n.log.Info("Running the cluster pods this node last ran until the cluster's etcd answers", "pods", len(pods))
		n.cfg.Host.SetClusterPods(pods)
	}
}

// removeDesired deletes the cache (the node left the cluster).
func (n *Node) removeDesired() {
	if err := os.Remove(n.desiredPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.log.Error(err, "Could not remove the cache of cluster pods", "path", n.desiredPath())
	}
}
