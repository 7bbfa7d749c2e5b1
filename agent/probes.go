package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/probe"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
)

// execer runs probe and hook commands in a container through its monitor.
type execer struct{ rt runtime.Interface }

func (e execer) Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error) {
	return e.rt.Exec(ctx, id, &protocol.ExecRequest{Args: cmd}, runtime.ExecIO{Stdout: stdout, Stderr: stderr})
}

// podDialer reaches a pod's ports: through its IP on the pod network, else (no
// network, or the pod's own loopback) from inside its network namespace.
func (a *Agent) podDialer(pod *corev1.Pod) probe.Dialer {
	a.mu.Lock()
	var netns string
	if pr := a.pods[pod.UID]; pr != nil && pr.sandbox != nil {
		netns = pr.sandbox.NetNS
	}
	a.mu.Unlock()
	if netns == "" || pod.Spec.HostNetwork {
		var d net.Dialer
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return runtime.DialInNetns(ctx, netns, network, addr)
	}
}

func (a *Agent) probeTarget(pod *corev1.Pod, c *corev1.Container, id string) probe.Target {
	a.mu.Lock()
	ip := ""
	if pr := a.pods[pod.UID]; pr != nil && pr.sandbox != nil {
		ip = pr.sandbox.PodIP
	}
	a.mu.Unlock()
	if ip == "" || pod.Spec.HostNetwork {
		ip = "127.0.0.1"
	}
	return probe.Target{ContainerID: id, PodIP: ip, Container: c, Exec: execer{a.rt}, Dial: a.podDialer(pod)}
}

// startProbes starts the container's probes (liveness and readiness wait for the
// startup probe, as kubelet's); without a probe a container counts as started and
// ready once it runs. Results go to the status manager.
func (a *Agent) startProbes(pod *corev1.Pod, c *corev1.Container, cr *ctrRecord, startedAt time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	a.mu.Lock()
	if cr.probeCancel != nil {
		cr.probeCancel()
	}
	cr.probeCancel = cancel
	a.mu.Unlock()
	started := c.StartupProbe == nil
	a.status.SetProbeResults(cr.id, started, c.ReadinessProbe == nil && started)
	obj := state.PodObject(pod, c.Name)
	target := a.probeTarget(pod, c, cr.id)
	target.StartedAt = startedAt
	set := probe.NewSet(target, func(kind probe.Kind, r probe.Result, msg string) {
		switch kind {
		case probe.Startup:
			a.status.SetContainerStartup(cr.id, r == probe.Success, c.ReadinessProbe != nil)
			if r == probe.Failure {
				a.events.Eventf(obj, state.Warning, "Unhealthy", "Startup probe failed: %s", msg)
				a.events.Eventf(obj, state.Normal, "Killing", "Container %s failed startup probe, will be restarted", c.Name)
				go func() { _, _ = a.rt.Kill(context.Background(), cr.id, probeGrace(pod, c.StartupProbe)) }()
			}
		case probe.Readiness:
			a.status.SetContainerReadiness(cr.id, r == probe.Success)
			if r == probe.Failure && msg != "" && msg != probe.ResetMessage {
				a.events.Eventf(obj, state.Warning, "Unhealthy", "Readiness probe failed: %s", msg)
			}
		case probe.Liveness:
			if r != probe.Failure {
				return
			}
			a.events.Eventf(obj, state.Warning, "Unhealthy", "Liveness probe failed: %s", msg)
			a.events.Eventf(obj, state.Normal, "Killing", "Container %s failed liveness probe, will be restarted", c.Name)
			go func() { _, _ = a.rt.Kill(context.Background(), cr.id, probeGrace(pod, c.LivenessProbe)) }()
		}
		a.changed(pod.UID)
	}, a.probeClock)
	a.mu.Lock()
	cr.probes = set
	a.mu.Unlock()
	go set.Run(ctx)
}

func probeGrace(pod *corev1.Pod, p *corev1.Probe) time.Duration {
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	return gracePeriod(pod)
}

// runHook runs a postStart or preStop handler: exec in the container, an HTTP GET to
// the pod, or a sleep. limit bounds it (0: no bound but the hook's own).
func (a *Agent) runHook(pod *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler, limit time.Duration) (string, error) {
	ctx := context.Background()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	switch {
	case h.Exec != nil:
		var out bytes.Buffer
		code, err := a.rt.Exec(ctx, id, &protocol.ExecRequest{Args: h.Exec.Command}, runtime.ExecIO{Stdout: &out, Stderr: &out})
		if err != nil {
			return out.String(), err
		}
		if code != 0 {
			return out.String(), fmt.Errorf("command %q exited with %d", h.Exec.Command, code)
		}
		return out.String(), nil
	case h.HTTPGet != nil:
		t := a.probeTarget(pod, c, id)
		host := h.HTTPGet.Host
		if host == "" {
			host = t.PodIP
		}
		port := h.HTTPGet.Port.IntValue()
		if port == 0 {
			for _, p := range c.Ports {
				if p.Name == h.HTTPGet.Port.StrVal {
					port = int(p.ContainerPort)
				}
			}
		}
		client := &http.Client{Transport: &http.Transport{DialContext: t.Dial, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // as kubelet: hooks do not verify
		scheme := "http"
		if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), h.HTTPGet.Path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			req.Header.Add(hd.Name, hd.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return string(body), fmt.Errorf("HTTP GET %s: %s", url, resp.Status)
		}
		return "", nil
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return "", nil
	}
	return "", fmt.Errorf("hook has no handler")
}
