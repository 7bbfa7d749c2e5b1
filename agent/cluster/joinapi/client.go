package joinapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// Errors of a server the client refuses in the TLS handshake, before it sends anything.
var (
	// ErrPinMismatch: the joiner's server is not the join service --ca-cert-hash vouches for: its CA does not have
	// that hash, or its certificate is not that CA's join service certificate for the dialled host. Nothing was
	// sent.
	ErrPinMismatch = errors.New("the cluster's CA does not match --ca-cert-hash")
	// ErrNotJoinService: the server's certificate is the cluster CA's but not the join service's (its CN is not
	// pki.JoinServiceCN): a node's or an etcd member's certificate, which may name the join host too. Nothing was
	// sent. A joiner's error is also ErrPinMismatch.
	ErrNotJoinService = errors.New("the server is not the cluster's join service")
	// errRedirect: the server answered with a redirect, which clients never follow, so that a token or a CSR is
	// sent only where --join-url says.
	errRedirect = errors.New("agentd does not follow redirects, so that nothing is sent elsewhere")
)

// Client calls a join service.
type Client struct {
	url string
	hc  *http.Client

	mu sync.Mutex
	ca *x509.Certificate // guarded by mu; the CA the pinned handshake found
}

// requestTimeout bounds each call; a join waits for etcd's member change (up to 20 s when the leader is not yet
// connected to every member) and a promotion for the learner to catch up.
const requestTimeout = 90 * time.Second

// NewPinnedClient returns a client that trusts the join service at joinURL only if the server's certificate chain
// holds a CA whose SPKI hash is pin, and the server's certificate is that CA's join service certificate
// (pki.JoinServiceCN) for the host of joinURL. The check is made in the TLS handshake, before any request is sent;
// redirects are refused.
func NewPinnedClient(joinURL string, pin []byte) (*Client, error) {
	u, err := ParseURL(joinURL)
	if err != nil {
		return nil, err
	}
	c := &Client{url: u.String()}
	host := u.Hostname()
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard verification needs a trusted root we do not have yet; VerifyConnection does it against
		// the pinned CA instead, and fails the handshake otherwise.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			ca, err := verifyPinned(cs.PeerCertificates, pin, host)
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.ca = ca
			c.mu.Unlock()
			return nil
		},
	}
	c.hc = newHTTPClient(cfg)
	return c, nil
}

// newHTTPClient is the HTTP client of both kinds of Client. It never follows a redirect: the join service has no
// reason to send one, and following it would re-send a token or a CSR to a server the handshake checks did not
// choose. HTTP/1.1 only (a Transport with its own TLS config does not try HTTP/2): over HTTP/2 a refused client
// certificate shows only as "could not be established".
func newHTTPClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{TLSClientConfig: cfg},
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			return fmt.Errorf("answered with a redirect to %s; %w", req.URL.Redacted(), errRedirect)
		},
	}
}

// notJoinService is the error for a server whose certificate, verified against the cluster's CA, is for cn.
func notJoinService(host, cn string) error {
	return fmt.Errorf("%w: the server at %s presents a certificate the cluster's CA issued to %q, not to %q", ErrNotJoinService, host, cn, pki.JoinServiceCN)
}

// pinnedError is a joiner's refusal: ErrPinMismatch, with a message of its own when the cause says more.
type pinnedError struct{ error }

func (e pinnedError) Unwrap() []error { return []error{e.error, ErrPinMismatch} }

// verifyPinned finds the pinned CA in a server's chain and verifies the server's certificate against it alone.
func verifyPinned(chain []*x509.Certificate, pin []byte, host string) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: the server at %s sent no certificate; the join is aborted and the token was not sent", ErrPinMismatch, host)
	}
	var ca *x509.Certificate
	for _, c := range chain[1:] {
		if c.IsCA && pki.MatchesPin(c, pin) {
			ca = c
		}
	}
	if ca == nil {
		return nil, fmt.Errorf("%w: the server at %s presented no CA with that hash; the join is aborted and the token was not sent", ErrPinMismatch, host)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("%w: the server's certificate is not its CA's for %s (%v); the join is aborted and the token was not sent", ErrPinMismatch, host, err)
	}
	// The CA also issues nodes' and etcd members' certificates, which may name this host.
	if cn := chain[0].Subject.CommonName; cn != pki.JoinServiceCN {
		return nil, pinnedError{fmt.Errorf("%w; the join is aborted and the token was not sent", notJoinService(host, cn))}
	}
	return ca, nil
}

// NewClient returns a client that presents the node's certificate (tlsCfg, which trusts the cluster's CA). Besides
// tlsCfg's verification, the server's certificate must be the join service's (pki.JoinServiceCN), or the handshake
// fails with ErrNotJoinService; redirects are refused. tlsCfg is not changed.
func NewClient(joinURL string, tlsCfg *tls.Config) (*Client, error) {
	u, err := ParseURL(joinURL)
	if err != nil {
		return nil, err
	}
	if tlsCfg == nil {
		return nil, fmt.Errorf("join service client for %s: no TLS configuration; a node calls the join service with its certificate and the cluster's CA", u)
	}
	cfg := tlsCfg.Clone()
	host := u.Hostname()
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		// Runs after tlsCfg's verification against its RootCAs, so the leaf is the cluster CA's.
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server at %s sent no certificate; nothing was sent", ErrNotJoinService, host)
		}
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != pki.JoinServiceCN {
			return fmt.Errorf("%w; nothing was sent: check that the join URL is the cluster's join service", notJoinService(host, cn))
		}
		return nil
	}
	return &Client{url: u.String(), hc: newHTTPClient(cfg)}, nil
}

// CA is the CA a pinned client found, after its first call.
func (c *Client) CA() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ca
}

// Join asks to join.
func (c *Client) Join(ctx context.Context, req JoinRequest) (*JoinResponse, error) {
	var resp JoinResponse
	return &resp, c.call(ctx, PathJoin, req, &resp)
}

// Promote asks the service to promote this node's learner.
func (c *Client) Promote(ctx context.Context) error { return c.call(ctx, PathPromote, struct{}{}, nil) }

// Abort asks the service to remove the member this node's failed join added.
func (c *Client) Abort(ctx context.Context) error { return c.call(ctx, PathAbort, struct{}{}, nil) }

// Leave asks the service to remove this node's member and etcd user.
func (c *Client) Leave(ctx context.Context) error { return c.call(ctx, PathLeave, struct{}{}, nil) }

// Renew asks for renewed certificates.
func (c *Client) Renew(ctx context.Context, req RenewRequest) (*RenewResponse, error) {
	var resp RenewResponse
	return &resp, c.call(ctx, PathRenew, req, &resp)
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		switch {
		case errors.Is(err, ErrPinMismatch), errors.Is(err, ErrNotJoinService):
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				return ue.Err // the handshake's own words, without the request's
			}
			return err
		case errors.Is(err, errRedirect):
			// Not ErrUnavailable: asking again gets the same answer. The url.Error names the redirect's location,
			// which the message says already.
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				err = ue.Err
			}
			return fmt.Errorf("join service at %s: %w: check the join URL", c.url, err)
		case errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the service
			// The service refused this node's certificate: expired, or not the cluster's.
			return fmt.Errorf("%w: the join service at %s refused this node's certificate (%v); if it expired, leave with --force and join again", ErrUnauthorized, c.url, err)
		}
		return fmt.Errorf("%w: join service at %s: %w", ErrUnavailable, c.url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("join service at %s: %w", c.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var w wireError
		if json.Unmarshal(data, &w) != nil {
			w.Message = strings.TrimSpace(string(data))
		}
		return fromWire(w, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("join service at %s: answer does not decode: %w", c.url, err)
	}
	return nil
}
