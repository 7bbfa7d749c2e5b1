package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/libcni"
)

// Host ports (a pod's hostPort, CRI's PodSandboxConfig.port_mappings) are
// forwarded by the CNI portmap plugin, chained after bridge with the
// portMappings capability: on ADD it gets the mappings as runtimeConfig and
// adds, in the nat table,
//
//	-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//	-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//	-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"agentd\" id: \"<uid>\"" -m multiport --dports 18080 -j CNI-DN-<hash>
//	-A CNI-DN-<hash> -s 10.77.0.5/32 -p tcp --dport 18080 -j CNI-HOSTPORT-SETMARK   (hairpin)
//	-A CNI-DN-<hash> -s 127.0.0.1/32 -p tcp --dport 18080 -j CNI-HOSTPORT-SETMARK   (from the host's loopback)
//	-A CNI-DN-<hash> -p tcp --dport 18080 -j DNAT --to-destination 10.77.0.5:80
//
// and CNI-HOSTPORT-MASQ in POSTROUTING masquerades the marked connections. For
// 127.0.0.1:hostPort to work it turns on route_localnet on the bridge, which
// would let a pod with CAP_NET_RAW send packets to the host's 127.0.0.0/8
// services through the bridge; ensureLocalnetGuard drops those (as kube-proxy
// does for CVE-2020-8558). The shared chains (CNI-HOSTPORT-*) stay when the
// last pod goes, as under every CNI runtime; the pod's chain and its jump go
// with the pod.
//
// Debian 12's portmap (1.1.1) fails every CHECK of an IPv4-only pod on a host
// with ip6tables (it looks for the pod's chain in ip6tables' nat table too,
// where it never made one), so Setup checks with the list without portmap and
// looks for the pod's chain itself. It deletes only when the DEL's runtimeConfig has
// port mappings, though it deletes by the pod's chain name and not by port, so
// teardown passes the cached mappings, or a placeholder when the cache is gone
// and the pod's chain is still there (agentd killed mid-ADD).

// PortMapping forwards a port of the node to a port of the pod.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string // TCP (default when empty), UDP or SCTP
	HostIP        string // an IPv4 address of the node; "" or 0.0.0.0: all of them
}

// String is "hostIP:hostPort/PROTO->containerPort".
func (m PortMapping) String() string {
	host := m.HostIP
	if host == "" {
		host = "0.0.0.0"
	}
	return fmt.Sprintf("%s:%d/%s->%d", host, m.HostPort, m.protocol(), m.ContainerPort)
}

func (m PortMapping) protocol() string {
	if m.Protocol == "" {
		return "TCP"
	}
	return strings.ToUpper(m.Protocol)
}

// hostAddr is the mapping's host address, the unspecified one for all.
func (m PortMapping) hostAddr() netip.Addr {
	if a, err := netip.ParseAddr(m.HostIP); err == nil {
		return a
	}
	return netip.IPv4Unspecified()
}

// overlaps says whether two mappings claim the same host port: same port and
// protocol, and host addresses that are equal or one of them all addresses.
func (m PortMapping) overlaps(o PortMapping) bool {
	if m.HostPort != o.HostPort || m.protocol() != o.protocol() {
		return false
	}
	a, b := m.hostAddr(), o.hostAddr()
	return a == b || a.IsUnspecified() || b.IsUnspecified()
}

// ErrHostPortReserved: a pod asked for a host port agentd keeps for itself.
var ErrHostPortReserved = errors.New("host port is reserved by agentd")

// ErrHostPortInUse: a pod asked for a host port another pod or a process of
// the node has.
var ErrHostPortInUse = errors.New("host port is in use")

// DefaultReservedHostPorts are agentd's own ports that no pod may map:
// cluster mode's join service (2377), etcd client (2379) and peer (2380)
// ports. The metrics port and the cluster's actual ports come on top
// (Config.ReservedHostPorts, ProtectHostPorts).
var DefaultReservedHostPorts = []uint16{2377, 2379, 2380}

// capPortMapping is the portMappings capability's element (CNI CONVENTIONS.md).
type capPortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func toCap(ports []PortMapping) []capPortMapping {
	out := make([]capPortMapping, len(ports))
	for i, p := range ports {
		out[i] = capPortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: strings.ToLower(p.protocol())}
		if a := p.hostAddr(); !a.IsUnspecified() {
			out[i].HostIP = a.String()
		}
	}
	return out
}

// capArgs are the capability args of a pod with ports (nil without).
func capArgs(ports []PortMapping) map[string]interface{} {
	if len(ports) == 0 {
		return nil
	}
	return map[string]interface{}{"portMappings": toCap(ports)}
}

// cachedPortMappings reads the portMappings capability args libcni cached
// (as JSON-decoded interface values) back; nil when there are none.
func cachedPortMappings(args map[string]interface{}) []PortMapping {
	raw, ok := args["portMappings"]
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil
	}
	var cps []capPortMapping
	if json.Unmarshal(b, &cps) != nil {
		return nil
	}
	out := make([]PortMapping, 0, len(cps))
	for _, c := range cps {
		out = append(out, PortMapping{HostPort: c.HostPort, ContainerPort: c.ContainerPort, Protocol: strings.ToUpper(c.Protocol), HostIP: c.HostIP})
	}
	return out
}

// samePorts compares two normalized mapping lists as sets.
func samePorts(a, b []PortMapping) bool {
	ca, cb := toCap(a), toCap(b)
	if len(ca) != len(cb) {
		return false
	}
	for _, x := range ca {
		if !slices.Contains(cb, x) {
			return false
		}
	}
	return true
}

// CheckPortMappings checks a pod's mappings as kubelet's validation does and
// against agentd's reserved ports, and returns them normalized (protocol upper
// case, 0.0.0.0 as ""). Errors name the mapping.
func CheckPortMappings(ports []PortMapping, reserved []uint16) ([]PortMapping, error) {
	var errs []error
	out := make([]PortMapping, 0, len(ports))
	for i, p := range ports {
		p.Protocol = p.protocol()
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("port mapping %d (%s): %s", i, p, fmt.Sprintf(format, args...)))
		}
		switch {
		case p.HostPort < 1 || p.HostPort > 65535:
			bad("host port must be from 1 to 65535")
			continue
		case p.ContainerPort < 1 || p.ContainerPort > 65535:
			bad("container port must be from 1 to 65535")
			continue
		case p.Protocol != "TCP" && p.Protocol != "UDP" && p.Protocol != "SCTP":
			bad("protocol must be TCP, UDP or SCTP")
			continue
		}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil || !a.Is4() {
				bad("host IP must be an IPv4 address (the pod network is IPv4 only)")
				continue
			}
			if a.IsUnspecified() {
				p.HostIP = ""
			} else {
				p.HostIP = a.String()
			}
		}
		if slices.Contains(reserved, uint16(p.HostPort)) {
			errs = append(errs, fmt.Errorf("port mapping %d (%s): %w: agentd listens on %d itself, and a pod's host port is forwarded also for connections the node makes to its own addresses", i, p, ErrHostPortReserved, p.HostPort))
			continue
		}
		if j := slices.IndexFunc(out, p.overlaps); j >= 0 {
			bad("duplicate of %s", out[j])
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// ReservedHostPorts are the ports no pod may map now, sorted:
// DefaultReservedHostPorts, Config.ReservedHostPorts and what
// ProtectHostPorts was last asked to protect.
func (n *Network) ReservedHostPorts() []uint16 {
	n.hostPortsMu.Lock()
	defer n.hostPortsMu.Unlock()
	r := slices.Concat(DefaultReservedHostPorts, n.cfg.ReservedHostPorts, n.protectedPorts)
	slices.Sort(r)
	return slices.Compact(r)
}

// portConflicts finds the mappings another pod's attachment holds, as the CNI
// cache records them, or a socket of the node listens on. The caller holds
// n.portsMu, so no other Setup adds mappings meanwhile.
func (n *Network) portConflicts(podUID string, ports []PortMapping) error {
	entries, _, err := readCacheEntries(n.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("read which host ports pods have: %w", err)
	}
	var errs []error
	for _, p := range ports {
		for _, e := range entries {
			if e.ContainerID == podUID {
				continue
			}
			if j := slices.IndexFunc(e.Ports, p.overlaps); j >= 0 {
				errs = append(errs, fmt.Errorf("%w: %s: pod %s has %s", ErrHostPortInUse, p, e.ContainerID, e.Ports[j]))
			}
		}
		if err := probeHostPort(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// probeHostPort binds the mapping's host port for a moment: a process of the
// node that listens on it (for TCP) or has it bound (UDP) would lose its
// traffic to the pod. Only "address in use" counts; SCTP is not probed.
func probeHostPort(p PortMapping) error {
	addr := net.JoinHostPort(p.hostAddr().String(), strconv.Itoa(int(p.HostPort)))
	var err error
	switch p.protocol() {
	case "TCP":
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			l.Close()
		}
	case "UDP":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			c.Close()
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: %s: a process of the node listens on %s/%s", ErrHostPortInUse, p, addr, p.protocol())
	}
	return nil
}

// hasPortmap says whether a configuration list chains the portmap plugin.
func hasPortmap(list *libcni.NetworkConfigList) bool {
	for _, p := range list.Plugins {
		if p.Network.Type == "portmap" {
			return true
		}
	}
	return false
}

// dnatChain is the pod's chain portmap makes (utils.MustFormatChainNameWithPrefix).
func dnatChain(network, containerID string) string {
	return masqChainWithPrefix("DN-", network, containerID)
}

// dnatChainExists says whether the nat table has the pod's portmap chain.
func dnatChainExists(ctx context.Context, network, podUID string) bool {
	if _, err := exec.LookPath("iptables"); err != nil {
		return false
	}
	out, err := xtablesOutput(ctx, "iptables", "-t", "nat", "-S")
	if err != nil {
		return false
	}
	chain := dnatChain(network, podUID)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && f[1] == chain {
			return true
		}
	}
	return false
}

// deletePlaceholder is given to portmap's DEL when the pod's mappings are not
// known: the plugin deletes by the pod's chain, whatever the ports.
var deletePlaceholder = []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "TCP"}}

// localnetGuardSpec is the INPUT rule that drops packets from the bridge to
// the host's loopback addresses, which route_localnet would let in; replies
// to the host's own connections to 127.0.0.1:hostPort (un-NATed back to
// 127.0.0.1) are established and pass.
func localnetGuardSpec(bridge string) []string {
	return []string{"-i", bridge, "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT",
		"-m", "comment", "--comment", fmt.Sprintf("agentd network %q bridge %q: pods may not reach the host loopback", networkName, bridge),
		"-j", "DROP"}
}

// ensureLocalnetGuard puts the localnet guard at the top of INPUT unless it is there.
func ensureLocalnetGuard(ctx context.Context, bridge string) error {
	spec := localnetGuardSpec(bridge)
	if _, err := xtablesOutput(ctx, "iptables", append([]string{"-t", "filter", "-C", "INPUT"}, spec...)...); err == nil {
		return nil
	}
	if _, err := xtablesOutput(ctx, "iptables", append([]string{"-t", "filter", "-I", "INPUT", "1"}, spec...)...); err != nil {
		return fmt.Errorf("keep pods off the host's loopback: %w", err)
	}
	return nil
}

// RemoveLocalnetGuard removes the rule ensureLocalnetGuard adds (tests and
// uninstall; agentd keeps it as long as the bridge may have route_localnet on).
func (n *Network) RemoveLocalnetGuard(ctx context.Context) error {
	spec := localnetGuardSpec(n.cfg.Bridge)
	for {
		if _, err := xtablesOutput(ctx, "iptables", append([]string{"-t", "filter", "-C", "INPUT"}, spec...)...); err != nil {
			return nil
		}
		if _, err := xtablesOutput(ctx, "iptables", append([]string{"-t", "filter", "-D", "INPUT"}, spec...)...); err != nil {
			return err
		}
	}
}

// listWithout is list without the plugins of type typ.
func listWithout(list *libcni.NetworkConfigList, typ string) (*libcni.NetworkConfigList, error) {
	var m map[string]any
	if err := json.Unmarshal(list.Bytes, &m); err != nil {
		return nil, err
	}
	plugins, _ := m["plugins"].([]any)
	var kept []any
	for _, p := range plugins {
		if c, _ := p.(map[string]any); c["type"] != typ {
			kept = append(kept, p)
		}
	}
	m["plugins"] = kept
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(b)
}
