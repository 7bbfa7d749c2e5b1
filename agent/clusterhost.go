package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/cluster"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/agent/state"
)

// ClusterOptions are the cluster.* settings.
type ClusterOptions struct {
	// AutoJoin (cluster.enabled) joins the external etcd at EtcdEndpoints at start when not in a cluster.
	AutoJoin      bool
	EtcdEndpoints []string
	EtcdTLS       cluster.EtcdTLSFiles
	NodeLabels    map[string]string
	// NodeTTL is the node lease TTL (store.DefaultNodeTTL when 0).
	NodeTTL time.Duration
}

// clusterHost is the agent as the cluster node sees it (cluster.Host): the
// cluster hands it the pods of its DaemonSets and reads back their state.
type clusterHost struct{ a *Agent }

var _ cluster.Host = clusterHost{}

// ClusterModeChanged implements cluster.Host: live restore is off while the node is in a cluster.
func (h clusterHost) ClusterModeChanged(on bool) {
	a := h.a
	a.mu.Lock()
	a.clusterOn = on
	configured := a.liveRestore
	a.mu.Unlock()
	switch {
	case on && configured:
		a.log.Info("WARNING: live restore is disabled: cluster mode is on (the cluster's desired state is the source of truth; agentd stops its containers when it stops)")
	case !on && configured:
		a.log.Info("Left cluster mode: live restore is enabled again")
	}
	a.changed("")
}

// ProtectClusterPorts implements cluster.Host: packets from the pod network to these ports of this host are
// refused (ports empty: none are).
func (h clusterHost) ProtectClusterPorts(ports []uint16) {
	a := h.a
	n := a.network()
	if n == nil {
		return
	}
	// A marker in the (volatile, like the rules) run dir says that rules may exist, so that a start outside a
	// cluster runs iptables only after an agentd that was in one.
	marker := filepath.Join(a.opts.RunDir, "cluster-ports")
	if len(ports) > 0 {
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			a.log.Error(err, "Could not record that the cluster's ports are protected", "path", marker)
		}
	} else if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.ProtectHostPorts(ctx, ports); err != nil {
		a.log.Error(err, "Could not keep pods away from the cluster's ports on this node", "ports", ports)
		return
	}
	if len(ports) == 0 {
		_ = os.Remove(marker)
	}
}

// SetClusterPods implements cluster.Host.
func (h clusterHost) SetClusterPods(pods []*corev1.Pod) {
	a := h.a
	a.mu.Lock()
	a.clusterDesired = pods
	a.noteDesired(time.Now())
	a.mu.Unlock()
	a.changed("")
	a.poke()
}

// ClusterPods implements cluster.Host.
func (h clusterHost) ClusterPods() []cluster.PodState {
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []cluster.PodState
	for _, pr := range a.pods {
		owner := pr.pod.Annotations[daemonset.AnnotationDaemonSet]
		if owner == "" {
			continue
		}
		p := a.podWithStatus(pr)
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				ready = c.Status == corev1.ConditionTrue
			}
		}
		out = append(out, cluster.PodState{DaemonSet: owner, Pod: pr.pod, Hash: pr.pod.Annotations[daemonset.AnnotationTemplateHash],
			Terminating: pr.terminating, Ready: ready})
	}
	return out
}

func (a *Agent) nodeObject() state.Object {
	return state.Object{Kind: "Node", Name: a.opts.NodeName, UID: types.UID(a.opts.NodeName)}
}

// autoJoinRetry is how often a node with cluster.enabled tries again to join the external etcd.
const autoJoinRetry = 10 * time.Second

// autoJoin joins the external etcd at cluster.etcd-endpoints when cluster.enabled is set and the node is not in a
// cluster yet. It runs in the background: while the etcd cannot be reached agentd runs its static pods, logs why,
// shows it in info, and tries again every autoJoinRetry.
func (a *Agent) autoJoin(ctx context.Context) {
	if !a.opts.Cluster.AutoJoin || a.cluster.InCluster() {
		return
	}
	go func() {
		last := ""
		for {
			jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := a.cluster.Join(jctx, cluster.JoinRequest{})
			cancel()
			if err == nil || errors.Is(err, store.ErrAlreadyInCluster) || ctx.Err() != nil {
				a.setJoinError(nil)
				return
			}
			a.setJoinError(err)
			if err.Error() != last {
				last = err.Error()
				a.log.Error(err, "cluster.enabled: cannot join the cluster's etcd yet; running static pods only and trying again",
					"endpoints", a.opts.Cluster.EtcdEndpoints, "retryIn", autoJoinRetry)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(autoJoinRetry):
			}
		}
	}()
}

func (a *Agent) setJoinError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.joinErr = err
}
