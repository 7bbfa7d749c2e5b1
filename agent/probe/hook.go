package probe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/version"
)

// HookUserAgent is sent by httpGet lifecycle hooks unless the hook sets its own:
// kubelet's kube-lifecycle/<major>.<minor>, of the release agentd follows.
const HookUserAgent = "kube-lifecycle/" + version.Kubernetes

// RunHandler runs a postStart or preStop handler of t.Container against t, with the
// action code probes use (kubelet's lifecycle handler runner):
//
//   - exec runs the command in the container; it fails when the command cannot be
//     run or exits with a code other than 0.
//   - httpGet sends the request a probe with the same action would send (same port
//     resolution, host, scheme, headers, redirect rule, no certificate
//     verification) with HookUserAgent; it fails on a connection error and on a
//     status of 400 or more. A port name the container does not have is an error.
//   - sleep waits; it fails when ctx ends first, as kubelet's.
//   - tcpSocket is not a lifecycle handler (kubelet rejects it, and so does spec).
//
// Only ctx bounds the handler (kubelet gives hooks no timeout of their own): the
// caller passes the rest of the grace period for preStop. message is the command's
// output or the response body, at most 10 KiB, set also when err is not nil so that
// it can go into the event; it is empty when there was nothing to read. Safe for
// concurrent use.
func RunHandler(ctx context.Context, t Target, h *corev1.LifecycleHandler) (message string, err error) {
	return runHandler(ctx, t, h, RealClock{})
}

// runHandler is RunHandler with the clock of sleep handlers as a parameter, so that
// tests need not sleep.
func runHandler(ctx context.Context, t Target, h *corev1.LifecycleHandler, clock Clock) (string, error) {
	switch {
	case h == nil:
		return "", errors.New("lifecycle handler is not set")
	case h.Exec != nil:
		return hookExec(ctx, h.Exec, t)
	case h.HTTPGet != nil:
		return hookHTTP(ctx, h.HTTPGet, t)
	case h.Sleep != nil:
		return "", hookSleep(ctx, time.Duration(h.Sleep.Seconds)*time.Second, clock)
	case h.TCPSocket != nil:
		return "", errors.New("tcpSocket is not supported as a lifecycle handler")
	}
	return "", errors.New("lifecycle handler has no exec, httpGet or sleep action")
}

func hookExec(ctx context.Context, a *corev1.ExecAction, t Target) (string, error) {
	cmd := strings.Join(a.Command, " ")
	code, out, err := execIn(ctx, t, a.Command)
	if err != nil {
		return out, fmt.Errorf("running command %q: %w", cmd, err)
	}
	if code != 0 {
		return out, fmt.Errorf("command %q exited with code %d", cmd, code)
	}
	return out, nil
}

func hookHTTP(ctx context.Context, a *corev1.HTTPGetAction, t Target) (string, error) {
	req, err := newHTTPGetRequest(ctx, a, t, HookUserAgent)
	if err != nil {
		return "", fmt.Errorf("httpGet hook: %w", err)
	}
	res, body, err := getHTTP(req, t, 0)
	if err != nil {
		return "", err // net/http's error names the method and the URL
	}
	if res.StatusCode < http.StatusOK || res.StatusCode >= http.StatusBadRequest {
		return string(body), fmt.Errorf("HTTP GET %s: %s", req.URL, res.Status)
	}
	return string(body), nil
}

func hookSleep(ctx context.Context, d time.Duration, clock Clock) error {
	if d <= 0 {
		return nil
	}
	timer := clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sleep of %s interrupted: %w", d, context.Cause(ctx))
	}
}
