// Package probe runs a container's liveness, readiness and startup probes with
// kubelet's semantics (pkg/kubelet/prober): Probe runs one attempt of an exec,
// httpGet or tcpSocket probe; a Worker runs one probe periodically and applies
// initialDelaySeconds, periodSeconds, successThreshold and failureThreshold; a Set
// runs the probes of one container and holds liveness and readiness back until the
// startup probe has succeeded.
//
// The agent runs the probes, not the monitors: while the agent is down nothing is
// probed, and a worker started for an adopted container measures initialDelaySeconds
// from the container's start (Target.StartedAt), not from the agent's.
//
// Settings that change it: only the probes of the pod spec (timeoutSeconds,
// periodSeconds, initialDelaySeconds, thresholds and the action). Zero values get
// kubelet's defaults, so a spec that skipped defaulting still probes sensibly.
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

// Result is the outcome of a probe attempt, or the thresholded state of a Worker.
type Result int

const (
	// Unknown: the probe could not be run (no pod IP, the runtime could not exec, the
	// caller gave up). A Worker discards it, as kubelet discards a prober error; it is
	// also a startup probe's state until the first threshold is reached.
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Unknown:
		return "Unknown"
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	}
	return "Result(" + strconv.Itoa(int(r)) + ")"
}

// Kind is which of a container's probes is run.
type Kind int

const (
	Liveness Kind = iota + 1
	Readiness
	Startup
)

// String returns the name kubelet uses in events ("Liveness probe failed: …").
func (k Kind) String() string {
	switch k {
	case Liveness:
		return "Liveness"
	case Readiness:
		return "Readiness"
	case Startup:
		return "Startup"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Execer runs a command in a running container and waits for it; agentd's runtime
// provides it. An exit code of 0 is a success. It must write the command's output to
// stdout and stderr (which may be the same writer; both are safe for concurrent
// use), and return promptly with ctx's error once ctx is done: the probe's timeout
// is enforced through ctx. A non-nil error means the command could not be run (or
// was stopped by ctx), not that it failed. Exec is called from the worker's
// goroutine, one call at a time per worker, and concurrently across workers.
type Execer interface {
	Exec(ctx context.Context, containerID string, cmd []string, stdout, stderr io.Writer) (exitCode int, err error)
}

// Dialer dials inside the pod's network namespace; agentd provides it, tests use
// (&net.Dialer{}).DialContext. It must honour ctx's deadline. A nil Dialer dials from
// the agent's own namespace with ProbeDialer.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Target is the container a probe runs against.
type Target struct {
	ContainerID string
	PodIP       string            // the default host of httpGet and tcpSocket probes
	Container   *corev1.Container // its ports resolve named probe ports; its startupProbe gates the other two
	Exec        Execer            // runs exec probes
	Dial        Dialer            // dials httpGet and tcpSocket probes; nil: ProbeDialer
	// StartedAt is when the container started; initialDelaySeconds counts from it.
	// Zero: from when the Worker's Run starts. Reset sets it to the clock's now.
	StartedAt time.Time
}

const (
	// UserAgent is sent by httpGet probes unless the probe sets its own, as
	// kubelet sends kube-probe/<major>.<minor>.
	UserAgent = "agentd-probe/1.0"
	// maxOutput bounds the exec output and HTTP body kept for the message, as
	// kubelet's 10 KiB.
	maxOutput = 10 << 10
	// maxRedirects is net/http's and kubelet's limit on same-host redirects.
	maxRedirects = 10
)

// Probe runs one attempt of p against t, bounded by p.TimeoutSeconds (default 1 s),
// and returns its result and a short message for an event or a log: the command's
// output, the HTTP body or status, or the error. It returns Unknown when the probe
// could not be run at all or when ctx was done before it finished. kind only names
// the probe in messages; every kind probes the same way.
func Probe(ctx context.Context, kind Kind, p *corev1.Probe, t Target) (Result, string) {
	return runProbe(ctx, kind, p, t, timeoutOf(p))
}

func timeoutOf(p *corev1.Probe) time.Duration {
	if p == nil || p.TimeoutSeconds <= 0 {
		return time.Second
	}
	return time.Duration(p.TimeoutSeconds) * time.Second
}

// runProbe is Probe with the timeout as a parameter, so that tests of timeouts need
// not wait a whole second.
func runProbe(ctx context.Context, kind Kind, p *corev1.Probe, t Target, timeout time.Duration) (Result, string) {
	if p == nil {
		return Unknown, fmt.Sprintf("%s probe is not set", kind)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		r   Result
		msg string
	)
	switch h := p.ProbeHandler; {
	case h.Exec != nil:
		r, msg = probeExec(pctx, h.Exec, t, timeout)
	case h.HTTPGet != nil:
		r, msg = probeHTTP(pctx, h.HTTPGet, t, timeout)
	case h.TCPSocket != nil:
		r, msg = probeTCP(pctx, h.TCPSocket, t, timeout)
	case h.GRPC != nil:
		return Unknown, fmt.Sprintf("%s probe: grpc probes are not supported by agentd", kind)
	default:
		return Unknown, fmt.Sprintf("%s probe has no exec, httpGet or tcpSocket action", kind)
	}
	if ctx.Err() != nil {
		// The caller gave up (the worker stops): that says nothing about the container.
		return Unknown, fmt.Sprintf("%s probe canceled: %v", kind, context.Cause(ctx))
	}
	return r, msg
}

func probeExec(ctx context.Context, a *corev1.ExecAction, t Target, timeout time.Duration) (Result, string) {
	if t.Exec == nil {
		return Unknown, "exec probe: no runtime to exec in the container"
	}
	out := &limitedBuffer{limit: maxOutput}
	code, err := t.Exec.Exec(ctx, t.ContainerID, a.Command, out, out)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// kubelet's ExecProbeTimeout (GA): a command that outlives
			// timeoutSeconds is a failure, not an error.
			return Failure, fmt.Sprintf("command %q timed out after %s", strings.Join(a.Command, " "), timeout)
		}
		return Unknown, fmt.Sprintf("exec probe: %v", err)
	}
	if code == 0 {
		return Success, out.String()
	}
	if out.Len() == 0 {
		return Failure, fmt.Sprintf("command %q exited with code %d", strings.Join(a.Command, " "), code)
	}
	return Failure, out.String()
}

func probeHTTP(ctx context.Context, a *corev1.HTTPGetAction, t Target, timeout time.Duration) (Result, string) {
	port, err := resolvePort(a.Port, t.Container)
	if err != nil {
		return Failure, "httpGet probe: " + err.Error()
	}
	host := a.Host
	if host == "" {
		host = t.PodIP
	}
	if host == "" {
		return Unknown, "httpGet probe: the pod has no IP yet and the probe sets no host"
	}
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probeURL(scheme, host, port, a.Path).String(), nil)
	if err != nil {
		return Failure, "httpGet probe: " + err.Error()
	}
	req.Header = probeHeaders(a.HTTPHeaders)
	req.Host = req.Header.Get("Host")

	transport := &http.Transport{
		// Probes talk to the pod directly: never through a proxy from the agent's
		// environment, never kept alive, and (as kubelet) without verifying a
		// certificate that no CA of the node's could have signed anyway.
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
		// A refused connection or a timeout is the container's failure.
		return Failure, failureMessage(err, timeout)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxOutput))
	if err != nil {
		return Failure, fmt.Sprintf("httpGet probe: reading the response body: %v", err)
	}
	switch {
	case res.StatusCode >= http.StatusOK && res.StatusCode < http.StatusMultipleChoices:
		return Success, string(body)
	case res.StatusCode >= http.StatusMultipleChoices && res.StatusCode < http.StatusBadRequest:
		// A redirect that was not followed (to another host): kubelet's warning,
		// which counts as a success.
		return Success, fmt.Sprintf("Probe terminated redirects to %q, Response body: %s", res.Header.Get("Location"), body)
	}
	// kubelet keeps this exact wording (kubernetes#99425); tools match on it.
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", res.StatusCode)
}

// probeURL builds the URL as kubelet does: a path that does not parse is kept as is.
func probeURL(scheme, host string, port int, path string) *url.URL {
	u, err := url.Parse(path)
	if err != nil {
		u = &url.URL{Path: path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	return u
}

// probeHeaders returns the probe's headers with kubelet's defaults: its User-Agent
// and Accept: */* unless set; an Accept set to "" removes it.
func probeHeaders(list []corev1.HTTPHeader) http.Header {
	h := make(http.Header, len(list)+2)
	for _, hdr := range list {
		h.Add(hdr.Name, hdr.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", UserAgent)
	}
	if _, ok := h["Accept"]; !ok {
		h.Set("Accept", "*/*")
	} else if h.Get("Accept") == "" {
		h.Del("Accept")
	}
	return h
}

// sameHostRedirects follows redirects to the probe's own host only, as kubelet does:
// following one to another host would let a pod make the agent call anything.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

func probeTCP(ctx context.Context, a *corev1.TCPSocketAction, t Target, timeout time.Duration) (Result, string) {
	port, err := resolvePort(a.Port, t.Container)
	if err != nil {
		return Failure, "tcpSocket probe: " + err.Error()
	}
	host := a.Host
	if host == "" {
		host = t.PodIP
	}
	if host == "" {
		return Unknown, "tcpSocket probe: the pod has no IP yet and the probe sets no host"
	}
	conn, err := dialerOf(t)(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return Failure, failureMessage(err, timeout)
	}
	_ = conn.Close() // connecting was the whole probe
	return Success, ""
}

// failureMessage is err's text, which says that the probe timed out when it did:
// "context deadline exceeded" alone does not tell a user which limit to raise.
func failureMessage(err error, timeout time.Duration) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Sprintf("%v (timed out after %s)", err, timeout)
	}
	return err.Error()
}

func dialerOf(t Target) Dialer {
	if t.Dial != nil {
		return t.Dial
	}
	return ProbeDialer().DialContext
}

// resolvePort returns the port number of a probe's port: a number, the name of one
// of the container's ports, or (as kubelet accepts) a number written as a string.
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

func (b *limitedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
