package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/network"
)

// portsNetwork records what it is asked to set up.
type portsNetwork struct {
	PodNetwork
	reserved []uint16
	setup    []network.PortMapping
	plain    bool
}

func (f *portsNetwork) Setup(context.Context, string, string) (string, error) {
	f.plain = true
	return "10.0.0.2", nil
}

func (f *portsNetwork) SetupWithPorts(_ context.Context, _, _ string, ports []network.PortMapping) (string, error) {
	f.setup = ports
	return "10.0.0.2", nil
}

func (f *portsNetwork) ReservedHostPorts() []uint16 { return f.reserved }

func hostPortPod(hostNetwork bool, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{
		HostNetwork:    hostNetwork,
		InitContainers: []corev1.Container{{Name: "i", Ports: []corev1.ContainerPort{{ContainerPort: 1, HostPort: 18001}}}},
		Containers:     []corev1.Container{{Name: "a"}, {Name: "b", Ports: ports}},
	}}
}

func TestSetupPodNetworkHostPorts(t *testing.T) {
	ctx := context.Background()
	f := &portsNetwork{reserved: []uint16{2379, 10253}}
	pod := hostPortPod(false, corev1.ContainerPort{ContainerPort: 80}, corev1.ContainerPort{ContainerPort: 80, HostPort: 18080, Protocol: corev1.ProtocolUDP, HostIP: "127.0.0.1"})
	if _, err := setupPodNetwork(ctx, f, pod, "/ns"); err != nil {
		t.Fatal(err)
	}
	want := []network.PortMapping{{HostPort: 18080, ContainerPort: 80, Protocol: "UDP", HostIP: "127.0.0.1"}}
	if f.plain || len(f.setup) != 1 || f.setup[0] != want[0] {
		t.Errorf("set up with %v (plain %v), want %v", f.setup, f.plain, want)
	}

	// hostNetwork pods and pods without host ports: plain Setup.
	for _, p := range []*corev1.Pod{hostPortPod(true, corev1.ContainerPort{ContainerPort: 80, HostPort: 80}), hostPortPod(false)} {
		f := &portsNetwork{}
		if _, err := setupPodNetwork(ctx, f, p, "/ns"); err != nil || !f.plain || f.setup != nil {
			t.Errorf("hostNetwork %v: plain %v ports %v err %v", p.Spec.HostNetwork, f.plain, f.setup, err)
		}
	}

	// The metrics port: refused naming the field, nothing set up.
	f = &portsNetwork{reserved: []uint16{2379, 10253}}
	_, err := setupPodNetwork(ctx, f, hostPortPod(false, corev1.ContainerPort{ContainerPort: 80, HostPort: 10253, Protocol: corev1.ProtocolTCP}), "/ns")
	if err == nil || !strings.Contains(err.Error(), "spec.containers[1].ports[0].hostPort: Forbidden: 10253 is one of agentd's own ports") {
		t.Errorf("error %v", err)
	}
	if f.plain || f.setup != nil {
		t.Error("a refused pod was set up")
	}
}

func TestSetupNetworkWithPorts(t *testing.T) {
	ctx := context.Background()
	f := &portsNetwork{}
	if _, err := setupNetworkWithPorts(ctx, f, "uid", "/ns", nil); err != nil || !f.plain {
		t.Errorf("no ports: plain %v, %v", f.plain, err)
	}
	f = &portsNetwork{}
	ports := []network.PortMapping{{HostPort: 12000, ContainerPort: 80, Protocol: "TCP"}}
	if _, err := setupNetworkWithPorts(ctx, f, "uid", "/ns", ports); err != nil || f.plain || len(f.setup) != 1 {
		t.Errorf("ports: plain %v setup %v, %v", f.plain, f.setup, err)
	}
	type plainOnly struct{ PodNetwork }
	if _, err := setupNetworkWithPorts(ctx, plainOnly{f}, "uid", "/ns", ports); !errors.Is(err, errNoHostPorts) {
		t.Errorf("a network without host ports: %v", err)
	}
}
