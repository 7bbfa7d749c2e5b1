// Package cluster is agentd's cluster mode: this node's membership of a cluster whose desired state lives in etcd
// (an embedded member, or an external etcd), its registration with a lease, and the DaemonSet controller that turns
// the cluster's DaemonSets into the pods this node runs, rolls template changes out node by node within
// maxUnavailable, and reports its pods' status back for `agentctl get daemonsets`.
//
// The Node keeps running what it runs when etcd cannot be reached: the last desired pods stay, the lease lapses (the
// node shows NotReady to the others), and everything resumes when etcd answers again.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster/store"
)

// PodState is one of this node's pods made from a DaemonSet, as the agent runs it.
type PodState struct {
	// DaemonSet is "<namespace>/<name>" of the owner (the agentd.io/daemonset annotation).
	DaemonSet string
	Pod       *corev1.Pod
	// Hash is the pod's template hash (agentd.io/template-hash).
	Hash        string
	Terminating bool
	// Ready is the pod's Ready condition.
	Ready bool
}

// Host is the agent as the cluster controller sees it.
type Host interface {
	// SetClusterPods replaces the desired pods that come from the cluster (static pods are not among them).
	SetClusterPods(pods []*corev1.Pod)
	// ClusterPods returns the pods the agent runs (or is stopping) that were made from DaemonSets.
	ClusterPods() []PodState
	// ClusterModeChanged says that the node entered (on) or left (off) a cluster.
	ClusterModeChanged(on bool)
}

// Config configures a Node.
type Config struct {
	Root     string
	NodeName string
	// Labels are the node's own labels (cluster.node-labels); the well-known kubernetes.io/hostname, os and arch
	// labels are added.
	Labels  map[string]string
	Version string
	// EtcdEndpoints is an external etcd (cluster.etcd-endpoints): join uses it as a client instead of running a
	// member.
	EtcdEndpoints []string
	// NodeTTL is the node lease's TTL (store.DefaultNodeTTL when 0).
	NodeTTL time.Duration
	// MemberOptions tune the embedded etcd member (tests).
	MemberOptions []store.Option
	Host          Host
	Log           logr.Logger
}

// Node is this node's part in a cluster. Its methods are safe for concurrent use.
type Node struct {
	cfg Config
	log logr.Logger

	// opMu serializes Init, Join, Leave and Stop.
	opMu sync.Mutex

	mu   sync.Mutex // guards sess and the fields below
	sess *session   // nil when not in a cluster
}

// New returns a Node; Start puts it back into the cluster recorded in root, if any.
func New(cfg Config) *Node {
	if cfg.NodeTTL <= 0 {
		cfg.NodeTTL = store.DefaultNodeTTL
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	return &Node{cfg: cfg, log: cfg.Log}
}

// ErrNotInCluster: this node is not in a cluster (`agentctl cluster init` or `join` first).
var ErrNotInCluster = store.ErrNotInCluster

// ErrNotConnected: the node is in a cluster but has not reached its etcd (yet).
var ErrNotConnected = errors.New("this node has not reached the cluster's etcd yet")

// Start reads the membership recorded in root. When the node is in a cluster it reports cluster mode on to the Host
// at once (before the agent restores its pods, so live restore is off) and, in the background, starts the embedded
// etcd member again, connects and resumes the controller; it never blocks on etcd. It returns whether the node is in
// a cluster.
func (n *Node) Start(ctx context.Context) (bool, error) {
	ms, err := store.LoadMembership(n.cfg.Root)
	if err != nil {
		return false, err
	}
	if ms == nil {
		return false, nil
	}
	if ms.NodeName != n.cfg.NodeName {
		return false, fmt.Errorf("this node is in cluster %s as node %q but is now named %q: start it with node-name %q, or run `agentctl cluster leave` with that name first",
			ms.ClusterName, ms.NodeName, n.cfg.NodeName, ms.NodeName)
	}
	n.cfg.Host.ClusterModeChanged(true)
	n.startSession(ms, nil)
	return true, nil
}

// InitRequest is `agentctl cluster init`.
type InitRequest struct {
	PeerURL, ClientURL string
}

// JoinRequest is `agentctl cluster join ENDPOINT`.
type JoinRequest struct {
	Endpoint           string
	PeerURL, ClientURL string
}

// Init starts a new cluster with this node as its first etcd member.
func (n *Node) Init(ctx context.Context, req InitRequest) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := n.notInCluster(); err != nil {
		return err
	}
	if len(n.cfg.EtcdEndpoints) > 0 {
		return fmt.Errorf("cluster.etcd-endpoints is configured (%v): the cluster's etcd is external, so there is nothing to initialize; run `agentctl cluster join` to join it", n.cfg.EtcdEndpoints)
	}
	peer, client := orDefault(req.PeerURL, store.DefaultPeerURL), orDefault(req.ClientURL, store.DefaultClientURL)
	m, ms, err := store.Init(ctx, n.cfg.Root, n.cfg.NodeName, peer, client, n.log.WithName("etcd"), n.cfg.MemberOptions...)
	if err != nil {
		return err
	}
	return n.entered(ctx, ms, m)
}

// Join joins the cluster whose etcd client endpoint is req.Endpoint as an etcd member, or, when cluster.etcd-endpoints
// is configured, as a client of that external etcd (req.Endpoint is then optional and, when given, used too).
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := n.notInCluster(); err != nil {
		return err
	}
	if len(n.cfg.EtcdEndpoints) > 0 {
		eps := append([]string(nil), n.cfg.EtcdEndpoints...)
		if req.Endpoint != "" && !slices.Contains(eps, req.Endpoint) {
			eps = append(eps, req.Endpoint)
		}
		if err := n.nameFree(ctx, eps); err != nil {
			return err
		}
		ms, err := store.JoinAsClient(ctx, n.cfg.Root, n.cfg.NodeName, eps, n.log.WithName("etcd"))
		if err != nil {
			return err
		}
		return n.entered(ctx, ms, nil)
	}
	if req.Endpoint == "" {
		return errors.New("cluster join: which cluster? give the client URL of one of its members (agentctl cluster join http://HOST:2379)")
	}
	if err := n.nameFree(ctx, []string{req.Endpoint}); err != nil {
		return err
	}
	peer, client := orDefault(req.PeerURL, store.DefaultPeerURL), orDefault(req.ClientURL, store.DefaultClientURL)
	m, ms, err := store.Join(ctx, n.cfg.Root, n.cfg.NodeName, peer, client, req.Endpoint, n.log.WithName("etcd"), n.cfg.MemberOptions...)
	if err != nil {
		return err
	}
	return n.entered(ctx, ms, m)
}

// nameFree refuses to join a cluster in which a Ready node already has this node's name: two agents would write one
// record and run one set of pods under one name. A NotReady one is taken over (a node that lost its root joins again).
func (n *Node) nameFree(ctx context.Context, endpoints []string) error {
	c, err := store.Connect(ctx, endpoints, n.log.WithName("etcd-client"))
	if err != nil {
		return fmt.Errorf("cluster join: %w", err)
	}
	defer c.Close()
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("cluster join: %w", err)
	}
	for _, sn := range nodes {
		if sn.Name == n.cfg.NodeName && sn.Ready {
			return refused(fmt.Sprintf("cluster join: a Ready node of the cluster is already named %q: give this node another node-name", sn.Name))
		}
	}
	return nil
}

// entered starts the session of a node that just joined or initialized a cluster, and waits until it registered,
// so that `agentctl get nodes` right after lists it.
func (n *Node) entered(ctx context.Context, ms *store.Membership, m *store.Member) error {
	n.cfg.Host.ClusterModeChanged(true)
	s := n.startSession(ms, m)
	select {
	case <-s.registered:
		return nil
	case <-ctx.Done():
		return nil // in the cluster all the same; the session keeps trying
	case <-time.After(2 * n.cfg.NodeTTL):
		return nil
	}
}

// Leave takes this node out of its cluster: the controller stops, the node's record and (for a member) its etcd
// member are removed, and the pods made from DaemonSets are stopped. The cluster must be reachable, unless force:
// then a leave the cluster does not accept (unreachable, or it would lose its quorum) only stops the local member
// and forgets the membership; the other members keep listing this one until it is removed there.
func (n *Node) Leave(ctx context.Context, force bool) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	s := n.session()
	if s == nil {
		return fmt.Errorf("cluster leave: %w", ErrNotInCluster)
	}
	err := n.leave(ctx, s, force)
	if err != nil && force {
		n.log.Error(err, "WARNING: leaving the cluster without its consent (--force): this node's etcd member and membership are removed here only; if the cluster lives on, remove this node there with `agentctl delete node NAME`")
		s.close(false)
		if rerr := os.RemoveAll(store.DataDir(n.cfg.Root)); rerr != nil {
			return fmt.Errorf("cluster leave --force: %w", rerr)
		}
		if rerr := store.RemoveMembership(n.cfg.Root); rerr != nil {
			return fmt.Errorf("cluster leave --force: %w", rerr)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%w (agentctl cluster leave --force leaves anyway)", err)
	}
	n.mu.Lock()
	n.sess = nil
	n.mu.Unlock()
	n.cfg.Host.SetClusterPods(nil)
	n.cfg.Host.ClusterModeChanged(false)
	return nil
}

// leave is the leave the cluster accepts.
func (n *Node) leave(ctx context.Context, s *session, force bool) error {
	if force {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	c, m := s.connection()
	if s.ms.Member && m == nil {
		why := "it waits for a quorum of the cluster's members"
		if err := s.lastError(); err != nil {
			if !s.resuming() {
				return fmt.Errorf("cluster leave: %w", err)
			}
			why = err.Error()
		}
		return fmt.Errorf("cluster leave: this node's etcd member has not started again yet (%s); start the other members first: %w", why, store.ErrUnreachable)
	}
	if c == nil {
		// Still connecting: try now, so a leave does not depend on the session's timing.
		var err error
		c, err = s.connect(ctx)
		if err != nil {
			return fmt.Errorf("cluster leave: %w", err)
		}
		defer c.Close()
	}
	s.stopController()
	if err := store.Leave(ctx, c, m, n.cfg.Root); err != nil {
		s.startController() // still in the cluster: keep running its pods
		return err
	}
	s.close(false)
	return nil
}

// Stop ends the node's part in the cluster as agentd stops: the controller stops, the lease is revoked (the node
// shows NotReady at once) and the embedded member stops. Membership stays recorded; Start resumes it.
func (n *Node) Stop() {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	s := n.sess
	n.sess = nil
	n.mu.Unlock()
	if s != nil {
		s.close(true)
	}
}

// StopController stops changing the desired pods (agentd is stopping and stops its pods itself) without leaving
// the cluster or deregistering.
func (n *Node) StopController() {
	s := n.session()
	if s != nil {
		s.stopController()
	}
}

// PodsChanged tells the controller that one of the Host's DaemonSet pods changed (started, became ready, stopped), so
// that rolling updates and status reports follow at once rather than at the next sync.
func (n *Node) PodsChanged() {
	s := n.session()
	if s == nil {
		return
	}
	s.mu.Lock()
	ctrl := s.ctrl
	s.mu.Unlock()
	if ctrl != nil {
		ctrl.poke()
	}
}

// InCluster says whether the node is in a cluster.
func (n *Node) InCluster() bool { return n.session() != nil }

// Client returns the client of the cluster's etcd, or ErrNotInCluster / ErrNotConnected.
func (n *Node) Client() (*store.Client, error) {
	s := n.session()
	if s == nil {
		return nil, ErrNotInCluster
	}
	c, _ := s.connection()
	if c == nil {
		if err := s.lastError(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotConnected, err)
		}
		return nil, ErrNotConnected
	}
	return c, nil
}

// Status returns the node's cluster status.
func (n *Node) Status() api.ClusterStatus {
	s := n.session()
	if s == nil {
		return api.ClusterStatus{}
	}
	return s.status()
}

// session returns the current session, nil when not in a cluster.
func (n *Node) session() *session {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sess
}

func (n *Node) notInCluster() error {
	s := n.session()
	if s != nil {
		return fmt.Errorf("%w: cluster %s as node %q (run `agentctl cluster leave` first)", store.ErrAlreadyInCluster, s.ms.ClusterName, s.ms.NodeName)
	}
	return nil
}

func (n *Node) startSession(ms *store.Membership, m *store.Member) *session {
	s := newSession(n, ms, m)
	n.mu.Lock()
	n.sess = s
	n.mu.Unlock()
	s.start()
	return s
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
