package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/agentd-project/agentd/agent/cluster/joinapi"
	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/cluster/store"
)

// promoteTimeout bounds how long a new member may take to catch up with the leader before its promotion fails.
const promoteTimeout = 60 * time.Second

// authority is the join service's work (joinapi.Authority) on the node that holds the cluster CA's key and the
// admin credential: it checks tokens, signs certificates, creates each node's etcd user and makes member changes.
type authority struct {
	ca    *pki.CA
	admin *store.Client
	// validity is how long issued certificates are valid (the cluster's certValidity).
	validity time.Duration
	now      func() time.Time
	log      logr.Logger

	mu       sync.Mutex        // guards learners
	learners map[string]uint64 // members this service added, by node, until promoted: a learner that never started has no name
}

var _ joinapi.Authority = (*authority)(nil)

func (a *authority) Join(ctx context.Context, req joinapi.JoinRequest) (*joinapi.JoinResponse, error) {
	tok, err := pki.ParseToken(req.Token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", joinapi.ErrUnauthorized, err)
	}
	if err := validNodeName(req.NodeName); err != nil {
		return nil, fmt.Errorf("%w: %v", joinapi.ErrBadRequest, err)
	}
	nodeKey, err := csrKey(req.NodeCSR, pki.NodeCN(req.NodeName))
	if err != nil {
		return nil, err
	}
	var peerKey any
	var hosts []string
	if req.Member {
		if peerKey, err = csrKey(req.PeerCSR, pki.PeerCN); err != nil {
			return nil, err
		}
		for _, u := range []string{req.PeerURL, req.ClientURL} {
			h, err := urlHost(u)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", joinapi.ErrBadRequest, err)
			}
			if err := memberHostAllowed(h, req.RemoteAddr); err != nil {
				return nil, fmt.Errorf("%w: %v", joinapi.ErrBadRequest, err)
			}
			hosts = append(hosts, h)
		}
	}
	// The request is well-formed: only now may a one-use token be spent on it.
	if err := a.admin.UseToken(ctx, tok, req.NodeName, a.now(), req.Member); err != nil {
		if errors.Is(err, pki.ErrTokenInvalid) || errors.Is(err, pki.ErrTokenExpired) || errors.Is(err, store.ErrTokenUsed) ||
			errors.Is(err, store.ErrTokenScope) {
			return nil, fmt.Errorf("%w: %v", joinapi.ErrUnauthorized, err)
		}
		// The caller has not shown a valid token yet: no details of the cluster for it.
		a.log.Error(err, "Could not check a bootstrap token", "node", req.NodeName)
		return nil, fmt.Errorf("%w: could not check the token now; try again", joinapi.ErrUnavailable)
	}
	nodes, err := a.admin.Nodes(ctx)
	if err != nil {
		return nil, wireErr(err)
	}
	for _, sn := range nodes {
		if sn.Name == req.NodeName && sn.Ready {
			return nil, fmt.Errorf("%w: a Ready node of the cluster is already named %q: give this node another node-name", joinapi.ErrConflict, sn.Name)
		}
	}
	// A name whose etcd user still exists belongs to a node the admin has not removed: its certificates, valid
	// until they expire, would share the new node's rights.
	switch exists, err := a.admin.NodeUserExists(ctx, req.NodeName); {
	case err != nil:
		return nil, wireErr(err)
	case exists:
		return nil, fmt.Errorf("%w: the cluster has a node named %q (NotReady): remove it with `agentctl delete node %s` first, or give this node another node-name", joinapi.ErrConflict, req.NodeName, req.NodeName)
	}
	usage := pki.UsageClient
	if req.Member {
		usage = pki.UsageClientServer
	}
	nodeCert, err := a.issue(pki.NodeCN(req.NodeName), usage, hosts, nodeKey)
	if err != nil {
		return nil, err
	}
	resp := &joinapi.JoinResponse{CA: string(pki.EncodeCert(a.ca.Cert)), NodeCert: string(pki.EncodeCert(nodeCert))}
	if req.Member {
		peerCert, err := a.issue(pki.PeerCN, pki.UsageClientServer, hosts, peerKey)
		if err != nil {
			return nil, err
		}
		resp.PeerCert = string(pki.EncodeCert(peerCert))
	}
	if err := a.admin.AddNodeUser(ctx, req.NodeName); err != nil {
		return nil, wireErr(err)
	}
	// A join that fails from here on takes its user back, so that the node can try again under its name.
	joined := false
	defer func() {
		if !joined {
			if err := a.admin.RemoveNodeUser(context.WithoutCancel(ctx), req.NodeName); err != nil {
				a.log.Error(err, "Could not remove the etcd user of a failed join; `agentctl delete node` removes it", "node", req.NodeName)
			}
		}
	}()
	if resp.ClusterID, err = a.admin.ClusterID(ctx); err != nil {
		return nil, wireErr(err)
	}
	if req.Member {
		var id uint64
		if id, resp.InitialCluster, err = a.admin.AddLearner(ctx, req.NodeName, req.PeerURL); err != nil {
			return nil, wireErr(err)
		}
		a.mu.Lock()
		if a.learners == nil {
			a.learners = map[string]uint64{}
		}
		a.learners[req.NodeName] = id
		a.mu.Unlock()
		// etcd takes one learner at a time: one that is never started or promoted (a joiner that gave up, or
		// never meant to) must not block every later join.
		time.AfterFunc(learnerDeadline, func() { a.dropLearner(req.NodeName, id) })
	}
	members, err := a.admin.Members(ctx)
	if err != nil {
		return nil, wireErr(err)
	}
	for _, m := range members {
		resp.Endpoints = append(resp.Endpoints, m.ClientURLs...)
	}
	if cfg, err := a.admin.ClusterConfig(ctx); err == nil {
		resp.PodSecurity = cfg.PodSecurity
	}
	joined = true
	return resp, nil
}

// learnerDeadline is how long a member added by a join may stay a learner before the join service removes it.
const learnerDeadline = 2*promoteTimeout + time.Minute

// dropLearner removes learner id of node if it was not promoted or aborted meanwhile.
func (a *authority) dropLearner(node string, id uint64) {
	a.mu.Lock()
	pending := a.learners[node] == id
	if pending {
		delete(a.learners, node)
	}
	a.mu.Unlock()
	if !pending {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.admin.RemoveMemberID(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Error(err, "Could not remove a learner whose join never completed", "node", node, "id", fmt.Sprintf("%x", id))
		return
	}
	a.log.Info("Removed a learner whose join never completed", "node", node, "id", fmt.Sprintf("%x", id))
}

func (a *authority) Promote(ctx context.Context, node string) error {
	if err := a.admin.PromoteMember(ctx, node, promoteTimeout); err != nil {
		return wireErr(err)
	}
	a.mu.Lock()
	delete(a.learners, node)
	a.mu.Unlock()
	return nil
}

// Abort undoes a join that failed after the service answered: the member it added, the node's user and record.
func (a *authority) Abort(ctx context.Context, node string) error {
	a.mu.Lock()
	id, ok := a.learners[node]
	delete(a.learners, node)
	a.mu.Unlock()
	err := a.admin.RemoveMember(ctx, node)
	if ok && errors.Is(err, store.ErrNotFound) {
		err = a.admin.RemoveMemberID(ctx, id)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return wireErr(err)
	}
	if err := a.admin.RemoveNode(ctx, node); err != nil && !errors.Is(err, store.ErrNotFound) {
		return wireErr(err)
	}
	return wireErr(a.admin.RemoveNodeUser(ctx, node))
}

// Leave removes a leaving node's member, then its user (so that a removal etcd refuses, for its quorum, leaves the
// node able to try again); the node removed its record itself.
func (a *authority) Leave(ctx context.Context, node string) error {
	err := a.admin.RemoveMember(ctx, node)
	if errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) {
		return wireErr(err)
	}
	// Removed, or perhaps removed (an answer lost): the user goes either way.
	if uerr := a.admin.RemoveNodeUser(ctx, node); uerr != nil && (err == nil || errors.Is(err, store.ErrNotFound)) {
		return wireErr(uerr)
	}
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	return wireErr(err)
}

// Renew issues new certificates to a node that is still in the cluster (its etcd user exists: `delete node` and
// leave remove it), with the addresses of its member, if it has one.
func (a *authority) Renew(ctx context.Context, node string, req joinapi.RenewRequest) (*joinapi.RenewResponse, error) {
	ok, err := a.admin.NodeUserExists(ctx, node)
	if err != nil {
		return nil, wireErr(err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: node %q is no longer in the cluster", joinapi.ErrUnauthorized, node)
	}
	return a.renew(ctx, node, req)
}

// renew issues the certificates, with the addresses of the node's member as its SANs.
func (a *authority) renew(ctx context.Context, node string, req joinapi.RenewRequest) (*joinapi.RenewResponse, error) {
	nodeKey, err := csrKey(req.NodeCSR, pki.NodeCN(node))
	if err != nil {
		return nil, err
	}
	members, err := a.admin.Members(ctx)
	if err != nil {
		return nil, wireErr(err)
	}
	var hosts []string
	member := false
	for _, m := range members {
		if m.Name != node {
			continue
		}
		member = true
		for _, u := range append(append([]string(nil), m.PeerURLs...), m.ClientURLs...) {
			if h, err := urlHost(u); err == nil {
				hosts = append(hosts, h)
			}
		}
	}
	usage := pki.UsageClient
	if member {
		usage = pki.UsageClientServer
	}
	nodeCert, err := a.issue(pki.NodeCN(node), usage, hosts, nodeKey)
	if err != nil {
		return nil, err
	}
	resp := &joinapi.RenewResponse{NodeCert: string(pki.EncodeCert(nodeCert))}
	if member && req.PeerCSR != "" {
		peerKey, err := csrKey(req.PeerCSR, pki.PeerCN)
		if err != nil {
			return nil, err
		}
		peerCert, err := a.issue(pki.PeerCN, pki.UsageClientServer, hosts, peerKey)
		if err != nil {
			return nil, err
		}
		resp.PeerCert = string(pki.EncodeCert(peerCert))
	}
	return resp, nil
}

func (a *authority) issue(cn string, usage pki.Usage, hosts []string, key any) (*x509.Certificate, error) {
	dns, ips := splitHosts(hosts)
	c, err := a.ca.Issue(pki.Request{CommonName: cn, DNSNames: dns, IPs: ips, Usage: usage, Validity: a.validity, PublicKey: key}, a.now())
	if err != nil {
		return nil, fmt.Errorf("issue a certificate for %s: %w", cn, err)
	}
	return c, nil
}

// csrKey checks a CSR (signature, the common name the service expects) and returns its public key.
func csrKey(pemCSR, wantCN string) (any, error) {
	csr, err := pki.ParseCSR([]byte(pemCSR))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", joinapi.ErrBadRequest, err)
	}
	if csr.Subject.CommonName != wantCN {
		return nil, fmt.Errorf("%w: the certificate request names %q, want %q", joinapi.ErrBadRequest, csr.Subject.CommonName, wantCN)
	}
	return csr.PublicKey, nil
}

// memberHostAllowed says whether a joining member may have a server certificate for host: only an IP address, the
// one its request came from, or loopback. A name, or another node's address, would let it pose as that host's
// etcd to the nodes that talk to it.
func memberHostAllowed(host, remoteAddr string) error {
	ip := net.ParseIP(host)
	from, _, _ := net.SplitHostPort(remoteAddr)
	switch {
	case ip == nil:
		return fmt.Errorf("the member's URLs must name an IP address, not %q (its certificate is valid for the addresses in them)", host)
	case ip.IsLoopback(), ip.Equal(net.ParseIP(from)):
		return nil
	}
	return fmt.Errorf("the member's URLs name %s, but this node joins from %s: a member's certificate names only its own address (or loopback), so that it cannot pose as another host", host, from)
}

// urlHost is the host of an https://HOST:PORT URL.
func urlHost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Port() == "" {
		return "", fmt.Errorf("URL %q: want https://HOST:PORT", s)
	}
	return u.Hostname(), nil
}

// splitHosts sorts host names from IP addresses for a certificate's SANs, without duplicates.
func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// wireErr classifies a store error for the join service's answer.
func wireErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrUnreachable):
		return fmt.Errorf("%w: %v", joinapi.ErrUnavailable, err)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, rpctypes.ErrMemberNotFound):
		return fmt.Errorf("%w: %v", joinapi.ErrNotFound, err)
	case errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
		return fmt.Errorf("%w: %v", joinapi.ErrNoQuorum, err)
	}
	return err
}

// validNodeName: node names are DNS-1123 subdomains, as Kubernetes requires; they become etcd keys and user names.
func validNodeName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("node name %q: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}
