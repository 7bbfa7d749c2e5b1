package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/agentd-project/agentd/agent/network"
)

// hostPortNetwork is a pod network that forwards host ports (network.Network).
// It is asked for apart from PodNetwork so that networks without host ports
// (tests' fakes) still serve the pods that have none.
type hostPortNetwork interface {
	SetupWithPorts(ctx context.Context, podUID, netnsPath string, ports []network.PortMapping) (string, error)
	ReservedHostPorts() []uint16
}

var _ hostPortNetwork = (*network.Network)(nil)

// podHostPort is one host port of a pod and the field that asks for it.
type podHostPort struct {
	network.PortMapping
	field *field.Path
}

// podHostPorts lists the host ports of a pod on the pod network: the ports of
// its app containers with a hostPort, as kubelet forwards them (init
// containers' are not; spec validation refuses them).
func podHostPorts(pod *corev1.Pod) []podHostPort {
	if pod.Spec.HostNetwork {
		return nil
	}
	var out []podHostPort
	for i, c := range pod.Spec.Containers {
		for j, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			out = append(out, podHostPort{
				PortMapping: network.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: string(p.Protocol), HostIP: p.HostIP},
				field:       field.NewPath("spec", "containers").Index(i).Child("ports").Index(j).Child("hostPort"),
			})
		}
	}
	return out
}

// setupPodNetwork attaches a pod to the pod network with its host ports. A
// host port agentd keeps for itself is refused here, naming the field; one
// that another pod or a process of the node has is refused by the network,
// and the pod waits (its sandbox is retried) until the port is free: two pods
// never share a host port, the first keeps it.
func setupPodNetwork(ctx context.Context, n PodNetwork, pod *corev1.Pod, netnsPath string) (string, error) {
	ports := podHostPorts(pod)
	if len(ports) == 0 {
		return n.Setup(ctx, string(pod.UID), netnsPath)
	}
	hn, ok := n.(hostPortNetwork)
	if !ok {
		return "", fmt.Errorf("%s: %w", ports[0].field, errNoHostPorts)
	}
	reserved := hn.ReservedHostPorts()
	var errs []error
	mappings := make([]network.PortMapping, 0, len(ports))
	for _, p := range ports {
		if slices.Contains(reserved, uint16(p.HostPort)) {
			errs = append(errs, field.Forbidden(p.field, fmt.Sprintf(
				"%d is one of agentd's own ports (%v): a hostPort is forwarded also for the node's connections to itself and would take agentd's traffic",
				p.HostPort, reserved)))
		}
		mappings = append(mappings, p.PortMapping)
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return setupNetworkWithPorts(ctx, n, string(pod.UID), netnsPath, mappings)
}

// errNoHostPorts: the pod network (a test's fake) cannot forward host ports.
var errNoHostPorts = errors.New("the pod network cannot forward host ports")

// setupNetworkWithPorts attaches a pod to the pod network with host ports
// (CRI's PodSandboxConfig.port_mappings): network.Network.SetupWithPorts,
// which refuses agentd's own ports (network.ErrHostPortReserved) and ports
// another pod or a process of the node has (network.ErrHostPortInUse), and
// attaches nothing then. No ports is a plain Setup.
func setupNetworkWithPorts(ctx context.Context, n PodNetwork, podUID, netnsPath string, ports []network.PortMapping) (string, error) {
	if len(ports) == 0 {
		return n.Setup(ctx, podUID, netnsPath)
	}
	hn, ok := n.(hostPortNetwork)
	if !ok {
		return "", errNoHostPorts
	}
	return hn.SetupWithPorts(ctx, podUID, netnsPath, ports)
}
