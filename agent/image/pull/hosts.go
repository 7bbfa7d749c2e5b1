package pull

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// registriesFile is k3s's registries.yaml (docs/registries.md).
type registriesFile struct {
	Mirrors map[string]mirrorEntry `json:"mirrors,omitempty"`
	Configs map[string]configEntry `json:"configs,omitempty"`
}

type mirrorEntry struct {
	Endpoint []string `json:"endpoint,omitempty"`
}

type configEntry struct {
	TLS  *tlsEntry  `json:"tls,omitempty"`
	Auth *authEntry `json:"auth,omitempty"`
}

type tlsEntry struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

type authEntry struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Auth     string `json:"auth,omitempty"`
	// identitytoken is k3s's too; a registry token is what the bearer
	// flow trades it for.
	IdentityToken string `json:"identity_token,omitempty"`
}

// parseHosts parses the content of a registries file (path is for errors).
func parseHosts(path string, data []byte) (Hosts, error) {
	var f registriesFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return Hosts{}, fmt.Errorf("registries file %s: %w", path, err)
	}
	h := Hosts{Mirrors: map[string]Mirror{}, Configs: map[string]HostConfig{}}
	var errs []error
	for reg, m := range f.Mirrors {
		if reg == "" {
			errs = append(errs, errors.New("mirrors: an empty registry name"))
			continue
		}
		var eps []string
		for i, ep := range m.Endpoint {
			if _, err := parseEndpoint(ep); err != nil {
				errs = append(errs, fmt.Errorf("mirrors[%q].endpoint[%d]: %w", reg, i, err))
				continue
			}
			eps = append(eps, ep)
		}
		h.Mirrors[reg] = Mirror{Endpoints: eps}
	}
	for host, c := range f.Configs {
		if host == "" || strings.Contains(host, "/") {
			errs = append(errs, fmt.Errorf("configs[%q]: not a host[:port]", host))
			continue
		}
		var hc HostConfig
		if c.TLS != nil {
			hc.CAFile, hc.CertFile, hc.KeyFile = c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile
			hc.InsecureSkipVerify = c.TLS.InsecureSkipVerify
			if (hc.CertFile == "") != (hc.KeyFile == "") {
				errs = append(errs, fmt.Errorf("configs[%q].tls: cert_file and key_file go together", host))
			}
		}
		if c.Auth != nil {
			hc.Username, hc.Password = c.Auth.Username, c.Auth.Password
			hc.Auth, hc.IdentityToken = c.Auth.Auth, c.Auth.IdentityToken
		}
		h.Configs[host] = hc
	}
	if err := errors.Join(errs...); err != nil {
		return Hosts{}, fmt.Errorf("registries file %s: %w", path, err)
	}
	return h, nil
}

// endpoint is one place a registry's content is fetched from.
type endpoint struct {
	host string // host[:port]
	// http: plain HTTP only (an "http://" mirror). Otherwise HTTPS, and
	// plain HTTP too for a loopback host, as Docker allows (127.0.0.0/8 is
	// an insecure registry by default).
	http   bool
	mirror bool
}

// String is a mirror's URL, or the registry's host (reached over HTTPS, or
// plain HTTP too when on loopback).
func (e endpoint) String() string {
	switch {
	case !e.mirror:
		return e.host
	case e.http:
		return "http://" + e.host
	}
	return "https://" + e.host
}

// parseEndpoint parses a mirror endpoint: [http[s]://]host[:port][/v2].
func parseEndpoint(s string) (endpoint, error) {
	raw := s
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return endpoint{}, fmt.Errorf("endpoint %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("endpoint %q: must be a scheme and host[:port] only", raw)
	}
	switch strings.TrimSuffix(u.Path, "/") {
	case "", "/v2":
	default:
		return endpoint{}, fmt.Errorf("endpoint %q: a path (%s) is not supported; give the registry's root", raw, u.Path)
	}
	return endpoint{host: u.Host, http: u.Scheme == "http", mirror: true}, nil
}

// endpoints are where reg (a registry as written in a reference:
// "docker.io", "registry:5000") is fetched from, in order: its mirrors (or
// those of "*" when it has none), then reg itself, at upstream (the host
// requests go to, "index.docker.io" for docker.io).
func (h Hosts) endpoints(reg, upstream string) []endpoint {
	m, ok := h.Mirrors[reg]
	if !ok && reg == "docker.io" {
		m, ok = h.Mirrors["index.docker.io"]
	}
	if !ok {
		m = h.Mirrors["*"]
	}
	var out []endpoint
	for _, s := range m.Endpoints {
		ep, err := parseEndpoint(s)
		if err != nil || ep.host == upstream && !ep.http {
			continue // checked by LoadHosts; the registry itself comes last anyway
		}
		out = append(out, ep)
	}
	return append(out, endpoint{host: upstream})
}

// config returns the configuration of an endpoint: its host's; for the
// registry itself, also the entry under name, the registry as references
// write it ("docker.io"). A mirror never gets the registry's entry: its
// credentials are not the mirror's to see.
func (h Hosts) config(ep endpoint, name string) HostConfig {
	if c, ok := h.Configs[ep.host]; ok {
		return c
	}
	if ep.mirror {
		return HostConfig{}
	}
	return h.Configs[name]
}

// isLoopback reports whether host[:port] is localhost or a loopback address.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// tlsConfig builds the client TLS configuration of a host.
func tlsConfig(c HostConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // the operator's choice, per host
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// newHTTPTransport is the HTTP transport of one host: its TLS, and enough
// idle connections for the parallel layer downloads.
func newHTTPTransport(c HostConfig, parallel int) (*http.Transport, error) {
	tc, err := tlsConfig(c)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   parallel + 2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		// Blobs are compressed already, and their sizes and offsets
		// (Range) must be those of the blob.
		DisableCompression: true,
		ReadBufferSize:     256 << 10,
	}, nil
}

// schemeGuard refuses requests to host over a scheme it may not use, so that
// go-containerregistry's HTTPS-then-HTTP ping neither downgrades an HTTPS
// registry nor tries HTTPS on an "http://" mirror for long.
type schemeGuard struct {
	host         string
	https, plain bool
	inner        http.RoundTripper
}

func (g *schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == g.host && (r.URL.Scheme == "https" && !g.https || r.URL.Scheme == "http" && !g.plain) {
		if g.plain {
			return nil, fmt.Errorf("not trying https: %s is a plain-HTTP mirror", g.host)
		}
		return nil, fmt.Errorf("not trying plain HTTP for %s: only loopback registries and http:// mirrors of the registries file get it", g.host)
	}
	return g.inner.RoundTrip(r)
}

// LoadHosts reads a registries file in k3s's registries.yaml format. A missing
// file is an empty configuration.
func LoadHosts(path string) (Hosts, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Hosts{}, nil
	}
	if err != nil {
		return Hosts{}, fmt.Errorf("reading registries file: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Hosts{}, nil
	}
	return parseHosts(path, data)
}
