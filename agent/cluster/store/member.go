package store

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// Default URLs of the embedded member: loopback, so that `cluster init` exposes nothing. A node that other hosts
// join must advertise routable addresses. Both always speak mutual TLS.
const (
	DefaultPeerURL   = "https://127.0.0.1:2380"
	DefaultClientURL = "https://127.0.0.1:2379"
)

// Timing defaults: etcd's own. Tests and high-latency networks change them with WithTimeouts.
const (
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = 1000 * time.Millisecond
	DefaultReadyTimeout      = 30 * time.Second
)

// MemberConfig configures an embedded etcd member with data in <Root>/cluster/etcd and its certificates in
// <Root>/cluster/pki (PKIDir): node.crt serves clients, peer.crt talks to the other members, ca.crt is the only
// authority either listener trusts, and both require a client certificate.
type MemberConfig struct {
	Root      string
	Name      string
	PeerURL   string
	ClientURL string
	// InitialCluster is name=peerURL,... of every member; empty means this member alone.
	InitialCluster string
	// New starts a new cluster; false joins an existing one (or restarts from an existing data dir, where etcd
	// ignores InitialCluster and New).
	New bool
	// ClusterToken keeps two new clusters from accepting each other's members; empty picks a random one.
	ClusterToken string
	// HeartbeatInterval, ElectionTimeout and ReadyTimeout default to DefaultHeartbeatInterval,
	// DefaultElectionTimeout and DefaultReadyTimeout. The first two must be the same on every member.
	HeartbeatInterval, ElectionTimeout, ReadyTimeout time.Duration
	Log                                              logr.Logger
}

// Option changes the settings Init, Join and Resume start their member with.
type Option func(*MemberConfig)

// WithTimeouts sets the raft heartbeat interval and election timeout (etcd's --heartbeat-interval and
// --election-timeout). Every member of a cluster must use the same values.
func WithTimeouts(heartbeat, election time.Duration) Option {
	return func(c *MemberConfig) { c.HeartbeatInterval, c.ElectionTimeout = heartbeat, election }
}

// WithReadyTimeout sets how long StartMember waits for the member to serve.
func WithReadyTimeout(d time.Duration) Option {
	return func(c *MemberConfig) { c.ReadyTimeout = d }
}

// Member is a running embedded etcd member. Close stops it; it is safe to call from any goroutine, more than once.
type Member struct {
	cfg       MemberConfig
	etcd      *embed.Etcd
	streams   *streamCloser
	closeOnce sync.Once
	closing   atomic.Bool // set when Close begins, so that removed can tell a stop by Close from one by etcd
}

// StartMember starts an embedded etcd member and waits until it serves clients, which for a member joining an
// existing cluster means a quorum of that cluster accepted it. It fails after cfg.ReadyTimeout or when ctx ends.
func StartMember(ctx context.Context, cfg MemberConfig) (*Member, error) {
	ec, err := embedConfig(&cfg)
	if err != nil {
		return nil, err
	}
	streams := &streamCloser{closing: make(chan struct{})}
	ec.GRPCAdditionalServerOptions = []grpc.ServerOption{grpc.ChainStreamInterceptor(streams.intercept),
		grpc.ChainUnaryInterceptor(streams.interceptUnary)}
	if err := os.MkdirAll(clusterDir(cfg.Root), 0o700); err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %q (data %s, peer %s, client %s): %w",
			cfg.Name, ec.Dir, cfg.PeerURL, cfg.ClientURL, err)
	}
	m := &Member{cfg: cfg, etcd: e, streams: streams}
	streams.setStopping(e.Server.StoppingNotify())
	timer := time.NewTimer(cfg.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		cfg.Log.V(1).Info("Etcd member is ready", "name", cfg.Name, "id", m.etcd.Server.MemberID().String(),
			"cluster", m.ClusterName(), "clientURL", cfg.ClientURL)
		return m, nil
	case err := <-e.Err():
		m.Close()
		return nil, fmt.Errorf("etcd member %q failed while starting: %w", cfg.Name, err)
	case <-e.Server.StopNotify():
		m.Close()
		return nil, fmt.Errorf("etcd member %q stopped while starting (see the etcd log lines before this one)", cfg.Name)
	case <-timer.C:
		m.Close()
		return nil, fmt.Errorf("etcd member %q did not become ready within %s: it needs a quorum of the cluster's members (%s) to reach it at %s and each other",
			cfg.Name, cfg.ReadyTimeout, ec.InitialCluster, cfg.PeerURL)
	case <-ctx.Done():
		m.Close()
		return nil, fmt.Errorf("etcd member %q: gave up waiting for it to become ready: %w", cfg.Name, ctx.Err())
	}
}

// embedConfig fills in cfg's defaults and turns it into etcd's configuration.
func embedConfig(cfg *MemberConfig) (*embed.Config, error) {
	if cfg.Root == "" {
		return nil, errors.New("etcd member: root is required")
	}
	if err := validateName("node", cfg.Name); err != nil {
		return nil, fmt.Errorf("etcd member: %w", err)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = DefaultElectionTimeout
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.Log.GetSink() == nil {
		cfg.Log = logr.Discard()
	}
	peer, err := parseURL("peer", cfg.PeerURL)
	if err != nil {
		return nil, err
	}
	client, err := parseURL("client", cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.Name + "=" + cfg.PeerURL
	}
	if cfg.ClusterToken == "" {
		cfg.ClusterToken = "agentd-" + randomHex(8)
	}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = DataDir(cfg.Root)
	ec.AdvertisePeerUrls = []url.URL{*peer}
	ec.ListenPeerUrls = []url.URL{bindURL(*peer)}
	ec.AdvertiseClientUrls = []url.URL{*client}
	ec.ListenClientUrls = []url.URL{bindURL(*client)}
	ec.InitialCluster = cfg.InitialCluster
	ec.InitialClusterToken = cfg.ClusterToken
	ec.ClusterState = embed.ClusterStateFlagExisting
	if cfg.New {
		ec.ClusterState = embed.ClusterStateFlagNew
	}
	ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	// Node heartbeats rewrite a key every lease TTL; without compaction etcd keeps every old revision until its
	// 2 GiB quota is full. Watches reconnecting after an hour relist (see WatchDaemonSets).
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapLogger(cfg.Log, "etcd", serverLevels))

	// Mutual TLS on both listeners, on loopback too: a local user or a pod that reaches a port gets nothing without
	// a certificate of the cluster's CA. etcd reads the certificate files at every handshake, so renewed ones are
	// used without a restart. The peer listener takes only peer certificates: a node's own certificate cannot make
	// its holder a member.
	dir := PKIDir(cfg.Root)
	for _, f := range []string{pki.CACertFile, pki.NodeFile, pki.PeerFile} {
		if !dir.Exists(f) {
			return nil, fmt.Errorf("etcd member %q: %s is missing: the member's certificates come from `agentctl cluster init` or `join`", cfg.Name, dir.Path(f))
		}
	}
	ec.ClientTLSInfo = transport.TLSInfo{CertFile: dir.Path(pki.NodeFile), KeyFile: dir.Path(pki.NodeFile),
		TrustedCAFile: dir.Path(pki.CACertFile), ClientCertAuth: true}
	ec.PeerTLSInfo = transport.TLSInfo{CertFile: dir.Path(pki.PeerFile), KeyFile: dir.Path(pki.PeerFile),
		TrustedCAFile: dir.Path(pki.CACertFile), ClientCertAuth: true, AllowedCNs: []string{pki.PeerCN}}
	// The HTTP gateway would serve every client under the member's own identity, whatever certificate it showed.
	ec.EnableGRPCGateway = false
	return ec, nil
}

// parseURL accepts https:// URLs with an explicit port.
func parseURL(which, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("etcd %s URL %q: %w", which, s, err)
	}
	if u.Scheme == "http" {
		return nil, fmt.Errorf("etcd %s URL %q: cluster traffic is mutual TLS, on loopback too (anyone who reaches a plain-HTTP etcd owns every node); use https://%s", which, s, u.Host)
	}
	if u.Scheme != "https" || u.Port() == "" || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("etcd %s URL %q: want https://HOST:PORT", which, s)
	}
	u.Path = ""
	return u, nil
}

// bindURL is the address to listen on for an advertised URL: etcd binds only to IP addresses, so a host name
// means all interfaces on the same port.
func bindURL(u url.URL) url.URL {
	if h := u.Hostname(); h != "localhost" && net.ParseIP(h) == nil {
		u.Host = net.JoinHostPort("0.0.0.0", u.Port())
	}
	return u
}

// streamCloser ends the member's open client streams (watches, lease keepalives) when the member stops, and
// takes no new ones. etcd's graceful shutdown waits for them for its whole request timeout (over 5 s), and they
// never end by themselves; ended, their clients move on to another member at once.
//
// It also counts the requests stream handlers are working on (from receiving a message to sending the answer or
// receiving the next), so that the member can wait for them before etcd closes its database: etcd's lease
// keepalive handler leaves a goroutine behind that, with access control on, still reads the auth store, and after
// the database closed that read is a nil dereference that kills the process.
type streamCloser struct {
	mu       sync.Mutex      // guards the fields below
	closing  chan struct{}   // closed by stop
	stopped  bool            // streams refused
	closed   bool            // unary requests refused too (Close)
	stopping <-chan struct{} // etcd's: closed when the server begins to stop, by itself too (removed from the cluster)
	busy     int             // requests being worked on
}

func (s *streamCloser) setStopping(c <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = c
}

// refusing says whether requests (streams, or unary ones) are refused: stop was called, or etcd is stopping (its
// database may close under a request; with access control on, etcd then dereferences nil). Callers hold s.mu.
func (s *streamCloser) refusing(unary bool) bool {
	if unary && s.closed || !unary && s.stopped {
		return true
	}
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// interceptUnary refuses requests while the member stops and counts the others as work.
func (s *streamCloser) interceptUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	if s.refusing(true) {
		s.mu.Unlock()
		return nil, errMemberStopping
	}
	s.busy++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.busy--
		s.mu.Unlock()
	}()
	return handler(ctx, req)
}

var errMemberStopping = status.Error(codes.Unavailable, "etcd member is stopping")

func (s *streamCloser) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s.mu.Lock()
	refusing, closing := s.refusing(false), s.closing
	s.mu.Unlock()
	if refusing {
		return errMemberStopping
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	go func() {
		select {
		case <-closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx, s: s})
}

// stop ends the streams, refuses new requests on them (and unary ones too when unary), and waits, at most
// timeout, until none is being worked on. It may be called more than once.
func (s *streamCloser) stop(unary bool, timeout time.Duration) bool {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.closing)
	}
	s.closed = s.closed || unary
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		busy := s.busy
		s.mu.Unlock()
		if busy == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resume takes streams again after stop, when the member did not stop after all (its removal was refused).
func (s *streamCloser) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped && !s.closed {
		s.stopped = false
		s.closing = make(chan struct{})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
	s   *streamCloser

	busy bool // a message was received and not yet answered; guarded by s.mu
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// RecvMsg hands a message to the handler only while the member is not stopping, and counts it as work.
func (s *ctxStream) RecvMsg(m any) error {
	s.idle()
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	if s.s.refusing(false) {
		return errMemberStopping
	}
	s.busy = true
	s.s.busy++
	return nil
}

func (s *ctxStream) SendMsg(m any) error {
	defer s.idle()
	return s.ServerStream.SendMsg(m)
}

func (s *ctxStream) idle() {
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	if s.busy {
		s.busy = false
		s.s.busy--
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ID is the member's etcd ID.
func (m *Member) ID() uint64 { return uint64(m.etcd.Server.MemberID()) }

// Name is the member's name, the node's name.
func (m *Member) Name() string { return m.cfg.Name }

// ClientURL is where the member serves etcd clients.
func (m *Member) ClientURL() string { return m.cfg.ClientURL }

// PeerURL is where the member talks to the other members.
func (m *Member) PeerURL() string { return m.cfg.PeerURL }

// removed reports whether the member stopped by itself, within wait or until ctx ends, which etcd does only when
// the member was removed from the cluster: when it applies its removal, or, often before that, when the other
// members, which applied it, refuse its connections (its own member list then still has it). A stop by Close does
// not count.
func (m *Member) removed(ctx context.Context, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-m.Done():
		return !m.closing.Load() || m.etcd.Server.Cluster().Member(m.etcd.Server.MemberID()) == nil
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// IsLeader says whether the member is the cluster's raft leader right now.
func (m *Member) IsLeader() bool { return m.etcd.Server.Leader() == m.etcd.Server.MemberID() }

// ClusterName is the etcd cluster ID in hex.
func (m *Member) ClusterName() string { return m.etcd.Server.Cluster().ID().String() }

// Done is closed when the member stopped: Close, removal from the cluster, or a fatal error.
func (m *Member) Done() <-chan struct{} { return m.etcd.Server.StopNotify() }

// quiesce ends the member's client streams and waits for the requests on them in progress: before the member
// stops, by Close (unary: refusing every request) or by its removal from the cluster (Leave: the leaving node
// still asks the cluster through it), which etcd carries out without asking.
func (m *Member) quiesce(unary bool) {
	if !m.streams.stop(unary, streamDrainTimeout) {
		m.cfg.Log.Info("Stopping the etcd member while a client request is still being served", "name", m.cfg.Name)
	}
}

// streamDrainTimeout bounds how long Close waits for stream requests in progress (etcd's own request timeout is
// about as long).
const streamDrainTimeout = 10 * time.Second

// Close stops the member and waits until it released its ports and data dir. A leader first hands leadership to
// another member, so the others need not wait for an election; when that member does not answer (it is stopping
// too), etcd gives up after its request timeout, a little over 5 s.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		m.closing.Store(true)
		m.quiesce(true)
		m.etcd.Close()
		m.cfg.Log.V(1).Info("Stopped etcd member", "name", m.cfg.Name)
	})
	return nil
}

// Init starts a new single-member cluster with this node as its member (`agentctl cluster init`) and records the
// membership in root. The member's certificates must be in PKIDir(root). Before the membership is recorded, setup
// runs with a client of the new member under the admin credential (admin): it turns on access control and writes
// the cluster's settings, so that no restart ever serves the cluster without them.
func Init(ctx context.Context, root, name, peerURL, clientURL, joinURL string, admin *tls.Config, setup func(context.Context, *Client) error,
	log logr.Logger, opts ...Option) (*Member, *Membership, error) {
	if err := notInCluster(root); err != nil {
		return nil, nil, err
	}
	if err := setAsideDataDir(root, log); err != nil {
		return nil, nil, err
	}
	cfg := MemberConfig{Root: root, Name: name, PeerURL: peerURL, ClientURL: clientURL, New: true, Log: log}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := StartMember(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster init: %w", err)
	}
	fail := func(err error) (*Member, *Membership, error) {
		m.Close()
		os.RemoveAll(DataDir(root))
		return nil, nil, fmt.Errorf("cluster init: %w", err)
	}
	c, err := Connect(ctx, []string{clientURL}, admin, log)
	if err != nil {
		return fail(err)
	}
	err = setup(ctx, c)
	c.Close()
	if err != nil {
		return fail(err)
	}
	ms := &Membership{ClusterName: m.ClusterName(), NodeName: name, Member: true, PeerURL: peerURL,
		ClientURL: clientURL, JoinURL: joinURL, Endpoints: []string{clientURL}, JoinedAt: time.Now().UTC()}
	if err := SaveMembership(root, ms); err != nil {
		return fail(err)
	}
	log.Info("Started a new cluster", "cluster", ms.ClusterName, "node", name, "clientURL", clientURL, "peerURL", peerURL)
	return m, ms, nil
}

// StartJoining starts this node's etcd member in a cluster that has added it as a learner (the cluster's join
// service did; cfg.InitialCluster is what it answered), with the certificates already in PKIDir(cfg.Root). The
// caller has the member promoted and records the membership, or removes the member again.
func StartJoining(ctx context.Context, cfg MemberConfig) (*Member, error) {
	if err := notInCluster(cfg.Root); err != nil {
		return nil, err
	}
	if err := setAsideDataDir(cfg.Root, cfg.Log); err != nil {
		return nil, err
	}
	cfg.New = false
	m, err := StartMember(ctx, cfg)
	if err != nil {
		os.RemoveAll(DataDir(cfg.Root))
		return nil, fmt.Errorf("cluster join: %w", err)
	}
	return m, nil
}

// AddLearner adds node name, whose member will talk to the others at peerURL, as a learner (`cluster join`, on
// the join service), after removing what an earlier failed join of it left. It returns the new member's ID and the
// initial-cluster string its member must start with. c must be the admin's client.
func (c *Client) AddLearner(ctx context.Context, name, peerURL string) (uint64, string, error) {
	if err := c.removeStaleMember(ctx, name, peerURL); err != nil {
		return 0, "", err
	}
	var added *clientv3.MemberAddResponse
	err := c.changeMembers(ctx, "add member "+name, func(ctx context.Context) (err error) {
		added, err = c.cli.MemberAddAsLearner(ctx, []string{peerURL})
		return err
	})
	if err != nil {
		return 0, "", fmt.Errorf("add member %q (%s): %w", name, peerURL, err)
	}
	id := added.Member.ID
	var initial []string
	for _, mem := range added.Members {
		n := mem.Name
		if mem.ID == id {
			n = name
		}
		for _, u := range mem.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	return id, strings.Join(initial, ","), nil
}

// PromoteMember turns the learner named name into a voting member once it has caught up with the leader, waiting
// at most timeout. c must be the admin's client.
func (c *Client) PromoteMember(ctx context.Context, name string, timeout time.Duration) error {
	members, err := c.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Name != name {
			continue
		}
		if !m.Learner {
			return nil
		}
		return c.promote(ctx, m.ID, timeout)
	}
	return fmt.Errorf("etcd member %q: %w", name, ErrNotFound)
}

// JoinAsClient records membership of a cluster whose etcd this node only uses as a client, with the credentials
// tlsCfg: an external etcd (cluster.etcd-endpoints, external true), or a cluster this node joined with a token
// without a member of its own (its certificates in PKIDir(root)). Nothing runs locally; the node registers through
// Connect like every other.
func JoinAsClient(ctx context.Context, root, name string, endpoints []string, tlsCfg *tls.Config, external bool, joinURL string, log logr.Logger) (*Membership, error) {
	if err := validateName("node", name); err != nil {
		return nil, fmt.Errorf("cluster join: %w", err)
	}
	if err := notInCluster(root); err != nil {
		return nil, err
	}
	c, err := Connect(ctx, endpoints, tlsCfg, log)
	if err != nil {
		return nil, fmt.Errorf("cluster join: %w", err)
	}
	defer c.Close()
	actx, cancel := c.opCtx(ctx)
	resp, err := c.cli.MemberList(actx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cluster join: %w", c.classify(err))
	}
	ms := &Membership{ClusterName: fmt.Sprintf("%x", resp.Header.ClusterId), NodeName: name, External: external,
		JoinURL: joinURL, Endpoints: append([]string(nil), endpoints...), JoinedAt: time.Now().UTC()}
	if err := SaveMembership(root, ms); err != nil {
		return nil, fmt.Errorf("cluster join: %w", err)
	}
	log.Info("Joined the cluster as a client of its etcd", "cluster", ms.ClusterName, "node", name, "endpoints", endpoints)
	return ms, nil
}

// Resume puts this node back into the cluster recorded in root after an agent restart: it starts the embedded
// member again from its data dir when the node is a member. It returns (nil, nil, nil) when the node is not in a
// cluster and a nil Member for a client-only node.
func Resume(ctx context.Context, root string, log logr.Logger, opts ...Option) (*Member, *Membership, error) {
	ms, err := LoadMembership(root)
	if err != nil || ms == nil {
		return nil, nil, err
	}
	if !ms.Member {
		return nil, ms, nil
	}
	if _, err := os.Stat(DataDir(root)); err != nil {
		return nil, nil, fmt.Errorf("resume cluster membership: this node is a member of cluster %s but its etcd data %s is unusable (run `agentctl cluster leave`, then join again): %w",
			ms.ClusterName, DataDir(root), err)
	}
	cfg := MemberConfig{Root: root, Name: ms.NodeName, PeerURL: ms.PeerURL, ClientURL: ms.ClientURL, Log: log}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := StartMember(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("resume cluster membership: %w", err)
	}
	if got := m.ClusterName(); got != ms.ClusterName {
		m.Close()
		return nil, nil, fmt.Errorf("resume cluster membership: etcd data %s belongs to cluster %s, membership says %s (run `agentctl cluster leave`, then join again)",
			DataDir(root), got, ms.ClusterName)
	}
	log.Info("Resumed cluster membership", "cluster", ms.ClusterName, "node", ms.NodeName)
	return m, ms, nil
}

// Leave takes this node out of its cluster (`agentctl cluster leave`): it removes the node's record, then, when
// m is this node's member, has removeMember remove it from the cluster (a member change needs the admin's rights:
// the join service does it for the node), stops it and deletes its data dir; last it removes the membership file.
// c must reach the cluster (it may be connected to m). The last member of a cluster leaving ends the cluster.
func Leave(ctx context.Context, c *Client, m *Member, root string, removeMember func(context.Context) error) error {
	ms, err := LoadMembership(root)
	if err != nil {
		return fmt.Errorf("cluster leave: %w", err)
	}
	if ms == nil {
		return fmt.Errorf("cluster leave: %w", ErrNotInCluster)
	}
	if c == nil {
		return errors.New("cluster leave: no client of the cluster's etcd")
	}
	if err := c.RemoveNode(ctx, ms.NodeName); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("cluster leave: %w", err)
	}
	if m != nil {
		members, err := c.Members(ctx)
		if err != nil {
			return fmt.Errorf("cluster leave: %w", err)
		}
		if len(members) == 1 && members[0].ID == m.ID() {
			c.log.Info("Last member is leaving; the cluster ends", "cluster", ms.ClusterName, "node", ms.NodeName)
		} else {
			// A leader that removes itself stops as it applies the removal, often before it answers; hand
			// leadership over first.
			if m.IsLeader() {
				if err := m.etcd.Server.TryTransferLeadershipOnShutdown(); err != nil {
					c.log.Info("Could not hand over leadership before leaving; the cluster elects a new leader", "err", err)
				}
			}
			// Removed, the member stops by itself: its streams go first, so that no request on one is in progress.
			m.quiesce(false)
			err := removeMember(ctx)
			// A member applying its own removal stops, and so does one whose peers applied it first and now refuse
			// it: the answer is often lost ("server stopped", a closed connection), the removal is not.
			if err != nil && answerMayBeLost(err) && c.memberRemoved(ctx, m, leaveRemovalWait) {
				c.log.V(1).Info("The answer to the member's removal was lost, but it was removed", "node", ms.NodeName, "err", err)
				err = nil
			}
			if err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
				m.streams.resume() // still a member: serve its clients again
				if errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) {
					return fmt.Errorf("cluster leave: removing member %q would leave the cluster without a quorum of running members; start the stopped members first: %w", ms.NodeName, err)
				}
				return fmt.Errorf("cluster leave: remove member %q: %w", ms.NodeName, err)
			}
		}
		m.Close()
		if err := os.RemoveAll(DataDir(root)); err != nil {
			return fmt.Errorf("cluster leave: delete etcd data: %w", err)
		}
	}
	if err := RemoveMembership(root); err != nil {
		return fmt.Errorf("cluster leave: %w", err)
	}
	c.log.Info("Left the cluster", "cluster", ms.ClusterName, "node", ms.NodeName)
	return nil
}

// leaveRemovalWait bounds how long Leave waits, after the answer to its member removal was lost, for the member to
// stop: a loaded machine applies the removal late.
const leaveRemovalWait = 10 * time.Second

// answerMayBeLost says whether a member change that failed with err may have been applied all the same: the request
// timed out, or the connection or the member that served it went away before it answered.
func answerMayBeLost(err error) bool {
	if isUnreachable(err) || errors.Is(err, ErrUnreachable) || errors.Is(err, context.Canceled) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		return s.Code() == codes.Canceled || s.Code() == codes.Unavailable
	}
	return false
}

// memberRemoved finds out whether m was removed from the cluster after a removal request whose answer was lost:
// m stopped by itself (see Member.removed), or the cluster, asked through c, no longer lists it (m may not know yet
// when it is cut off from the others).
func (c *Client) memberRemoved(ctx context.Context, m *Member, wait time.Duration) bool {
	if m.removed(ctx, wait) {
		return true
	}
	members, err := c.Members(ctx)
	if err != nil {
		return false
	}
	return !slices.ContainsFunc(members, func(mem ClusterMember) bool { return mem.ID == m.ID() })
}

func notInCluster(root string) error {
	ms, err := LoadMembership(root)
	if err != nil {
		return err
	}
	if ms != nil {
		return fmt.Errorf("%w: cluster %s as node %q (run `agentctl cluster leave` first)", ErrAlreadyInCluster, ms.ClusterName, ms.NodeName)
	}
	return nil
}

// setAsideDataDir renames an etcd data dir that no membership file claims (a crash during init, join or leave).
// Starting on it would resurrect a member of some earlier cluster; deleting it could lose someone's only copy.
func setAsideDataDir(root string, log logr.Logger) error {
	dir := DataDir(root)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	aside := dir + ".orphaned-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("set aside etcd data %s that no cluster membership claims: %w", dir, err)
	}
	log.Info("Set aside etcd data that no cluster membership claims; delete it when it is not needed", "from", dir, "to", aside)
	return nil
}

// memberChangeTimeout bounds how long a member change waits for the cluster to accept it (see changeMembers).
const memberChangeTimeout = 20 * time.Second

// changeMembers runs a member change (add, remove), retrying while etcd refuses it as unsafe (ErrUnhealthy): its
// leader accepts member changes only after it has been connected to the other members for 5 s, so a join or leave
// right after another join or a member restart has to wait a little.
func (c *Client) changeMembers(ctx context.Context, what string, change func(context.Context) error) error {
	deadline := time.Now().Add(memberChangeTimeout)
	logged := false
	for {
		cctx, cancel := c.opCtx(ctx)
		err := change(cctx)
		cancel()
		if err == nil || !errors.Is(err, rpctypes.ErrUnhealthy) {
			return c.classify(err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the cluster's leader has not been connected to every member for the last %s; check that every member runs and reaches the others: %w",
				what, memberChangeTimeout, err)
		}
		if !logged {
			c.log.Info("Waiting until the cluster accepts a member change (its leader must be connected to every member for 5 s)", "change", what)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// promote turns learner id into a voting member, retrying while it is still catching up with the leader.
func (c *Client) promote(ctx context.Context, id uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := c.opCtx(ctx)
		_, err := c.cli.MemberPromote(pctx, id)
		cancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) || time.Now().After(deadline) {
			return c.classify(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeStaleMember removes what an earlier, failed join of this node left in the cluster: a member with this peer
// URL that never started, is still a learner, or has this node's name.
func (c *Client) removeStaleMember(ctx context.Context, name, peerURL string) error {
	members, err := c.Members(ctx)
	if err != nil {
		return err
	}
	for _, mem := range members {
		samePeer := false
		for _, u := range mem.PeerURLs {
			samePeer = samePeer || u == peerURL
		}
		switch {
		case samePeer && (mem.Name == "" || mem.Learner || mem.Name == name):
		case mem.Name == name:
			return fmt.Errorf("member name %q is taken by member %x at %v", name, mem.ID, mem.PeerURLs)
		case samePeer:
			return fmt.Errorf("peer URL %s belongs to member %q (%x)", peerURL, mem.Name, mem.ID)
		default:
			continue
		}
		err := c.changeMembers(ctx, "remove stale member", func(ctx context.Context) error {
			_, err := c.cli.MemberRemove(ctx, mem.ID)
			return err
		})
		if err != nil {
			return fmt.Errorf("remove stale member %x (%s) left by an earlier join: %w", mem.ID, peerURL, err)
		}
		c.log.Info("Removed a stale member left by an earlier join of this node", "id", fmt.Sprintf("%x", mem.ID), "peerURL", peerURL)
	}
	return nil
}

func clientEndpoints(members []ClusterMember) []string {
	var eps []string
	for _, m := range members {
		eps = append(eps, m.ClientURLs...)
	}
	return eps
}
