// Package joinapi is the cluster's join service: the HTTPS API through which a new node joins with a bootstrap
// token (kubeadm's model) and through which a node that has joined gets its certificates renewed and its etcd
// member promoted or removed. Those steps need the cluster CA's key or the admin's rights in etcd, which nodes do
// not have; the node that ran `agentctl cluster init` holds both and serves this API (Authority does the work).
//
// Trust: a joiner knows the cluster only by the SPKI hash of its CA (--ca-cert-hash). NewPinnedClient checks that
// the server's chain holds a CA with that hash and that the server's certificate is that CA's join service
// certificate (CN pki.JoinServiceCN) for the host it dialled, during the TLS handshake: a wrong hash, or another
// certificate of the same CA (a node's, an etcd member's), ends the connection before the token is sent. Every
// other call is mutual TLS with the node's certificate, which names the node (pki.NodeCN), to a server that must
// present the join service's certificate too (NewClient). Neither client follows redirects, so that a token or a
// request goes only to the join URL.
//
// The service listens on the join URL given at `cluster init` (--join-url; default the client URL's host, port
// DefaultPort).
package joinapi

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPort is the join service's port when --join-url does not say.
const DefaultPort = "2377"

// Paths of the API.
const (
	PathJoin    = "/v1/join"
	PathPromote = "/v1/promote"
	PathAbort   = "/v1/abort"
	PathLeave   = "/v1/leave"
	PathRenew   = "/v1/renew"
)

// JoinRequest asks to join the cluster with a bootstrap token. The CSRs carry the joiner's public keys; the
// service decides names, addresses and usages itself.
type JoinRequest struct {
	Token    string `json:"token"`
	NodeName string `json:"nodeName"`
	NodeCSR  string `json:"nodeCSR"`
	// Member asks for an etcd member on this node (PeerCSR, PeerURL and ClientURL are then required); otherwise
	// the node is only a client of the members' etcd.
	Member    bool   `json:"member"`
	PeerCSR   string `json:"peerCSR,omitempty"`
	PeerURL   string `json:"peerURL,omitempty"`
	ClientURL string `json:"clientURL,omitempty"`
	// RemoteAddr is where the request came from (set by the server, never sent): a member's certificate may name
	// only that address (or loopback).
	RemoteAddr string `json:"-"`
}

// JoinResponse carries the node's certificates and, for a member, how to start it.
type JoinResponse struct {
	ClusterID string `json:"clusterID"`
	CA        string `json:"ca"`
	NodeCert  string `json:"nodeCert"`
	PeerCert  string `json:"peerCert,omitempty"`
	// Endpoints are the client URLs of the cluster's members.
	Endpoints []string `json:"endpoints"`
	// InitialCluster is the etcd initial-cluster string the new member starts with.
	InitialCluster string `json:"initialCluster,omitempty"`
	// PodSecurity is the cluster's Pod Security level, for `cluster status` before the node reads the settings.
	PodSecurity string `json:"podSecurity,omitempty"`
}

// RenewRequest asks for new certificates with the same names (a CSR per certificate the node holds).
type RenewRequest struct {
	NodeCSR string `json:"nodeCSR"`
	PeerCSR string `json:"peerCSR,omitempty"`
}

// RenewResponse carries the renewed certificates.
type RenewResponse struct {
	NodeCert string `json:"nodeCert"`
	PeerCert string `json:"peerCert,omitempty"`
}

// wireError is the body of every error answer.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Errors an Authority returns (wrapped) and a Client gives back, classified across the wire.
var (
	// ErrUnauthorized: a missing, unknown, wrong, expired or used token, or no valid node certificate.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrConflict: the request contradicts the cluster's state (a Ready node has that name, ...).
	ErrConflict = errors.New("conflict")
	// ErrNotFound: no such member or node.
	ErrNotFound = errors.New("not found")
	// ErrNoQuorum: the member change would leave the cluster without a quorum of running members.
	ErrNoQuorum = errors.New("the cluster would lose its quorum")
	// ErrUnavailable: the cluster's etcd did not answer the join service.
	ErrUnavailable = errors.New("the cluster's etcd did not answer the join service")
	// ErrBadRequest: a malformed request.
	ErrBadRequest = errors.New("bad request")
)

var codes = []struct {
	code   string
	err    error
	status int
}{
	{"Unauthorized", ErrUnauthorized, 401},
	{"Conflict", ErrConflict, 409},
	{"NotFound", ErrNotFound, 404},
	{"NoQuorum", ErrNoQuorum, 412},
	{"Unavailable", ErrUnavailable, 503},
	{"BadRequest", ErrBadRequest, 400},
}

// classify finds err's code, HTTP status and message (without the class's own prefix).
func classify(err error) (code string, status int, msg string) {
	msg = err.Error()
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, c.status, strings.TrimPrefix(msg, c.err.Error()+": ")
		}
	}
	return "Internal", 500, msg
}

// remoteError is an error the service answered, wrapping the sentinel of its code.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func fromWire(w wireError, status int) error {
	for _, c := range codes {
		if c.code == w.Code {
			return &remoteError{sentinel: c.err, msg: w.Message}
		}
	}
	if w.Message == "" {
		w.Message = fmt.Sprintf("HTTP status %d", status)
	}
	return &remoteError{msg: w.Message}
}
