// Package probe runs a container's liveness, readiness and startup probes with
// kubelet's semantics (pkg/kubelet/prober): Probe runs one attempt of an exec,
// httpGet or tcpSocket probe; a Worker runs one probe periodically and applies
// initialDelaySeconds, periodSeconds, successThreshold and failureThreshold; a Set
// runs the probes of one container and holds liveness and readiness back until the
// startup probe has succeeded. RunHandler runs a postStart or preStop hook's
// handler with the same exec and httpGet code (action.go), so that a probe and a
// hook with the same action reach the same address with the same request.
//
// The agent runs the probes, not the monitors: while the agent is down nothing is
// probed, and a worker started for an adopted container measures initialDelaySeconds
// from the container's start (Target.StartedAt), not from the agent's.
//
// Settings that change it: only the probes of the pod spec (timeoutSeconds,
// periodSeconds, initialDelaySeconds, thresholds and the action) and the
// container's lifecycle handlers. Zero values get kubelet's defaults, so a spec
// that skipped defaulting still probes sensibly.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/version"
)

// Result is the outcome of a probe attempt, or the thresholded state of a Worker.
type Result int

const (
	// Unknown: the probe could not be run (no pod IP, a port the container does not
	// name, the runtime could not exec, the caller gave up): kubelet's prober error.
	// A Worker discards it from its thresholds, as kubelet does, and reports the
	// attempt (OnAttempt) unless the caller gave up; it is also a startup probe's
	// state until the first threshold is reached.
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

// Target is the container a probe or a lifecycle hook runs against.
type Target struct {
	ContainerID string
	PodIP       string            // the default host of httpGet and tcpSocket actions
	Container   *corev1.Container // its ports resolve named ports; its startupProbe gates the other two probes
	Exec        Execer            // runs exec probes and hooks
	Dial        Dialer            // dials httpGet, tcpSocket and grpc probes and httpGet hooks; nil: ProbeDialer
	// StartedAt is when the container started; initialDelaySeconds counts from it.
	// Zero: from when the Worker's Run starts. Reset sets it to the clock's now.
	StartedAt time.Time
}

const (
	// UserAgent is sent by httpGet probes unless the probe sets its own:
	// kubelet's kube-probe/<major>.<minor>, of the release agentd follows.
	UserAgent = "kube-probe/" + version.Kubernetes
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
		r, msg = probeGRPC(pctx, h.GRPC, t, timeout)
	default:
		return Unknown, fmt.Sprintf("%s probe has no exec, httpGet, tcpSocket or grpc action", kind)
	}
	if ctx.Err() != nil {
		// The caller gave up (the worker stops): that says nothing about the container.
		return Unknown, fmt.Sprintf("%s probe canceled: %v", kind, context.Cause(ctx))
	}
	return r, msg
}

func probeExec(ctx context.Context, a *corev1.ExecAction, t Target, timeout time.Duration) (Result, string) {
	code, out, err := execIn(ctx, t, a.Command)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// kubelet's ExecProbeTimeout (GA): a command that outlives
			// timeoutSeconds is a failure, not an error.
			return Failure, fmt.Sprintf("command %q timed out after %s", strings.Join(a.Command, " "), timeout)
		}
		return Unknown, fmt.Sprintf("exec probe: %v", err)
	}
	if code == 0 {
		return Success, out
	}
	if out == "" {
		return Failure, fmt.Sprintf("command %q exited with code %d", strings.Join(a.Command, " "), code)
	}
	return Failure, out
}

func probeHTTP(ctx context.Context, a *corev1.HTTPGetAction, t Target, timeout time.Duration) (Result, string) {
	req, err := newHTTPGetRequest(ctx, a, t, UserAgent)
	if err != nil {
		// No request to send (a port name the container does not have, a URL that
		// does not parse): kubelet's prober error, not the container's failure.
		return Unknown, "httpGet probe: " + err.Error()
	}
	res, body, err := getHTTP(req, t, timeout)
	if err != nil {
		// A refused connection or a timeout is the container's failure.
		return Failure, failureMessage(err, timeout)
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

func probeTCP(ctx context.Context, a *corev1.TCPSocketAction, t Target, timeout time.Duration) (Result, string) {
	addr, err := address(a.Host, a.Port, t)
	if err != nil { // as httpGet's: the probe could not be run
		return Unknown, "tcpSocket probe: " + err.Error()
	}
	if err := dialTCP(ctx, t, addr); err != nil {
		return Failure, failureMessage(err, timeout)
	}
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
