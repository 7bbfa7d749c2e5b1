package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster"
	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
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

// ClusterModeChanged implements cluster.Host: live restore is off while the node is in a cluster.
func (a *Agent) ClusterModeChanged(on bool) {
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
func (a *Agent) ProtectClusterPorts(ports []uint16) {
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
func (a *Agent) SetClusterPods(pods []*corev1.Pod) {
	a.mu.Lock()
	a.clusterDesired = pods
	a.mu.Unlock()
	a.changed("")
	a.poke()
}

// ClusterPods implements cluster.Host.
func (a *Agent) ClusterPods() []cluster.PodState {
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

// ClusterStatus implements api.Backend.
func (a *Agent) ClusterStatus() api.ClusterStatus { return a.cluster.Status() }

// ClusterInit implements api.Backend.
func (a *Agent) ClusterInit(ctx context.Context, req api.ClusterInitRequest) (api.ClusterStatus, error) {
	var validity time.Duration
	if req.CertValidity != "" {
		var err error
		if validity, err = time.ParseDuration(req.CertValidity); err != nil {
			return api.ClusterStatus{}, fmt.Errorf("%w: --cert-validity: %v", api.ErrBadRequest, err)
		}
	}
	err := a.cluster.Init(ctx, cluster.InitRequest{PeerURL: req.PeerURL, ClientURL: req.ClientURL, JoinURL: req.JoinURL,
		PodSecurity: req.PodSecurity, CertValidity: validity})
	if err != nil {
		return api.ClusterStatus{}, apiError(err)
	}
	a.events.Event(a.nodeObject(), state.Normal, "ClusterInitialized", "Started a new cluster; this node is its first etcd member")
	return a.cluster.Status(), nil
}

// ClusterJoin implements api.Backend.
func (a *Agent) ClusterJoin(ctx context.Context, req api.ClusterJoinRequest) (api.ClusterStatus, error) {
	err := a.cluster.Join(ctx, cluster.JoinRequest{URL: req.URL, Token: req.Token, CACertHash: req.CACertHash,
		PeerURL: req.PeerURL, ClientURL: req.ClientURL, ControlPlane: req.ControlPlane})
	if err != nil {
		return api.ClusterStatus{}, apiError(err)
	}
	st := a.cluster.Status()
	a.events.Eventf(a.nodeObject(), state.Normal, "ClusterJoined", "Joined cluster %s", st.ClusterID)
	return st, nil
}

// ClusterLeave implements api.Backend.
func (a *Agent) ClusterLeave(ctx context.Context, force bool) error {
	id := a.cluster.Status().ClusterID
	if err := a.cluster.Leave(ctx, force); err != nil {
		return apiError(err)
	}
	a.events.Eventf(a.nodeObject(), state.Normal, "ClusterLeft", "Left cluster %s", id)
	return nil
}

// Nodes implements api.Backend.
func (a *Agent) Nodes(ctx context.Context) ([]corev1.Node, error) {
	nodes, err := a.cluster.Nodes(ctx)
	return nodes, apiError(err)
}

// DeleteNode implements api.Backend.
func (a *Agent) DeleteNode(ctx context.Context, name string, force bool) error {
	return apiError(a.cluster.DeleteNode(ctx, name, force))
}

// ApplyDaemonSet implements api.Backend.
func (a *Agent) ApplyDaemonSet(ctx context.Context, manifest []byte) (*api.ApplyResult, error) {
	res, err := a.cluster.Apply(ctx, manifest)
	return res, apiError(err)
}

// DaemonSets implements api.Backend.
func (a *Agent) DaemonSets(ctx context.Context) ([]appsv1.DaemonSet, error) {
	list, err := a.cluster.DaemonSets(ctx)
	return list, apiError(err)
}

// CreateToken implements api.Backend.
func (a *Agent) CreateToken(ctx context.Context, req api.TokenRequest) (*api.TokenCreated, error) {
	tr := cluster.TokenRequest{TTL: 24 * time.Hour, Once: req.Once, Description: req.Description, ControlPlane: req.ControlPlane}
	if req.TTL != "" {
		var err error
		if tr.TTL, err = time.ParseDuration(req.TTL); err != nil {
			return nil, fmt.Errorf("%w: --ttl: %v", api.ErrBadRequest, err)
		}
	}
	tok, err := a.cluster.CreateToken(ctx, tr)
	return tok, apiError(err)
}

// Tokens implements api.Backend.
func (a *Agent) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	list, err := a.cluster.Tokens(ctx)
	return list, apiError(err)
}

// DeleteToken implements api.Backend.
func (a *Agent) DeleteToken(ctx context.Context, id string) error {
	return apiError(a.cluster.DeleteToken(ctx, id))
}

// Certs implements api.Backend.
func (a *Agent) Certs() ([]api.CertInfo, error) {
	list, err := a.cluster.Certs()
	return list, apiError(err)
}

// DeleteDaemonSet implements api.Backend.
func (a *Agent) DeleteDaemonSet(ctx context.Context, namespace, name string) error {
	return apiError(a.cluster.DeleteDaemonSet(ctx, namespace, name))
}

func (a *Agent) nodeObject() state.Object {
	return state.Object{Kind: "Node", Name: a.opts.NodeName, UID: types.UID(a.opts.NodeName)}
}

// apiError classifies cluster errors for the API's status codes.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotInCluster):
		return fmt.Errorf("%w: %v: run `agentctl cluster init`, or `agentctl cluster join ENDPOINT`, first", api.ErrBadRequest, err)
	case errors.Is(err, store.ErrAlreadyInCluster), errors.Is(err, cluster.ErrRefused):
		return fmt.Errorf("%w: %v", api.ErrConflict, err)
	case errors.Is(err, cluster.ErrNoAdminCredential), errors.Is(err, store.ErrPermissionDenied), errors.Is(err, admission.ErrForbidden):
		return fmt.Errorf("%w: %v", api.ErrForbidden, err)
	case errors.Is(err, cluster.ErrNotConnected), errors.Is(err, store.ErrUnreachable):
		return fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %v", api.ErrNotFound, err)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %v", api.ErrConflict, err)
	case errors.Is(err, spec.ErrInvalid), errors.Is(err, spec.ErrSyntax), errors.Is(err, spec.ErrTooLarge):
		return fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	return err
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
