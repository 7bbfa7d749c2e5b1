package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/probe"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
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
// startup probe, as kubelet's). Results go to the status manager; without a
// probe a running container counts as started and ready (state.Readiness).
func (a *Agent) startProbes(pod *corev1.Pod, c *corev1.Container, cr *ctrRecord, startedAt time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	a.mu.Lock()
	if cr.probeCancel != nil {
		cr.probeCancel()
	}
	cr.probeCancel = cancel
	a.mu.Unlock()
	a.status.ResetProbeResults(cr.id)
	obj := state.PodObject(pod, c.Name)
	target := a.probeTarget(pod, c, cr.id)
	target.StartedAt = startedAt
	set := probe.NewSet(target, func(kind probe.Kind, r probe.Result, msg string) {
		switch kind {
		case probe.Startup:
			a.status.SetContainerStartup(cr.id, r == probe.Success)
			if r == probe.Success {
				a.poke() // a started sidecar lets the next init container start
			}
			if r == probe.Failure {
				a.restartContainer(pod, c, cr, spec.ProbeTerminationGracePeriod(pod, c.StartupProbe), killMessage(pod, c, "startup"))
			}
		case probe.Readiness:
			a.status.SetContainerReadiness(cr.id, r == probe.Success)
		case probe.Liveness:
			if r != probe.Failure {
				return
			}
			a.restartContainer(pod, c, cr, spec.ProbeTerminationGracePeriod(pod, c.LivenessProbe), killMessage(pod, c, "liveness"))
		}
		a.changed(pod.UID)
	}, a.probeClock)
	// An Unhealthy event per failed attempt, as kubelet's prober records them;
	// the recorder folds the repeats ("x5 over 20s").
	set.OnAttempt(func(kind probe.Kind, r probe.Result, msg string) {
		switch r {
		case probe.Failure:
			a.events.Event(obj, state.Warning, "Unhealthy", unhealthyMessage(kind, msg))
		case probe.Unknown:
			a.events.Event(obj, state.Warning, "Unhealthy", erroredMessage(kind, msg))
		}
	})
	a.mu.Lock()
	cr.probes = set
	a.mu.Unlock()
	go set.Run(ctx)
}

// unhealthyMessage is kubelet's Unhealthy message for a failed attempt:
// "Readiness probe failed: <output>".
func unhealthyMessage(kind probe.Kind, output string) string {
	return kind.String() + " probe failed: " + output
}

// erroredMessage is kubelet's Unhealthy message for an attempt that could not
// be run (prober.go): "Readiness probe errored and resulted in unknown state: <error>".
func erroredMessage(kind probe.Kind, err string) string {
	return kind.String() + " probe errored and resulted in unknown state: " + err
}

// killMessage is the message of the Killing event of a container whose
// liveness or startup probe failed, as kubelet's: "will be restarted" unless
// its restart policy is Never; a sidecar's names it an init container.
func killMessage(pod *corev1.Pod, c *corev1.Container, probe string) string {
	_, isInit := containerSpec(pod, c.Name)
	if isInit { // a sidecar: kubelet names it so, and always restarts it
		return fmt.Sprintf("Init container %s failed %s probe", c.Name, probe)
	}
	msg := fmt.Sprintf("Container %s failed %s probe", c.Name, probe)
	if runtime.RestartPolicy(pod, c, isInit) != protocol.RestartNever {
		msg += ", will be restarted"
	}
	return msg
}

// runHook runs a postStart or preStop handler (package probe: the same actions
// as probes) within ctx.
func (a *Agent) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler) (string, error) {
	return probe.RunHandler(ctx, a.probeTarget(pod, c, id), h)
}
