package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The actions that probes (Probe) and lifecycle hooks (RunHandler) share: a command
// run in the container, an HTTP GET to the pod, a TCP connection to it. Both send
// the same request to the same address; they differ only in how they read the
// outcome (a Result, or an error) and in their User-Agent, as kubelet's prober and
// lifecycle handler runner share httpprobe.NewRequestForHTTPGetAction.

var (
	// errNoHost: there is no address to send the action to yet. A probe reports
	// Unknown for it (nothing to probe), a hook fails.
	errNoHost = errors.New("the pod has no IP yet and no host is set")
	// errNoRuntime: the Target has no Execer.
	errNoRuntime = errors.New("no runtime to exec in the container")
)

// resolvePort returns the port number of an action's port: a number, the name of
// one of the container's ports, or (as kubelet accepts) a number written as a
// string. A name the container does not have is an error, for probes and hooks alike.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	port := 0
	switch p.Type {
	case intstr.Int:
		port = int(p.IntVal)
	case intstr.String:
		found := false
		if c != nil {
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					port, found = int(cp.ContainerPort), true
					break
				}
			}
		}
		if !found {
			n, err := strconv.Atoi(p.StrVal)
			if err != nil {
				return 0, fmt.Errorf("port %q is not a port number nor the name of one of the container's ports (%s)", p.StrVal, portNames(c))
			}
			port = n
		}
	default:
		return 0, fmt.Errorf("port %v has no type", p)
	}
	if port < 1 || port > 65535 {
		return 0, fmt.Errorf("port %d is not between 1 and 65535", port)
	}
	return port, nil
}

func portNames(c *corev1.Container) string {
	var names []string
	if c != nil {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				names = append(names, strconv.Quote(cp.Name))
			}
		}
	}
	if len(names) == 0 {
		return "it names none"
	}
	return "named: " + strings.Join(names, ", ")
}

// address returns the host:port an httpGet or tcpSocket action reaches: the
// action's host, else the pod IP, and its port resolved against t.Container. The
// port is resolved first, so that a wrong port is reported even before the pod
// has an IP.
func address(host string, port intstr.IntOrString, t Target) (string, error) {
	n, err := resolvePort(port, t.Container)
	if err != nil {
		return "", err
	}
	if host == "" {
		host = t.PodIP
	}
	if host == "" {
		return "", errNoHost
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// httpGetURL builds the URL of an httpGet action as kubelet does: scheme HTTP
// unless set (either case), and a path that does not parse kept as is.
func httpGetURL(a *corev1.HTTPGetAction, t Target) (*url.URL, error) {
	addr, err := address(a.Host, a.Port, t)
	if err != nil {
		return nil, err
	}
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(a.Path)
	if err != nil {
		u = &url.URL{Path: a.Path}
	}
	u.Scheme = scheme
	u.Host = addr
	return u, nil
}

// requestHeaders returns the action's headers with kubelet's defaults: userAgent
// and Accept: */* unless set; an Accept set to "" removes it.
func requestHeaders(list []corev1.HTTPHeader, userAgent string) http.Header {
	h := make(http.Header, len(list)+2)
	for _, hdr := range list {
		h.Add(hdr.Name, hdr.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", userAgent)
	}
	if _, ok := h["Accept"]; !ok {
		h.Set("Accept", "*/*")
	} else if h.Get("Accept") == "" {
		h.Del("Accept")
	}
	return h
}

// newHTTPGetRequest is the request of an httpGet action; a Host header sets the
// request's Host, as kubelet's.
func newHTTPGetRequest(ctx context.Context, a *corev1.HTTPGetAction, t Target, userAgent string) (*http.Request, error) {
	u, err := httpGetURL(a, t)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header = requestHeaders(a.HTTPHeaders, userAgent)
	req.Host = req.Header.Get("Host")
	return req, nil
}

// getHTTP sends req through t's dialer and returns the response, whose body is
// closed, and the first maxOutput bytes of that body. timeout bounds the whole
// exchange and the TLS handshake (0: only req's context does).
func getHTTP(req *http.Request, t Target, timeout time.Duration) (*http.Response, []byte, error) {
	transport := &http.Transport{
		// Probes and hooks talk to the pod directly: never through a proxy from the
		// agent's environment, never kept alive, and (as kubelet) without verifying
		// a certificate that no CA of the node's could have signed anyway.
		Proxy:               nil,
		DialContext:         dialerOf(t),
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		TLSHandshakeTimeout: timeout,
		DisableKeepAlives:   true,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: timeout, CheckRedirect: sameHostRedirects}
	res, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxOutput))
	if err != nil {
		return res, nil, fmt.Errorf("reading the response body of GET %s: %w", req.URL, err)
	}
	return res, body, nil
}

// sameHostRedirects follows redirects to the action's own host only, as kubelet
// does: following one to another host would let a pod make the agent call anything.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

// execIn runs cmd in t's container and returns its exit code and the first
// maxOutput bytes of its stdout and stderr, interleaved as written.
func execIn(ctx context.Context, t Target, cmd []string) (int, string, error) {
	if t.Exec == nil {
		return -1, "", errNoRuntime
	}
	out := &limitedBuffer{limit: maxOutput}
	code, err := t.Exec.Exec(ctx, t.ContainerID, cmd, out, out)
	return code, out.String(), err
}

// dialTCP connects to addr through t's dialer and closes the connection at once:
// connecting is the whole action.
func dialTCP(ctx context.Context, t Target, addr string) error {
	conn, err := dialerOf(t)(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	_ = conn.Close()
	return nil
}

func dialerOf(t Target) Dialer {
	if t.Dial != nil {
		return t.Dial
	}
	return ProbeDialer().DialContext
}

// limitedBuffer keeps the first limit bytes written to it and drops the rest
// without error, so that a chatty command is neither blocked nor failed.
type limitedBuffer struct {
	limit int
	mu    sync.Mutex // guards buf; stdout and stderr may be written concurrently
	buf   []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
