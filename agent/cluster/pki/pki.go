// Package pki is the certificate authority and the credentials of agentd's
// cluster mode: the cluster CA, the certificates of nodes, of etcd peers and of
// the admin, the CA pin a joining node checks (kubeadm's
// "sha256:<hex of the CA's SubjectPublicKeyInfo>"), the bootstrap tokens that
// let a node join once, and the node's PKI directory <root>/cluster/pki.
//
// The package is pure: it makes, parses, checks and stores certificates and
// keys, and leaves etcd, the join server and the network to its callers. It uses
// only the standard library's crypto, and makes ECDSA P-256 keys (Ed25519 public
// keys are accepted in requests).
//
// Identities are common names, because etcd takes a client certificate's CN as
// its user name: AdminCN is etcd's root user, PeerCN the one CN etcd's peer
// listener accepts, JoinServiceCN the one server CN the join service's clients
// accept, and NodeCN(name) a node. Certificates live DefaultValidity
// (a Request's Validity changes it, down to MinValidity) and are renewed at
// RenewAt, kubelet's rule. Nothing here reads settings or the environment; the
// caller passes names, validities and the time.
//
// Private keys are files of mode 0600 owned by the user that loads them, and
// are refused otherwise, because agentd runs as root and a key anyone else can
// read is a key that has leaked. Nothing in this package logs or puts key
// material or token secrets into errors.
package pki

import (
	"strings"
	"time"
)

// Common names. etcd uses the client certificate's CN as its user name.
const (
	// AdminCN is the cluster admin credential's CN: etcd's root user.
	AdminCN = "root"
	// PeerCN is the CN of every etcd member's peer certificate; the peer
	// listener accepts only this CN, so a node certificate cannot join etcd's
	// raft as a member.
	PeerCN = "agentd-etcd-peer"
	// JoinServiceCN is the CN of the join service's server certificate. The
	// join service's clients (a joiner with its bootstrap token, a node asking
	// for renewal or removal) accept no other server certificate, so that a
	// node's or an etcd member's certificate, which the same CA issues and
	// which may name the join host, cannot impersonate the join service and
	// collect tokens.
	JoinServiceCN = "agentd-join-service"
)

// nodeCNPrefix starts every node's CN, so that a node CN can never be AdminCN,
// PeerCN or JoinServiceCN, whatever the node is named.
const nodeCNPrefix = "node:"

// NodeCN is the CN of node's certificate, and so its etcd user name.
func NodeCN(node string) string { return nodeCNPrefix + node }

// NodeFromCN is NodeCN's inverse: the node a CN names, false when cn is not a
// node's CN (no prefix, or an empty name).
func NodeFromCN(cn string) (string, bool) {
	node, ok := strings.CutPrefix(cn, nodeCNPrefix)
	if !ok || node == "" {
		return "", false
	}
	return node, true
}

// Validities.
const (
	// CAValidity is the cluster CA's lifetime. The CA is not rotated by this
	// package; leaves cannot outlive it (Issue refuses).
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is the lifetime of node, peer and admin certificates.
	DefaultValidity = 365 * 24 * time.Hour
	// MinValidity is the shortest lifetime Issue accepts: tests renew quickly,
	// but a certificate that expires before it can be used is a mistake.
	MinValidity = 10 * time.Second
)
