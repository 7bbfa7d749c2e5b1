package cluster

import (
	"context"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/cluster/store"
)

// EtcdHealth is how the cluster's etcd answered this node just now.
type EtcdHealth struct {
	// InCluster: the node is in a cluster; the other fields say nothing otherwise.
	InCluster bool
	// Healthy: a quorum read answered; Latency is how long it took (or how
	// long it was waited for, when it failed).
	Healthy bool
	Latency time.Duration
}

// EtcdHealth reads from the cluster's etcd once (store.Client.Ping, bounded by
// its request timeout and ctx). A node not connected yet is unhealthy with no
// latency.
func (n *Node) EtcdHealth(ctx context.Context) EtcdHealth {
	s := n.session()
	if s == nil {
		return EtcdHealth{}
	}
	c, _ := s.connection()
	if c == nil {
		return EtcdHealth{InCluster: true}
	}
	d, err := c.Ping(ctx)
	return EtcdHealth{InCluster: true, Healthy: err == nil, Latency: d}
}

// CertificateExpiry is when one of the node's cluster certificates expires.
type CertificateExpiry struct {
	// Name is "ca", "node", "peer", "join" (the join service's, on the node
	// that serves joins) or "admin" (the admin credential, where it is).
	Name     string
	NotAfter time.Time
}

// Certificates are the cluster certificates this node holds, read from its PKI
// directory and admin credential; none when it is not in a cluster. A file
// that cannot be read is left out.
func (n *Node) Certificates() []CertificateExpiry {
	if n.session() == nil {
		return nil
	}
	dir := store.PKIDir(n.cfg.Root)
	var out []CertificateExpiry
	if c, err := dir.LoadCert(pki.CACertFile); err == nil {
		out = append(out, CertificateExpiry{Name: "ca", NotAfter: c.NotAfter})
	}
	for _, f := range []struct{ name, file string }{{"node", pki.NodeFile}, {"peer", pki.PeerFile}, {"join", pki.JoinFile}} {
		if c, _, err := dir.LoadCombined(f.file); err == nil {
			out = append(out, CertificateExpiry{Name: f.name, NotAfter: c.NotAfter})
		}
	}
	if cred, err := pki.LoadCredential(store.AdminCredentialPath(n.cfg.Root)); err == nil {
		out = append(out, CertificateExpiry{Name: "admin", NotAfter: cred.Cert.NotAfter})
	}
	return out
}
