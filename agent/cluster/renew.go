package cluster

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/joinapi"
	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/cluster/store"
)

// serveJoins starts the join service when this node can sign (it holds the CA's key and the admin credential),
// trying again while the cluster's etcd does not answer.
func (s *session) serveJoins() {
	dir := store.PKIDir(s.n.cfg.Root)
	if !s.signs() {
		close(s.joinsReady)
		return
	}
	go func() {
		for {
			err := s.startJoinService(dir)
			if err == nil {
				close(s.joinsReady)
				return
			}
			if !s.retryJoinService(err) {
				return
			}
		}
	}()
}

// signs says whether this node holds what the join service needs: the CA's key and a join URL.
func (s *session) signs() bool {
	return store.PKIDir(s.n.cfg.Root).Exists(pki.CAKeyFile) && s.ms.JoinURL != ""
}

func (s *session) startJoinService(dir pki.Dir) error {
	ca, err := dir.LoadCA()
	if err != nil {
		return err
	}
	admin, err := s.admin(s.ctx)
	if err != nil {
		return err
	}
	cfg, err := admin.ClusterConfig(s.ctx)
	if err != nil {
		return err
	}
	log := s.log.WithName("join-service")
	a := &authority{ca: ca, admin: admin, validity: time.Duration(cfg.CertValidity), now: time.Now, log: log}
	if !dir.Exists(pki.JoinFile) {
		// A node made signing by hand (its CA key copied in) issues its join service's certificate here.
		if err := s.issueJoinCert(a); err != nil {
			return err
		}
	}
	id, err := loadIdentity(dir.Path(pki.CACertFile), dir.Path(pki.JoinFile), dir.Path(pki.JoinFile))
	if err != nil {
		return err
	}
	srv, err := joinapi.Listen(s.ms.JoinURL, ca.Cert, id.serverCert, joinapi.NewHandler(a, log), log)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		srv.Close()
		return nil
	}
	s.auth, s.joinSrv, s.joinErr, s.joinID = a, srv, nil, id
	return nil
}

// issueJoinCert gives the join service its own certificate (pki.JoinServiceCN, for the join URL's host), which
// joiners and nodes require of it: no node certificate can pose as the join service.
func (s *session) issueJoinCert(a *authority) error {
	host, err := urlHost(s.ms.JoinURL)
	if err != nil {
		return err
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	dns, ips := splitHosts([]string{host})
	cert, err := a.ca.Issue(pki.Request{CommonName: pki.JoinServiceCN, Usage: pki.UsageClientServer, DNSNames: dns, IPs: ips,
		Validity: a.validity, PublicKey: key.Public()}, time.Now())
	if err != nil {
		return err
	}
	return store.PKIDir(s.n.cfg.Root).WriteCombined(pki.JoinFile, cert, key)
}

// retryJoinService records why the join service does not run and waits; false when the session ended.
func (s *session) retryJoinService(err error) bool {
	s.mu.Lock()
	first := s.joinErr == nil || s.joinErr.Error() != err.Error()
	s.joinErr = err
	s.mu.Unlock()
	if first {
		s.log.Error(err, "Cannot serve the cluster's join service yet; trying again")
	}
	select {
	case <-s.ctx.Done():
		return false
	case <-time.After(retryInterval):
		return true
	}
}

func (s *session) stopJoins() {
	s.mu.Lock()
	srv := s.joinSrv
	s.joinSrv, s.auth = nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// authority is the join service's authority while this node serves it, else nil.
func (s *session) authority() *authority {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

func (s *session) lastJoinServiceError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joinErr
}

// renewRetry bounds the wait before trying a failed renewal again.
const renewRetry = 30 * time.Second

// renewLoop renews the node's certificates (and, on the node that signs, the admin credential) at 70–90 % of
// their lifetime, until the session ends. A failed renewal is tried again well before the certificate expires.
func (s *session) renewLoop() {
	var retryAt time.Time
	for {
		due, expires := s.nextRenewal()
		if !retryAt.IsZero() {
			due = retryAt
		}
		timer := time.NewTimer(time.Until(due))
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		err := s.renew(s.ctx)
		if err == nil {
			retryAt = time.Time{}
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		wait := min(renewRetry, max(time.Second, time.Until(expires)/10))
		retryAt = time.Now().Add(wait)
		s.log.Error(err, "Could not renew this node's certificates; trying again", "expires", expires, "retryIn", wait)
	}
}

// nextRenewal is when the first of the node's certificates is due, and when the earliest expires.
func (s *session) nextRenewal() (due, expires time.Time) {
	for _, c := range s.renewable() {
		at := s.renewAt(c)
		if due.IsZero() || at.Before(due) {
			due = at
		}
		if expires.IsZero() || c.NotAfter.Before(expires) {
			expires = c.NotAfter
		}
	}
	if due.IsZero() { // nothing to renew: look again in a while
		due = time.Now().Add(time.Hour)
	}
	return due, expires
}

// renewable are the certificates this node renews: its node and peer certificates, and the admin credential on
// the node that signs.
func (s *session) renewable() []*x509.Certificate {
	dir := store.PKIDir(s.n.cfg.Root)
	var out []*x509.Certificate
	for _, f := range []string{pki.NodeFile, pki.PeerFile} {
		if c, _, err := dir.LoadCombined(f); err == nil {
			out = append(out, c)
		}
	}
	if s.authority() != nil {
		if cred, err := pki.LoadCredential(store.AdminCredentialPath(s.n.cfg.Root)); err == nil {
			out = append(out, cred.Cert)
		}
		if c, _, err := dir.LoadCombined(pki.JoinFile); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// renew gets new certificates for new keys: from the local authority on the node that signs, else from the
// join service, which checks that the node is still in the cluster.
func (s *session) renew(ctx context.Context) error {
	dir := store.PKIDir(s.n.cfg.Root)
	node := s.ms.NodeName
	member := dir.Exists(pki.PeerFile)
	keys, err := newCSRs(node, member)
	if err != nil {
		return err
	}
	req := joinapi.RenewRequest{NodeCSR: keys.node, PeerCSR: keys.peer}
	var resp *joinapi.RenewResponse
	a := s.authority()
	if a != nil {
		resp, err = a.renew(ctx, node, req)
	} else {
		if s.ms.JoinURL == "" {
			return errors.New("this node does not know the cluster's join service, which signs renewed certificates")
		}
		var jc *joinapi.Client
		if jc, err = joinapi.NewClient(s.ms.JoinURL, s.id.clientTLS()); err != nil {
			return err
		}
		defer jc.Close()
		resp, err = jc.Renew(ctx, req)
	}
	if err != nil {
		return err
	}
	if err := s.n.installCerts(s.id.caCert(), resp.NodeCert, keys.nodeKey, resp.PeerCert, keys.peerKey, member); err != nil {
		return err
	}
	if err := s.id.reload(); err != nil {
		return err
	}
	if a != nil {
		if err := s.renewAdmin(a); err != nil {
			return err
		}
		if err := s.issueJoinCert(a); err != nil {
			return err
		}
		s.mu.Lock()
		joinID := s.joinID
		s.mu.Unlock()
		if joinID != nil {
			if err := joinID.reload(); err != nil {
				return err
			}
		}
	}
	c := s.id.leaf()
	s.log.Info("Renewed this node's certificates", "node", node, "notAfter", c.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// renewAdmin issues the admin credential anew when it is due, on the node that signs.
func (s *session) renewAdmin(a *authority) error {
	path := store.AdminCredentialPath(s.n.cfg.Root)
	cred, err := pki.LoadCredential(path)
	if err != nil {
		return err
	}
	if time.Now().Before(s.renewAt(cred.Cert)) {
		return nil
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	cert, err := a.ca.Issue(pki.Request{CommonName: pki.AdminCN, Usage: pki.UsageClient, Validity: adminValidity(a.validity), PublicKey: key.Public()}, time.Now())
	if err != nil {
		return err
	}
	cred.Cert, cred.Key = cert, key
	if err := pki.WriteCredential(path, cred); err != nil {
		return err
	}
	s.log.Info("Renewed the cluster admin credential", "path", path, "notAfter", cert.NotAfter.UTC().Format(time.RFC3339))
	return s.adminIdentityReload()
}

// adminValidity is the admin credential's lifetime: a year (kubeadm's admin.conf), or the cluster's certificate
// validity when that is shorter.
func adminValidity(certValidity time.Duration) time.Duration {
	return min(pki.DefaultValidity, max(certValidity, pki.MinValidity))
}

// csrs are new keys for a node's certificates and the requests (PEM) for them; the peer's only for a member.
type csrs struct {
	nodeKey, peerKey crypto.Signer
	node, peer       string
}

func newCSRs(node string, member bool) (*csrs, error) {
	c := &csrs{}
	var err error
	if c.nodeKey, err = pki.NewKey(); err != nil {
		return nil, err
	}
	b, err := pki.NewCSR(c.nodeKey, pki.NodeCN(node))
	if err != nil {
		return nil, err
	}
	c.node = string(b)
	if !member {
		return c, nil
	}
	if c.peerKey, err = pki.NewKey(); err != nil {
		return nil, err
	}
	if b, err = pki.NewCSR(c.peerKey, pki.PeerCN); err != nil {
		return nil, err
	}
	c.peer = string(b)
	return c, nil
}

// installCerts checks certificates issued for this node's new keys (they chain to the cluster's CA, name this node
// and carry its keys) and writes them with the keys.
func (n *Node) installCerts(ca *x509.Certificate, nodePEM string, nodeKey crypto.Signer, peerPEM string, peerKey crypto.Signer, member bool) error {
	dir := store.PKIDir(n.cfg.Root)
	nodeCert, err := checkIssued(ca, nodePEM, nodeKey, pki.NodeCN(n.cfg.NodeName))
	if err != nil {
		return err
	}
	var peerCert *x509.Certificate
	if member {
		if peerCert, err = checkIssued(ca, peerPEM, peerKey, pki.PeerCN); err != nil {
			return err
		}
	}
	if err := dir.WriteCombined(pki.NodeFile, nodeCert, nodeKey); err != nil {
		return err
	}
	if member {
		return dir.WriteCombined(pki.PeerFile, peerCert, peerKey)
	}
	return nil
}

// checkIssued verifies an issued certificate: it chains to ca as a client certificate, names cn and holds key's
// public half.
func checkIssued(ca *x509.Certificate, pemCert string, key crypto.Signer, cn string) (*x509.Certificate, error) {
	c, err := pki.ParseCert([]byte(pemCert))
	if err != nil {
		return nil, fmt.Errorf("the certificate issued for %s: %w", cn, err)
	}
	if err := pki.Verify(ca, c, time.Now(), x509.ExtKeyUsageClientAuth); err != nil {
		return nil, fmt.Errorf("the certificate issued for %s does not verify: %w", cn, err)
	}
	if c.Subject.CommonName != cn || !samePublicKey(c.PublicKey, key.Public()) {
		return nil, fmt.Errorf("the certificate issued names %q or another key, want %q and this node's key", c.Subject.CommonName, cn)
	}
	return c, nil
}
