package joinapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// Authority does the join service's work. Its methods are called concurrently; ctx ends when the request does.
// node is the name in the caller's verified certificate.
type Authority interface {
	// Join checks the token and, if it may be used, issues the node's certificates and, for a member, adds it
	// to etcd as a learner.
	Join(ctx context.Context, req JoinRequest) (*JoinResponse, error)
	// Promote makes node's learner a voting member once it has caught up.
	Promote(ctx context.Context, node string) error
	// Abort removes the member node's failed join added.
	Abort(ctx context.Context, node string) error
	// Leave removes node's etcd member and its etcd user.
	Leave(ctx context.Context, node string) error
	// Renew issues new certificates for node, which must still be in the cluster.
	Renew(ctx context.Context, node string, req RenewRequest) (*RenewResponse, error)
}

// maxBody bounds a request body: two CSRs and a few names.
const maxBody = 64 << 10

// NewHandler serves the API over a.
func NewHandler(a Authority, log logr.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathJoin, func(w http.ResponseWriter, r *http.Request) {
		var req JoinRequest
		if !decode(w, r, &req) {
			return
		}
		req.RemoteAddr = r.RemoteAddr
		resp, err := a.Join(r.Context(), req)
		if err != nil {
			tok, _ := pki.ParseToken(req.Token)
			log.Info("Refused a join", "node", req.NodeName, "token", tok.Redacted(), "remote", r.RemoteAddr, "err", err.Error())
		} else {
			log.Info("A node joined through this join service", "node", req.NodeName, "member", req.Member, "remote", r.RemoteAddr)
		}
		answer(w, resp, err)
	})
	nodeCall := func(path string, f func(context.Context, string) error) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			node, ok := verifiedNode(w, r)
			if !ok {
				return
			}
			answer(w, struct{}{}, f(r.Context(), node))
		})
	}
	nodeCall(PathPromote, a.Promote)
	nodeCall(PathAbort, a.Abort)
	nodeCall(PathLeave, a.Leave)
	mux.HandleFunc("POST "+PathRenew, func(w http.ResponseWriter, r *http.Request) {
		node, ok := verifiedNode(w, r)
		if !ok {
			return
		}
		var req RenewRequest
		if !decode(w, r, &req) {
			return
		}
		resp, err := a.Renew(r.Context(), node, req)
		answer(w, resp, err)
	})
	return mux
}

// verifiedNode is the node named by the caller's certificate, verified against the cluster's CA in the handshake.
func verifiedNode(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		if node, ok := pki.NodeFromCN(r.TLS.VerifiedChains[0][0].Subject.CommonName); ok {
			return node, true
		}
	}
	answer(w, nil, fmt.Errorf("%w: this call needs a node's certificate from the cluster's CA", ErrUnauthorized))
	return "", false
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		answer(w, nil, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		answer(w, nil, fmt.Errorf("%w: more than one JSON value in the request", ErrBadRequest))
		return false
	}
	return true
}

func answer(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, status, msg := classify(err)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(wireError{Code: code, Message: msg})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Server is a running join service.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen serves h at joinURL (https://HOST:PORT) with the certificate cert returns at each handshake (so a
// renewed one is served at once); its chain must end with the CA, which joiners pin. Client certificates are
// verified against ca when given.
func Listen(joinURL string, ca *x509.Certificate, cert func() (*tls.Certificate, error), h http.Handler, log logr.Logger) (*Server, error) {
	u, err := ParseURL(joinURL)
	if err != nil {
		return nil, err
	}
	host := u.Hostname()
	if net.ParseIP(host) == nil && host != "localhost" {
		host = "0.0.0.0" // a name: every interface, as etcd's listeners do
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, u.Port()))
	if err != nil {
		return nil, fmt.Errorf("join service: listen on %s: %w", joinURL, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tlsCfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() },
	}
	s := &Server{ln: ln, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Failed handshakes (a wrong pin, a scan) are the joiner's business; logged at V(1), not on stderr.
		ErrorLog: stdlog.New(logWriter{log.V(1)}, "", 0),
	}}
	go func() {
		defer close(s.done)
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Join service stopped", "url", joinURL)
		}
	}()
	log.Info("Serving the cluster's join service", "url", joinURL)
	return s, nil
}

// logWriter turns the http.Server's log lines into logr entries.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info("Join service connection error", "err", strings.TrimSpace(string(p)))
	return len(p), nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server and waits until it stopped.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// ParseURL accepts https://HOST:PORT.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("join URL %q: %w", s, err)
	}
	if u.Scheme != "https" || u.Port() == "" || u.Hostname() == "" || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("join URL %q: want https://HOST:PORT", s)
	}
	u.Path = ""
	return u, nil
}
