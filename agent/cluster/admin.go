package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster/joinapi"
	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/cluster/store"
)

// loadAdmin reads the admin credential of root, or ErrNoAdminCredential.
func loadAdmin(root string) (*identity, error) {
	path := store.AdminCredentialPath(root)
	id, err := adminIdentity(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s): DaemonSets, tokens and node removals need it; run the command on the node that ran `agentctl cluster init`, or copy that node's <root>/cluster/admin.conf to %s on purpose",
			ErrNoAdminCredential, path, path)
	}
	return id, err
}

// admin returns a client of the cluster's etcd under the admin credential, connected on first use and kept for the
// session.
func (s *session) admin(ctx context.Context) (*store.Client, error) {
	s.mu.Lock()
	c := s.adminClient
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	id, err := loadAdmin(s.n.cfg.Root)
	if err != nil {
		return nil, err
	}
	eps := s.endpoints()
	id.mu.Lock()
	credEndpoints := id.endpoints
	id.mu.Unlock()
	for _, e := range credEndpoints {
		if !slices.Contains(eps, e) {
			eps = append(eps, e)
		}
	}
	c, err = store.Connect(ctx, eps, id.clientTLS(), s.n.log.WithName("etcd-admin"))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminClient != nil || s.ctx.Err() != nil {
		c.Close()
		if s.adminClient == nil {
			return nil, ErrNotInCluster
		}
		return s.adminClient, nil
	}
	s.adminClient, s.adminID = c, id
	return c, nil
}

// adminIdentityReload makes the admin client present the renewed admin credential at its next handshake.
func (s *session) adminIdentityReload() error {
	s.mu.Lock()
	id := s.adminID
	s.mu.Unlock()
	if id == nil {
		return nil
	}
	return id.reload()
}

// admin is the session's admin client, or the reason there is none.
func (n *Node) admin(ctx context.Context) (*store.Client, error) {
	s := n.session()
	if s == nil {
		return nil, ErrNotInCluster
	}
	return s.admin(ctx)
}

// removeOwnMember removes this node's etcd member and user from the cluster, which needs the admin's rights: with
// the admin credential if this node holds it, else through the join service, which checks that the caller's
// certificate names this node. Errors are etcd's sentinels (store.Leave classifies them).
func (s *session) removeOwnMember(ctx context.Context) error {
	var err error
	if _, serr := os.Stat(store.AdminCredentialPath(s.n.cfg.Root)); serr == nil {
		err = s.leaveAsAdmin(ctx)
	} else {
		if s.ms.JoinURL == "" {
			return fmt.Errorf("this node does not know the cluster's join service, which removes members")
		}
		jc, cerr := joinapi.NewClient(s.ms.JoinURL, s.id.clientTLS())
		if cerr != nil {
			return cerr
		}
		defer jc.Close()
		err = jc.Leave(ctx)
	}
	switch {
	case errors.Is(err, joinapi.ErrNoQuorum):
		return fmt.Errorf("%w: %v", rpctypes.ErrMemberNotEnoughStarted, err)
	case errors.Is(err, joinapi.ErrNotFound):
		return rpctypes.ErrMemberNotFound
	case errors.Is(err, joinapi.ErrUnavailable):
		return fmt.Errorf("%w: %v", store.ErrUnreachable, err)
	}
	return err
}

// leaveAsAdmin does what the join service's Leave does, with this node's admin credential, through the other
// members: this node's own stops once removed.
func (s *session) leaveAsAdmin(ctx context.Context) error {
	id, err := loadAdmin(s.n.cfg.Root)
	if err != nil {
		return err
	}
	var others []string
	for _, e := range s.endpoints() {
		if e != s.ms.ClientURL {
			others = append(others, e)
		}
	}
	if len(others) == 0 {
		return joinapi.ErrNotFound // the last member: leaving ends the cluster
	}
	c, err := store.Connect(ctx, others, id.clientTLS(), s.n.log.WithName("etcd-admin"))
	if err != nil {
		return err
	}
	defer c.Close()
	return (&authority{admin: c, log: s.log}).Leave(ctx, s.ms.NodeName)
}

// TokenRequest is `agentctl cluster token create`.
type TokenRequest struct {
	TTL         time.Duration
	Once        bool
	Description string
	// ControlPlane lets the token join etcd members (which can write anything in the cluster).
	ControlPlane bool
}

// CreateToken creates a bootstrap token and returns it with the join command that uses it. Only a node that
// serves the join service (it holds the CA's key and the admin credential) creates tokens: the command must point
// at a service that can sign.
func (n *Node) CreateToken(ctx context.Context, req TokenRequest) (*api.TokenCreated, error) {
	s := n.session()
	if s == nil {
		return nil, ErrNotInCluster
	}
	if s.signs() {
		select { // a moment after init, or while etcd has no quorum, the service may still be starting
		case <-s.joinsReady:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	auth := s.authority()
	if auth == nil {
		why := "it holds no cluster CA key"
		if s.lastJoinServiceError() != nil {
			why = s.lastJoinServiceError().Error()
		}
		return nil, refused(fmt.Sprintf("this node does not serve the cluster's join service (%s): create tokens on the node that ran `agentctl cluster init`", why))
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("%w: --ttl %s: want 0 (never expires) or more", api.ErrBadRequest, req.TTL)
	}
	tok, err := pki.NewToken()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rec := pki.TokenRecord{ID: tok.ID, SecretHash: pki.HashSecret(tok.Secret), Once: req.Once, Description: req.Description, Created: now}
	if req.TTL > 0 {
		rec.Expires = now.Add(req.TTL)
	}
	if err := auth.admin.CreateToken(ctx, rec, req.ControlPlane); err != nil {
		return nil, err
	}
	pin := pki.SPKIHash(auth.ca.Cert)
	cmd := fmt.Sprintf("agentctl cluster join %s --token %s --ca-cert-hash %s", s.ms.JoinURL, tok, pin)
	if req.ControlPlane {
		cmd += " --control-plane"
	}
	return &api.TokenCreated{Token: tok.String(), Expires: rec.Expires, Once: req.Once, ControlPlane: req.ControlPlane,
		JoinURL: s.ms.JoinURL, CACertHash: pin, JoinCommand: cmd}, nil
}

// Tokens lists the cluster's bootstrap tokens (never their secrets).
func (n *Node) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	c, err := n.admin(ctx)
	if err != nil {
		return nil, err
	}
	list, err := c.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.TokenInfo, 0, len(list))
	for _, t := range list {
		out = append(out, api.TokenInfo{ID: t.ID, Expires: t.Expires, Once: t.Once, ControlPlane: t.ControlPlane,
			Description: t.Description, Created: t.Created, UsedBy: t.UsedBy, UsedAt: t.UsedAt})
	}
	return out, nil
}

// DeleteToken revokes a bootstrap token.
func (n *Node) DeleteToken(ctx context.Context, id string) error {
	c, err := n.admin(ctx)
	if err != nil {
		return err
	}
	return c.DeleteToken(ctx, id)
}

// Certs describes the certificates this node holds, with their expiry and when they renew.
func (n *Node) Certs() ([]api.CertInfo, error) {
	s := n.session()
	if s == nil {
		return nil, ErrNotInCluster
	}
	var out []api.CertInfo
	add := func(name string, c *x509.Certificate, renews bool) {
		info := api.CertInfo{Name: name, Subject: c.Subject.CommonName, Issuer: c.Issuer.CommonName,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter}
		if renews {
			info.RenewAt = s.renewAt(c)
		}
		out = append(out, info)
	}
	if s.ms.External {
		f := n.cfg.EtcdTLS
		for _, c := range []struct{ name, file string }{{"etcd-ca", f.CAFile}, {"etcd-client", f.CertFile}} {
			if cert, err := pki.Dir("").LoadCert(c.file); err == nil {
				add(c.name, cert, false)
			}
		}
		return out, nil
	}
	dir := store.PKIDir(n.cfg.Root)
	for _, c := range []struct {
		name, file string
		renews     bool
	}{{"ca", pki.CACertFile, false}, {"node", pki.NodeFile, true}, {"etcd-peer", pki.PeerFile, true}, {"join-service", pki.JoinFile, true}} {
		if !dir.Exists(c.file) {
			continue
		}
		var cert *x509.Certificate
		var err error
		if c.file == pki.CACertFile {
			cert, err = dir.LoadCert(c.file)
		} else {
			cert, _, err = dir.LoadCombined(c.file)
		}
		if err != nil {
			return nil, err
		}
		add(c.name, cert, c.renews)
	}
	if cred, err := pki.LoadCredential(store.AdminCredentialPath(n.cfg.Root)); err == nil {
		add("admin", cred.Cert, s.authority() != nil)
	}
	return out, nil
}

// renewAt is when the session renews c: kubelet's rule, at 70–90 % of its lifetime, with a jitter drawn once per
// certificate so that nodes do not renew in step.
func (s *session) renewAt(c *x509.Certificate) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := c.SerialNumber.String()
	j, ok := s.jitter[key]
	if !ok {
		j = rand.Float64()
		s.jitter[key] = j
	}
	return pki.RenewAt(c, j)
}
