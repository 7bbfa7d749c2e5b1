package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster/joinapi"
	"github.com/agentd-project/agentd/agent/cluster/store"
)

// resumeReadyTimeout is how long a restarted member waits for a quorum before it is started again; long, since the
// member must keep running for the others to find a quorum with it.
const resumeReadyTimeout = 10 * time.Minute

// retryInterval is how often the session tries again to reach etcd or to register.
const retryInterval = 2 * time.Second

// session is the node's time in one cluster: from Start, Init or Join to Stop or Leave.
type session struct {
	n   *Node
	ms  *store.Membership // set at creation, never changed
	log logr.Logger

	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{} // closed when run returned
	registered chan struct{} // closed once the node registered
	joinsReady chan struct{} // closed once this node serves the join service, or when it does not hold the CA key

	// id is the node's credentials for etcd and the join service; nil when they cannot be read (err says why).
	// Set at creation, never replaced (it reloads itself after a renewal).
	id *identity

	mu          sync.Mutex // guards the fields below
	member      *store.Member
	client      *store.Client
	adminClient *store.Client // under the admin credential, on first use
	adminID     *identity     // adminClient's credential
	unregister  func()
	err         error // the last reason etcd could not be used
	ctrlCancel  context.CancelFunc
	ctrlDone    chan struct{}
	ctrl        *controller
	auth        *authority         // set while this node serves the join service
	joinID      *identity          // the join service's certificate
	joinSrv     *joinapi.Server    // the join service's listener
	joinErr     error              // why this node does not serve the join service, when it should
	jitter      map[string]float64 // renewal jitter by certificate serial
	renewDone   chan struct{}      // closed when renewLoop returned; set by run before it returns
	renewed     time.Time          // last renewal

	watchers sync.WaitGroup // watchMember, which may replace member; close waits for it before it stops member
}

func newSession(n *Node, ms *store.Membership, m *store.Member) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{n: n, ms: ms, log: n.log.WithValues("cluster", ms.ClusterName), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), registered: make(chan struct{}), joinsReady: make(chan struct{}), member: m,
		jitter: map[string]float64{}}
	// A membership an older agentd recorded (plain HTTP) gets no session that could use it, but stays, so that
	// `cluster status` says why and `cluster leave --force` ends it.
	err := checkMembershipTLS(ms)
	if err == nil && ms.External {
		s.id, err = n.externalIdentity()
	} else if err == nil {
		if s.id, err = nodeIdentity(store.PKIDir(n.cfg.Root)); err != nil {
			err = fmt.Errorf("this node's cluster credentials are unusable (run `agentctl cluster leave --force`, then join again): %w", err)
		}
	}
	s.err = err
	return s
}

func (s *session) start() { go s.run() }

func (s *session) run() {
	defer close(s.done)
	if s.id == nil {
		s.log.Error(s.err, "Cannot take part in the cluster")
		return
	}
	if s.ms.Member && s.member == nil {
		if !s.resume() {
			return
		}
	}
	if s.ms.Member {
		s.watchers.Add(1)
		go s.watchMember()
	}
	var c *store.Client
	for {
		var err error
		if c, err = s.connect(s.ctx); err == nil {
			break
		}
		if !s.retry("Cannot reach the cluster's etcd; this node keeps running its pods and tries again", err) {
			return
		}
	}
	s.mu.Lock()
	s.client = c
	s.mu.Unlock()
	var unregister func()
	for {
		var err error
		if unregister, err = c.RegisterNode(s.ctx, s.node(), s.n.cfg.NodeTTL); err == nil {
			break
		}
		if !s.retry("Cannot register this node in the cluster; trying again", err) {
			return
		}
	}
	s.mu.Lock()
	s.unregister, s.err = unregister, nil
	s.mu.Unlock()
	s.log.Info("Registered this node in the cluster", "node", s.ms.NodeName, "ttl", s.n.cfg.NodeTTL)
	close(s.registered)
	s.startController()
	s.serveJoins()
	if !s.ms.External {
		s.renewDone = make(chan struct{})
		go func() {
			defer close(s.renewDone)
			s.renewLoop()
		}()
	}
}

// resume starts the embedded member again from its data dir, trying until it serves or the session ends.
func (s *session) resume() bool {
	opts := append([]store.Option{store.WithReadyTimeout(resumeReadyTimeout)}, s.n.cfg.MemberOptions...)
	for {
		s.log.Info("Starting this node's etcd member again; it serves once a quorum of the cluster's members run", "node", s.ms.NodeName, "peerURL", s.ms.PeerURL)
		// The membership Resume reads is the one Start read: s.ms stays as it is, read without locks.
		m, _, err := store.Resume(s.ctx, s.n.cfg.Root, s.n.log.WithName("etcd"), opts...)
		if err == nil && m != nil {
			s.mu.Lock()
			s.member = m
			s.mu.Unlock()
			return true
		}
		if err == nil {
			err = errors.New("the membership record changed while resuming")
		}
		if s.removedFromCluster() {
			// Its cached pods were the cluster's; the cluster no longer counts it in.
			s.n.removeDesired()
			s.n.cfg.Host.SetClusterPods(nil)
			err = fmt.Errorf("this node's etcd member was removed from cluster %s while it was down (agentctl delete node): run `agentctl cluster leave --force`, then join again",
				s.ms.ClusterName)
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			s.log.Error(err, "Cannot resume cluster membership")
			return false
		}
		if !s.retry("Could not start this node's etcd member", err) {
			return false
		}
	}
}

// watchMember starts this node's etcd member again whenever it fails (its process died; it was logged), until the
// session ends. A member removed from the cluster or stopped by Close is left alone.
func (s *session) watchMember() {
	defer s.watchers.Done()
	for {
		s.mu.Lock()
		m := s.member
		s.mu.Unlock()
		if m == nil {
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-m.Failed():
		}
		m.Close()
		if !s.resume() {
			return
		}
	}
}

// removedFromCluster asks the other members, as known at join, whether this node's member is still one of theirs.
// It is false when they cannot be asked.
func (s *session) removedFromCluster() bool {
	var others []string
	for _, e := range s.ms.Endpoints {
		if e != s.ms.ClientURL {
			others = append(others, e)
		}
	}
	if len(others) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, store.DefaultRequestTimeout)
	defer cancel()
	c, err := store.Connect(ctx, others, s.id.clientTLS(), logr.Discard())
	if errors.Is(err, store.ErrPermissionDenied) {
		return true // the others answered: this node's etcd user is gone, as `delete node` leaves it
	}
	if err != nil {
		return false
	}
	defer c.Close()
	members, err := c.Members(ctx)
	if err != nil {
		return false
	}
	for _, m := range members {
		if m.Name == s.ms.NodeName || slices.Contains(m.PeerURLs, s.ms.PeerURL) {
			return false
		}
	}
	return true
}

// retry records err, logs it, and waits retryInterval; false when the session ended meanwhile.
func (s *session) retry(msg string, err error) bool {
	if s.ctx.Err() != nil {
		return false
	}
	s.mu.Lock()
	first := s.err == nil || s.err.Error() != err.Error()
	s.err = err
	s.mu.Unlock()
	if first {
		s.log.Error(err, msg)
	} else {
		s.log.V(1).Info(msg, "err", err.Error())
	}
	select {
	case <-s.ctx.Done():
		return false
	case <-time.After(retryInterval):
		return true
	}
}

// connect opens a client of the cluster's etcd with the node's credentials.
func (s *session) connect(ctx context.Context) (*store.Client, error) {
	if s.id == nil {
		return nil, s.lastError()
	}
	return store.Connect(ctx, s.endpoints(), s.id.clientTLS(), s.n.log.WithName("etcd-client"))
}

// endpoints are this node's member first, then the endpoints known at join.
func (s *session) endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var eps []string
	if s.member != nil {
		eps = append(eps, s.member.ClientURL())
	}
	for _, e := range s.ms.Endpoints {
		if !slices.Contains(eps, e) {
			eps = append(eps, e)
		}
	}
	return eps
}

// node is this node's record.
func (s *session) node() store.Node {
	return store.Node{Name: s.ms.NodeName, Labels: s.n.nodeLabels(), Version: s.n.cfg.Version}
}

// nodeLabels are the configured labels plus Kubernetes' well-known node labels.
func (n *Node) nodeLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname": n.cfg.NodeName,
		"kubernetes.io/os":       goruntime.GOOS,
		"kubernetes.io/arch":     goruntime.GOARCH,
	}
	maps.Copy(l, n.cfg.Labels)
	return l
}

// otherNodes are the names of the cluster's other nodes, as far as they can be listed now.
func (s *session) otherNodes(ctx context.Context) []string {
	c, _ := s.connection()
	if c == nil {
		return nil
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, sn := range nodes {
		if sn.Name != s.ms.NodeName {
			out = append(out, sn.Name)
		}
	}
	return out
}

// connection returns the client (nil until connected) and the embedded member (nil for a client-only node).
func (s *session) connection() (*store.Client, *store.Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.member
}

// resuming says whether the session is still trying to start the member, connect or register.
func (s *session) resuming() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *session) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *session) startController() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctrlCancel != nil || s.client == nil || s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.ctrlCancel, s.ctrlDone = cancel, done
	s.ctrl = newController(s.n, s.ms.NodeName, s.client, s.log.WithName("daemonsets"))
	ctrl := s.ctrl
	go func() {
		defer close(done)
		ctrl.run(ctx)
	}()
}

func (s *session) stopController() {
	s.mu.Lock()
	cancel, done := s.ctrlCancel, s.ctrlDone
	s.ctrlCancel, s.ctrlDone = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// close ends the session. graceful revokes the node's lease first, so it shows NotReady at once.
func (s *session) close(graceful bool) {
	s.stopController()
	s.mu.Lock()
	unregister := s.unregister
	s.mu.Unlock()
	if graceful && unregister != nil {
		unregister()
	}
	s.cancel()
	<-s.done
	s.watchers.Wait()
	if s.renewDone != nil { // set by run before done closed
		<-s.renewDone
	}
	s.stopJoins()
	s.mu.Lock()
	c, m, admin := s.client, s.member, s.adminClient
	s.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	if c != nil {
		c.Close()
	}
	if m != nil {
		m.Close()
	}
}

func (s *session) status() api.ClusterStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := api.ClusterStatus{InCluster: true, ClusterID: s.ms.ClusterName, NodeName: s.ms.NodeName, EtcdMember: s.ms.Member,
		PeerURL: s.ms.PeerURL, ClientURL: s.ms.ClientURL, Endpoints: s.ms.Endpoints, JoinedAt: s.ms.JoinedAt,
		Connected: s.client != nil, NodeLabels: s.n.nodeLabels()}
	select {
	case <-s.registered:
		st.Registered = true
	default:
	}
	if s.err != nil {
		st.LastError = s.err.Error()
	}
	if s.ctrl != nil {
		st.DaemonSets = s.ctrl.count()
		st.PodSecurity = s.ctrl.podSecurity()
	}
	st.JoinURL = s.ms.JoinURL
	st.ServesJoins = s.auth != nil
	st.External = s.ms.External
	if _, err := os.Stat(store.AdminCredentialPath(s.n.cfg.Root)); err == nil {
		st.AdminCredential = true
	}
	return st
}
