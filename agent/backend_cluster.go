package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster"
	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
)

// The cluster's part of the API backend: each call goes to the cluster node,
// and its errors are classified for the API's status codes.

// ClusterStatus implements api.Backend.
func (b apiBackend) ClusterStatus() api.ClusterStatus { return b.a.cluster.Status() }

// ClusterInit implements api.Backend.
func (b apiBackend) ClusterInit(ctx context.Context, req api.ClusterInitRequest) (api.ClusterStatus, error) {
	a := b.a
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
func (b apiBackend) ClusterJoin(ctx context.Context, req api.ClusterJoinRequest) (api.ClusterStatus, error) {
	a := b.a
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
func (b apiBackend) ClusterLeave(ctx context.Context, force bool) error {
	a := b.a
	id := a.cluster.Status().ClusterID
	if err := a.cluster.Leave(ctx, force); err != nil {
		return apiError(err)
	}
	a.events.Eventf(a.nodeObject(), state.Normal, "ClusterLeft", "Left cluster %s", id)
	return nil
}

// Nodes implements api.Backend.
func (b apiBackend) Nodes(ctx context.Context) ([]corev1.Node, error) {
	a := b.a
	nodes, err := a.cluster.Nodes(ctx)
	return nodes, apiError(err)
}

// DeleteNode implements api.Backend.
func (b apiBackend) DeleteNode(ctx context.Context, name string, force bool) error {
	a := b.a
	return apiError(a.cluster.DeleteNode(ctx, name, force))
}

// ApplyDaemonSet implements api.Backend.
func (b apiBackend) ApplyDaemonSet(ctx context.Context, manifest []byte) (*api.ApplyResult, error) {
	a := b.a
	res, err := a.cluster.Apply(ctx, manifest)
	return res, apiError(err)
}

// DaemonSets implements api.Backend.
func (b apiBackend) DaemonSets(ctx context.Context) ([]appsv1.DaemonSet, error) {
	a := b.a
	list, err := a.cluster.DaemonSets(ctx)
	return list, apiError(err)
}

// CreateToken implements api.Backend.
func (b apiBackend) CreateToken(ctx context.Context, req api.TokenRequest) (*api.TokenCreated, error) {
	a := b.a
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
func (b apiBackend) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	a := b.a
	list, err := a.cluster.Tokens(ctx)
	return list, apiError(err)
}

// DeleteToken implements api.Backend.
func (b apiBackend) DeleteToken(ctx context.Context, id string) error {
	a := b.a
	return apiError(a.cluster.DeleteToken(ctx, id))
}

// Certs implements api.Backend.
func (b apiBackend) Certs() ([]api.CertInfo, error) {
	a := b.a
	list, err := a.cluster.Certs()
	return list, apiError(err)
}

// DeleteDaemonSet implements api.Backend.
func (b apiBackend) DeleteDaemonSet(ctx context.Context, namespace, name string) error {
	a := b.a
	return apiError(a.cluster.DeleteDaemonSet(ctx, namespace, name))
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
