package network

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/spec"
)

func TestCheckPortMappings(t *testing.T) {
	got, err := CheckPortMappings([]PortMapping{
		{HostPort: 18080, ContainerPort: 80},
		{HostPort: 18080, ContainerPort: 80, Protocol: "udp"},
		{HostPort: 18081, ContainerPort: 81, HostIP: "0.0.0.0"},
		{HostPort: 18082, ContainerPort: 82, HostIP: "127.0.0.1", Protocol: "SCTP"},
	}, DefaultReservedHostPorts)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Protocol != "TCP" || got[1].Protocol != "UDP" || got[2].HostIP != "" || got[3].HostIP != "127.0.0.1" {
		t.Errorf("not normalized: %v", got)
	}
	for _, tc := range []struct {
		name  string
		ports []PortMapping
		want  string
	}{
		{"host port 0", []PortMapping{{HostPort: 0, ContainerPort: 80}}, "host port must be from 1 to 65535"},
		{"host port too big", []PortMapping{{HostPort: 70000, ContainerPort: 80}}, "host port must be from 1 to 65535"},
		{"container port", []PortMapping{{HostPort: 18080, ContainerPort: -1}}, "container port must be"},
		{"protocol", []PortMapping{{HostPort: 18080, ContainerPort: 80, Protocol: "ICMP"}}, "protocol must be TCP, UDP or SCTP"},
		{"IPv6 host IP", []PortMapping{{HostPort: 18080, ContainerPort: 80, HostIP: "::1"}}, "IPv4 address"},
		{"bad host IP", []PortMapping{{HostPort: 18080, ContainerPort: 80, HostIP: "node"}}, "IPv4 address"},
		{"duplicate", []PortMapping{{HostPort: 18080, ContainerPort: 80}, {HostPort: 18080, ContainerPort: 81, Protocol: "tcp"}}, "duplicate of 0.0.0.0:18080/TCP->80"},
		{"duplicate with host IP", []PortMapping{{HostPort: 18080, ContainerPort: 80, HostIP: "10.0.0.1"}, {HostPort: 18080, ContainerPort: 81}}, "duplicate"},
		{"etcd", []PortMapping{{HostPort: 2379, ContainerPort: 80}}, "reserved by agentd"},
		{"join", []PortMapping{{HostPort: 2377, ContainerPort: 80, Protocol: "UDP"}}, "reserved by agentd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckPortMappings(tc.ports, DefaultReservedHostPorts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	_, err = CheckPortMappings([]PortMapping{{HostPort: 10253, ContainerPort: 80}}, []uint16{10253})
	if !errors.Is(err, ErrHostPortReserved) {
		t.Errorf("metrics port: error %v, want ErrHostPortReserved", err)
	}
	// Different host IPs do not collide.
	if _, err := CheckPortMappings([]PortMapping{{HostPort: 18080, ContainerPort: 80, HostIP: "10.0.0.1"}, {HostPort: 18080, ContainerPort: 80, HostIP: "10.0.0.2"}}, nil); err != nil {
		t.Error(err)
	}
}

func TestPortMappingsCacheRoundTrip(t *testing.T) {
	ports := []PortMapping{{HostPort: 18080, ContainerPort: 80, Protocol: "TCP"}, {HostPort: 18081, ContainerPort: 81, Protocol: "UDP", HostIP: "127.0.0.1"}}
	// libcni caches the capability args as JSON and reads them back as interface values.
	var args map[string]interface{}
	b, _ := json.Marshal(capArgs(ports))
	if err := json.Unmarshal(b, &args); err != nil {
		t.Fatal(err)
	}
	back := cachedPortMappings(args)
	if !samePorts(back, ports) {
		t.Errorf("round trip: %v, want %v", back, ports)
	}
	if samePorts(back, ports[:1]) || samePorts(nil, ports) || !samePorts(nil, nil) {
		t.Error("samePorts does not compare")
	}
	if cachedPortMappings(nil) != nil || capArgs(nil) != nil {
		t.Error("no ports should be nil")
	}
}

func TestDNATChainName(t *testing.T) {
	// utils.MustFormatChainNameWithPrefix("agentd", "pod-1", "DN-")
	if got := dnatChain("agentd", "pod-1"); len(got) != 28 || !strings.HasPrefix(got, "CNI-DN-") {
		t.Errorf("dnatChain = %q", got)
	}
}

// Manifest validation refuses the same ports at the edge.
func TestReservedPortsMatchSpec(t *testing.T) {
	var want []uint16
	for _, p := range spec.ReservedHostPorts {
		want = append(want, uint16(p))
	}
	if !slices.Equal(DefaultReservedHostPorts, want) {
		t.Errorf("DefaultReservedHostPorts %v, spec.ReservedHostPorts %v", DefaultReservedHostPorts, spec.ReservedHostPorts)
	}
}
