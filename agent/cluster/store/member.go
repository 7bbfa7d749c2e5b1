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
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-project/agentd/agent/cluster/etcdproc"
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

// MemberConfig configures this node's etcd member with data in <Root>/cluster/etcd and its certificates in
// <Root>/cluster/pki (PKIDir): node.crt serves clients, peer.crt talks to the other members, ca.crt is the only
// authority either listener trusts, and both require a client certificate. The member runs in its own process,
// agent-etcd (see StartMember).
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
	// Binary is the agent-etcd executable; empty means the one beside this process's own executable.
	Binary string
	// Env is added to agent-etcd's environment (tests).
	Env []string
	Log logr.Logger
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

// WithBinary runs the member with the agent-etcd at path, with env added to its environment, instead of the one
// beside this process's executable (tests run their own test binary as agent-etcd).
func WithBinary(path string, env ...string) Option {
	return func(c *MemberConfig) { c.Binary, c.Env = path, env }
}

// procConfig fills in cfg's defaults, validates it and turns it into agent-etcd's configuration.
func procConfig(cfg *MemberConfig) (*etcdproc.Config, error) {
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
	dir := PKIDir(cfg.Root)
	for _, f := range []string{pki.CACertFile, pki.NodeFile, pki.PeerFile} {
		if !dir.Exists(f) {
			return nil, fmt.Errorf("etcd member %q: %s is missing: the member's certificates come from `agentctl cluster init` or `join`", cfg.Name, dir.Path(f))
		}
	}
	listenPeer, listenClient := bindURL(*peer), bindURL(*client)
	return &etcdproc.Config{
		Name:            cfg.Name,
		DataDir:         DataDir(cfg.Root),
		PeerURL:         peer.String(),
		ClientURL:       client.String(),
		ListenPeerURL:   listenPeer.String(),
		ListenClientURL: listenClient.String(),
		InitialCluster:  cfg.InitialCluster,
		ClusterToken:    cfg.ClusterToken,
		New:             cfg.New,
		HeartbeatMs:     uint(cfg.HeartbeatInterval / time.Millisecond),
		ElectionMs:      uint(cfg.ElectionTimeout / time.Millisecond),
		CAFile:          dir.Path(pki.CACertFile),
		NodeFile:        dir.Path(pki.NodeFile),
		PeerFile:        dir.Path(pki.PeerFile),
		PeerCN:          pki.PeerCN,
		LogLevel:        min(lowestLevel(cfg.Log), memberLogLevel),
	}, nil
}

// memberLogLevel is the level agent-etcd writes from even when agentd's log level is info: etcd's info lines (V(1)),
// so that raising agentd's log level to debug at SIGHUP shows them without a restart of the member; its debug
// lines (V(4)) only come from a member started at log level debug.
const memberLogLevel = -1

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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
				if err := m.transferLeadership(); err != nil {
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
				m.resume() // still a member: serve its clients again
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
