// Package cluster is agentd's cluster mode: this node's membership of a cluster whose desired state lives in etcd
// (an embedded member, or an external etcd), its registration with a lease, and the DaemonSet controller that turns
// the cluster's DaemonSets into the pods this node runs, rolls template changes out node by node within
// maxUnavailable, and reports its pods' status back for `agentctl get daemonsets`.
//
// The Node keeps running what it runs when etcd cannot be reached: the last desired pods stay, the lease lapses (the
// node shows NotReady to the others), and everything resumes when etcd answers again. A node that starts without
// etcd runs the pods of its cache (desired.go).
//
// Trust: everything between nodes is mutual TLS under the cluster's CA (identity.go). The node that ran `cluster
// init` holds the CA's key and the admin credential and serves the join service (authority.go, joinapi): bootstrap
// tokens, certificates for new nodes and renewals, member changes. Every node renews its certificates (renew.go).
// Admin operations (apply, delete, tokens, node removal) need the admin credential (admin.go). DaemonSet templates
// must meet the cluster's Pod Security level (admission), checked at apply and again by each node's controller.
//
// Settings that change it: root (membership, certificates, cache), node-name, cluster.node-labels,
// cluster.node-ttl, cluster.etcd-endpoints with cluster.etcd-ca-file, -cert-file and -key-file (an external etcd).
package cluster

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/joinapi"
	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/spec"
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
	// ProtectClusterPorts keeps pods from reaching these TCP ports of this host (etcd's and the join service's);
	// nil lifts it. It returns when the rules are in place.
	ProtectClusterPorts(ports []uint16)
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
	// member, with the credentials EtcdTLS names.
	EtcdEndpoints []string
	EtcdTLS       EtcdTLSFiles
	// NodeTTL is the node lease's TTL (store.DefaultNodeTTL when 0).
	NodeTTL time.Duration
	// MemberOptions tune the embedded etcd member (tests).
	MemberOptions []store.Option
	Host          Host
	Log           logr.Logger
}

// EtcdTLSFiles are the credentials for an external etcd (cluster.etcd-ca-file, -cert-file, -key-file).
type EtcdTLSFiles struct {
	CAFile, CertFile, KeyFile string
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

// ErrNoAdminCredential: the operation needs the cluster admin credential, which this node does not hold.
var ErrNoAdminCredential = errors.New("this node has no cluster admin credential")

// Start reads the membership recorded in root. When the node is in a cluster it reports cluster mode on to the Host
// at once (before the agent restores its pods, so live restore is off), hands it the cluster pods it last ran (so a
// node that starts while etcd is unreachable runs them), and, in the background, starts the embedded etcd member
// again, connects and resumes the controller; it never blocks on etcd. It returns whether the node is in a cluster.
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
	n.restoreDesired()
	n.startSession(ms, nil)
	return true, nil
}

// checkMembershipTLS refuses a membership recorded before cluster traffic became mutual TLS.
func checkMembershipTLS(ms *store.Membership) error {
	for _, u := range append([]string{ms.PeerURL, ms.ClientURL}, ms.Endpoints...) {
		if strings.HasPrefix(u, "http://") {
			return fmt.Errorf("this node's membership of cluster %s predates mutual TLS (it uses %s, which anyone who reaches it could write to): run `agentctl cluster leave --force` on every node, then `cluster init` and `cluster join` with a token again",
				ms.ClusterName, u)
		}
	}
	return nil
}

// InitRequest is `agentctl cluster init`.
type InitRequest struct {
	PeerURL, ClientURL, JoinURL string
	// PodSecurity is the cluster's Pod Security level (admission.Default when empty).
	PodSecurity string
	// CertValidity is how long issued certificates are valid (pki.DefaultValidity when 0).
	CertValidity time.Duration
}

// JoinRequest is `agentctl cluster join URL --token T --ca-cert-hash H`.
type JoinRequest struct {
	// URL is the join service of the cluster (printed by `agentctl cluster token create`).
	URL, Token, CACertHash string
	PeerURL, ClientURL     string
	// ControlPlane joins with an etcd member of this node's own (the token must allow it); otherwise the node is a
	// worker: a client of the members' etcd whose credentials write only its own records.
	ControlPlane bool
}

// Init starts a new cluster with this node as its first etcd member: a new CA, this node's certificates, the
// admin credential, etcd with mutual TLS and access control, and the cluster's settings.
func (n *Node) Init(ctx context.Context, req InitRequest) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := n.notInCluster(); err != nil {
		return err
	}
	if len(n.cfg.EtcdEndpoints) > 0 {
		return fmt.Errorf("cluster.etcd-endpoints is configured (%v): the cluster's etcd is external, so there is nothing to initialize; run `agentctl cluster join` to join it", n.cfg.EtcdEndpoints)
	}
	level, err := admission.ParseLevel(orDefault(req.PodSecurity, string(admission.Default)))
	if err != nil {
		return fmt.Errorf("%w: cluster init: --pod-security: %v", spec.ErrInvalid, err)
	}
	validity := req.CertValidity
	if validity == 0 {
		validity = pki.DefaultValidity
	}
	if validity < pki.MinValidity || validity > pki.CAValidity/2 {
		return fmt.Errorf("%w: cluster init: --cert-validity %s: want between %s and %s", spec.ErrInvalid, validity, pki.MinValidity, pki.CAValidity/2)
	}
	peer, client := orDefault(req.PeerURL, store.DefaultPeerURL), orDefault(req.ClientURL, store.DefaultClientURL)
	joinURL := req.JoinURL
	if joinURL == "" {
		h, err := urlHost(client)
		if err != nil {
			return fmt.Errorf("%w: cluster init: --client-url: %v", spec.ErrInvalid, err)
		}
		joinURL = "https://" + net.JoinHostPort(h, joinapi.DefaultPort)
	}
	var hosts []string
	for _, u := range []string{peer, client, joinURL} {
		h, err := urlHost(u)
		if err != nil {
			return fmt.Errorf("%w: cluster init: %v", spec.ErrInvalid, err)
		}
		hosts = append(hosts, h)
	}
	hosts = hosts[:2] // the member's; the join service gets a certificate of its own when it starts
	cred, err := n.makeInitPKI(hosts, validity, client)
	if err != nil {
		return fmt.Errorf("cluster init: %w", err)
	}
	setup := func(ctx context.Context, c *store.Client) error {
		if err := c.AddNodeUser(ctx, n.cfg.NodeName); err != nil {
			return err
		}
		if err := c.EnableAuth(ctx); err != nil {
			return err
		}
		err := c.PutClusterConfig(ctx, store.ClusterConfig{PodSecurity: string(level), CertValidity: store.Duration(validity), Created: time.Now().UTC()})
		if err != nil {
			return err
		}
		if cred.Cluster, err = c.ClusterID(ctx); err != nil {
			return err
		}
		return pki.WriteCredential(store.AdminCredentialPath(n.cfg.Root), cred)
	}
	admin := &identity{ca: cred.CA, cert: pki.TLSCertificate(cred.Cert, cred.Key)}
	m, ms, err := store.Init(ctx, n.cfg.Root, n.cfg.NodeName, peer, client, joinURL, admin.clientTLS(), setup, n.log.WithName("etcd"), n.cfg.MemberOptions...)
	if err != nil {
		n.removeCredentials()
		return err
	}
	return n.entered(ctx, ms, m)
}

// makeInitPKI creates the cluster's CA and this node's node and peer certificates (valid for hosts), and returns
// the admin credential, which Init writes once the cluster has an ID.
func (n *Node) makeInitPKI(hosts []string, validity time.Duration, clientURL string) (*pki.Credential, error) {
	n.removeCredentials() // what a crashed init or join left
	now := time.Now()
	ca, err := pki.NewCA("", now)
	if err != nil {
		return nil, err
	}
	dir := store.PKIDir(n.cfg.Root)
	if err := dir.WritePair(pki.CACertFile, pki.CAKeyFile, ca.Cert, ca.Key); err != nil {
		return nil, err
	}
	dns, ips := splitHosts(hosts)
	issueFor := func(cn string, usage pki.Usage, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
		key, err := pki.NewKey()
		if err != nil {
			return nil, nil, err
		}
		req := pki.Request{CommonName: cn, Usage: usage, Validity: validity, PublicKey: key.Public()}
		if usage == pki.UsageClientServer {
			req.DNSNames, req.IPs = dns, ips
		}
		cert, err := ca.Issue(req, now)
		return cert, key, err
	}
	issue := func(cn string, usage pki.Usage, file string) (*x509.Certificate, crypto.Signer, error) {
		cert, key, err := issueFor(cn, usage, validity)
		if err != nil {
			return nil, nil, err
		}
		return cert, key, dir.WriteCombined(file, cert, key)
	}
	if _, _, err := issue(pki.NodeCN(n.cfg.NodeName), pki.UsageClientServer, pki.NodeFile); err != nil {
		return nil, err
	}
	if _, _, err := issue(pki.PeerCN, pki.UsageClientServer, pki.PeerFile); err != nil {
		return nil, err
	}
	cert, key, err := issueFor(pki.AdminCN, pki.UsageClient, adminValidity(validity))
	if err != nil {
		return nil, err
	}
	return &pki.Credential{Endpoints: []string{clientURL}, CA: ca.Cert, Cert: cert, Key: key}, nil
}

// removeCredentials deletes the node's certificates and the admin credential (a failed init or join, a leave).
func (n *Node) removeCredentials() {
	os.RemoveAll(string(store.PKIDir(n.cfg.Root)))
	os.Remove(store.AdminCredentialPath(n.cfg.Root))
}

// Join joins the cluster whose join service is at req.URL with a bootstrap token, after checking that the
// service's CA is the one req.CACertHash pins: as a worker (a client of the members' etcd), or as a control-plane
// node with an etcd member (req.ControlPlane). When cluster.etcd-endpoints is configured it joins that external etcd as a client instead,
// with the credentials cluster.etcd-*-file name.
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := n.notInCluster(); err != nil {
		return err
	}
	if len(n.cfg.EtcdEndpoints) > 0 {
		return n.joinExternal(ctx)
	}
	if req.URL == "" {
		return fmt.Errorf("%w: cluster join: which cluster? give its join URL, --token and --ca-cert-hash, as `agentctl cluster token create` prints them on a node that has the admin credential", spec.ErrInvalid)
	}
	if req.Token == "" || req.CACertHash == "" {
		return fmt.Errorf("%w: cluster join: --token and --ca-cert-hash are required (`agentctl cluster token create` on a node that has the admin credential prints them)", spec.ErrInvalid)
	}
	if _, err := pki.ParseToken(req.Token); err != nil {
		return fmt.Errorf("%w: cluster join: --token: %v", spec.ErrInvalid, err)
	}
	pin, err := pki.ParsePin(req.CACertHash)
	if err != nil {
		return fmt.Errorf("%w: cluster join: --ca-cert-hash: %v", spec.ErrInvalid, err)
	}
	jc, err := joinapi.NewPinnedClient(req.URL, pin)
	if err != nil {
		return fmt.Errorf("%w: cluster join: %v", spec.ErrInvalid, err)
	}
	defer jc.Close()
	member := req.ControlPlane
	jr := joinapi.JoinRequest{Token: req.Token, NodeName: n.cfg.NodeName, Member: member}
	peer, client := orDefault(req.PeerURL, store.DefaultPeerURL), orDefault(req.ClientURL, store.DefaultClientURL)
	if member {
		jr.PeerURL, jr.ClientURL = peer, client
		for _, u := range []string{peer, client} {
			if _, err := urlHost(u); err != nil {
				return fmt.Errorf("%w: cluster join: %v", spec.ErrInvalid, err)
			}
		}
	}
	n.removeCredentials()
	keys, err := newCSRs(n.cfg.NodeName, member)
	if err != nil {
		return err
	}
	jr.NodeCSR, jr.PeerCSR = keys.node, keys.peer
	resp, err := jc.Join(ctx, jr)
	if err != nil {
		return joinError(err)
	}
	if err := n.writeJoinCredentials(jc.CA(), resp, keys, member); err != nil {
		n.removeCredentials()
		return fmt.Errorf("cluster join: %w", err)
	}
	id, err := nodeIdentity(store.PKIDir(n.cfg.Root))
	if err != nil {
		n.removeCredentials()
		return fmt.Errorf("cluster join: %w", err)
	}
	if !member {
		ms, err := store.JoinAsClient(ctx, n.cfg.Root, n.cfg.NodeName, resp.Endpoints, id.clientTLS(), false, req.URL, n.log.WithName("etcd"))
		if err != nil {
			n.removeCredentials()
			return err
		}
		return n.entered(ctx, ms, nil)
	}
	nc, err := joinapi.NewClient(req.URL, id.clientTLS())
	if err != nil {
		return err
	}
	defer nc.Close()
	abort := func(m *store.Member, cause error) error {
		if err := nc.Abort(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, joinapi.ErrNotFound) {
			n.log.Error(err, "Could not undo this failed join in the cluster; remove the node there with `agentctl delete node`", "node", n.cfg.NodeName)
		}
		if m != nil {
			m.Close()
		}
		os.RemoveAll(store.DataDir(n.cfg.Root))
		n.removeCredentials()
		return fmt.Errorf("cluster join: %w", cause)
	}
	cfg := store.MemberConfig{Root: n.cfg.Root, Name: n.cfg.NodeName, PeerURL: peer, ClientURL: client,
		InitialCluster: resp.InitialCluster, Log: n.log.WithName("etcd")}
	for _, o := range n.cfg.MemberOptions {
		o(&cfg)
	}
	m, err := store.StartJoining(ctx, cfg)
	if err != nil {
		return abort(nil, err)
	}
	if err := nc.Promote(ctx); err != nil {
		return abort(m, fmt.Errorf("promote member %q: %w", n.cfg.NodeName, err))
	}
	// Through the other members: this node's own may not have applied its promotion yet, and a learner serves no
	// reads.
	c, err := store.Connect(ctx, resp.Endpoints, id.clientTLS(), n.log.WithName("etcd-client"))
	if err != nil {
		return abort(m, err)
	}
	members, err := c.Members(ctx)
	c.Close()
	if err != nil {
		return abort(m, err)
	}
	ms := &store.Membership{ClusterName: m.ClusterName(), NodeName: n.cfg.NodeName, Member: true, PeerURL: peer,
		ClientURL: client, JoinURL: req.URL, JoinedAt: time.Now().UTC()}
	for _, mem := range members {
		ms.Endpoints = append(ms.Endpoints, mem.ClientURLs...)
	}
	if err := store.SaveMembership(n.cfg.Root, ms); err != nil {
		return abort(m, err)
	}
	n.log.Info("Joined the cluster as an etcd member", "cluster", ms.ClusterName, "node", n.cfg.NodeName, "members", len(members))
	return n.entered(ctx, ms, m)
}

// joinError words a join service's refusal for the user.
func joinError(err error) error {
	switch {
	case errors.Is(err, joinapi.ErrPinMismatch), errors.Is(err, joinapi.ErrConflict):
		return refused("cluster join: " + err.Error())
	case errors.Is(err, joinapi.ErrUnauthorized):
		return refused("cluster join: the cluster refused the token: " + err.Error())
	case errors.Is(err, joinapi.ErrUnavailable):
		return fmt.Errorf("%w: cluster join: %v", store.ErrUnreachable, err)
	}
	return fmt.Errorf("cluster join: %w", err)
}

// writeJoinCredentials checks the certificates a join service issued (they chain to the pinned CA, name this
// node and carry its keys) and writes them with the CA.
func (n *Node) writeJoinCredentials(ca *x509.Certificate, resp *joinapi.JoinResponse, keys *csrs, member bool) error {
	if ca == nil {
		return errors.New("the join service's CA is unknown")
	}
	got, err := pki.ParseCert([]byte(resp.CA))
	if err != nil || !got.Equal(ca) {
		return errors.New("the join service answered with a CA other than the one it presented")
	}
	if err := n.installCerts(ca, resp.NodeCert, keys.nodeKey, resp.PeerCert, keys.peerKey, member); err != nil {
		return err
	}
	return store.PKIDir(n.cfg.Root).WriteCert(pki.CACertFile, ca)
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// joinExternal joins the external etcd at cluster.etcd-endpoints as a client, with cluster.etcd-*-file.
func (n *Node) joinExternal(ctx context.Context) error {
	id, err := n.externalIdentity()
	if err != nil {
		return err
	}
	if err := n.nameFree(ctx, n.cfg.EtcdEndpoints, id); err != nil {
		return err
	}
	ms, err := store.JoinAsClient(ctx, n.cfg.Root, n.cfg.NodeName, n.cfg.EtcdEndpoints, id.clientTLS(), true, "", n.log.WithName("etcd"))
	if err != nil {
		return err
	}
	return n.entered(ctx, ms, nil)
}

// externalIdentity reads the credentials for an external etcd.
func (n *Node) externalIdentity() (*identity, error) {
	f := n.cfg.EtcdTLS
	if f.CAFile == "" || f.CertFile == "" || f.KeyFile == "" {
		return nil, fmt.Errorf("%w: cluster.etcd-endpoints needs cluster.etcd-ca-file, cluster.etcd-cert-file and cluster.etcd-key-file: cluster traffic is mutual TLS", spec.ErrInvalid)
	}
	return loadIdentity(f.CAFile, f.CertFile, f.KeyFile)
}

// nameFree refuses to join a cluster in which a Ready node already has this node's name: two agents would write one
// record and run one set of pods under one name. A NotReady one is taken over (a node that lost its root joins again).
func (n *Node) nameFree(ctx context.Context, endpoints []string, id *identity) error {
	c, err := store.Connect(ctx, endpoints, id.clientTLS(), n.log.WithName("etcd-client"))
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

// entered starts the session of a node that just joined or initialized a cluster, and waits until it registered
// (and, on the node that signs, serves the join service), so that `agentctl get nodes` and `cluster token create`
// right after work.
func (n *Node) entered(ctx context.Context, ms *store.Membership, m *store.Member) error {
	n.cfg.Host.ClusterModeChanged(true)
	s := n.startSession(ms, m)
	timeout := time.After(2 * n.cfg.NodeTTL)
	for _, ready := range []chan struct{}{s.registered, s.joinsReady} {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil // in the cluster all the same; the session keeps trying
		case <-timeout:
			return nil
		}
	}
	return nil
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
	if s.signs() {
		if others := s.otherNodes(ctx); len(others) > 0 && !force {
			return refused(fmt.Sprintf("cluster leave: this node holds the cluster's CA key and serves its join service: without it nodes %s could no longer join, leave or renew their certificates (which then expire); make them leave first, or leave with --force",
				strings.Join(others, ", ")))
		}
		n.log.Info("WARNING: this node holds the cluster's CA key and serves its join service: once it has left, no node can join the cluster or renew its certificates", "joinURL", s.ms.JoinURL)
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
	if err == nil {
		n.removeCredentials()
		n.removeDesired()
	}
	if err != nil {
		return fmt.Errorf("%w (agentctl cluster leave --force leaves anyway)", err)
	}
	n.mu.Lock()
	n.sess = nil
	n.mu.Unlock()
	n.cfg.Host.SetClusterPods(nil)
	n.cfg.Host.ClusterModeChanged(false)
	n.cfg.Host.ProtectClusterPorts(nil)
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
	if err := store.Leave(ctx, c, m, n.cfg.Root, s.removeOwnMember); err != nil {
		s.startController() // still in the cluster: keep running its pods
		return err
	}
	if m == nil && !s.ms.External {
		// A client-only node's etcd user goes too; the cluster answers for it, not this node.
		if err := s.removeOwnMember(ctx); err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
			n.log.Error(err, "Could not remove this node's etcd user; remove it with `agentctl delete node` on a node with the admin credential", "node", n.cfg.NodeName)
		}
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
	n.cfg.Host.ProtectClusterPorts(n.clusterPorts(ms))
	s := newSession(n, ms, m)
	n.mu.Lock()
	n.sess = s
	n.mu.Unlock()
	s.start()
	return s
}

// clusterPorts are the ports this node listens on for the cluster: its member's, and the join service's when it
// holds the CA key that serves it.
func (n *Node) clusterPorts(ms *store.Membership) []uint16 {
	urls := []string{ms.PeerURL, ms.ClientURL}
	if store.PKIDir(n.cfg.Root).Exists(pki.CAKeyFile) {
		urls = append(urls, ms.JoinURL)
	}
	var ports []uint16
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || s == "" {
			continue
		}
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil && p > 0 {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
