package network

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

const (
	// DefaultBridge is the host bridge pods are attached to.
	DefaultBridge = "agent0"
	// DefaultSubnet is the pods' IPv4 subnet. 10.88.0.0/16 is podman's and
	// CRI-O's default, so agentd stays out of its way.
	DefaultSubnet = "10.77.0.0/16"

	// cniVersion is the spec version of the generated configuration. Debian 12's
	// containernetworking-plugins (1.1.1) support up to 1.0.0.
	cniVersion = "1.0.0"
	// networkName names the CNI network: it is part of the CNI cache file names,
	// host-local's directory under the IPAM data dir, and the bridge plugin's
	// iptables chain names and comments.
	networkName = "agentd"
	// ifName is the pod's interface, as in Kubernetes.
	ifName = "eth0"
)

// DefaultPluginDirs are searched for the CNI plugin binaries: Debian's package
// installs them in /usr/lib/cni, upstream's release tarballs in /opt/cni/bin.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// requiredPlugins are the CNI plugin binaries the configuration runs. bridge
// calls host-local itself; portmap forwards host ports (portmap.go). loopback is not used: agentd brings lo up when it
// creates the namespace.
var requiredPlugins = []string{"bridge", "host-local", "portmap"}

// withDefaults fills the unset fields of cfg. IPMasq has no default here: its
// zero value means off, and agentd's configuration turns it on.
func (cfg Config) withDefaults() Config {
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = append([]string(nil), DefaultPluginDirs...)
	}
	return cfg
}

// parseSubnet checks an IPv4 pod subnet and returns it with its gateway, the
// first address, which the bridge gets.
func parseSubnet(s string) (subnet netip.Prefix, gateway netip.Addr, err error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("network subnet %q: want an IPv4 CIDR such as %s: %w", s, DefaultSubnet, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("network subnet %q: only IPv4 is supported", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("network subnet %q has host bits set: did you mean %s?", s, p.Masked())
	}
	// A /30 leaves the network, the gateway, one pod and the broadcast address.
	if p.Bits() > 30 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("network subnet %q is too small: it needs room for the gateway and at least one pod (/30 or larger)", s)
	}
	return p, p.Addr().Next(), nil
}

// checkBridgeName rejects names the kernel would (IFNAMSIZ, '/', whitespace).
func checkBridgeName(name string) error {
	switch {
	case len(name) > 15:
		return fmt.Errorf("network bridge %q: an interface name has at most 15 characters", name)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("network bridge %q is not a valid interface name", name)
	}
	return nil
}

// The configuration's JSON shape; the bridge and host-local plugins document
// each key (www.cni.dev/plugins/current/main/bridge, .../ipam/host-local).
type (
	confList struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []any  `json:"plugins"`
	}
	portmapConf struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
		// SNAT masquerades connections from the host's loopback and from
		// the pod itself (hairpin), so that 127.0.0.1:hostPort works from
		// the node and a pod reaches its own host port.
		SNAT bool `json:"snat"`
	}
	bridgeConf struct {
		Type        string   `json:"type"`
		Bridge      string   `json:"bridge"`
		IsGateway   bool     `json:"isGateway"`
		IPMasq      bool     `json:"ipMasq"`
		HairpinMode bool     `json:"hairpinMode"`
		IPAM        ipamConf `json:"ipam"`
	}
	ipamConf struct {
		Type    string          `json:"type"`
		Ranges  [][]ipamRange   `json:"ranges"`
		Routes  []ipamRouteConf `json:"routes"`
		DataDir string          `json:"dataDir"`
	}
	ipamRange struct {
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	}
	ipamRouteConf struct {
		Dst string `json:"dst"`
	}
)

// buildConfList returns the CNI network configuration list for cfg (with its
// defaults applied): one bridge plugin that creates cfg.Bridge with the
// gateway address, a veth per pod, a default route via the bridge, and gets
// addresses from host-local; then portmap, which forwards the pod's host ports
// when it has some.
func buildConfList(cfg Config) ([]byte, error) {
	subnet, gw, err := parseSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	if err := checkBridgeName(cfg.Bridge); err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("network: no state directory given (agentd uses <run-dir>/network)")
	}
	return json.MarshalIndent(confList{
		CNIVersion: cniVersion,
		Name:       networkName,
		Plugins: []any{bridgeConf{
			Type:      "bridge",
			Bridge:    cfg.Bridge,
			IsGateway: true,
			// agentd masquerades the whole subnet itself (subnetmasq.go).
			IPMasq:      cfg.IPMasq && cfg.legacyPluginMasq,
			HairpinMode: true, // a pod reaching itself through a NATed address gets its packets back on its own port
			IPAM: ipamConf{
				Type:    "host-local",
				Ranges:  [][]ipamRange{{{Subnet: subnet.String(), Gateway: gw.String()}}},
				Routes:  []ipamRouteConf{{Dst: "0.0.0.0/0"}},
				DataDir: ipamDir(cfg.StateDir),
			},
		}, portmapConf{
			Type:         "portmap",
			Capabilities: map[string]bool{"portMappings": true},
			SNAT:         true,
		}},
	}, "", "  ")
}

// cacheDir holds libcni's cache: the result and configuration of each
// attachment, which Setup checks against and Teardown deletes with.
func cacheDir(stateDir string) string { return filepath.Join(stateDir, cacheDirName) }

// ipamDir holds host-local's reservations: <ipamDir>/agentd/<ip> names the pod.
// It lives under the run-dir, as the namespaces do: after a reboot neither the
// namespaces nor the reservations exist any more.
func ipamDir(stateDir string) string { return filepath.Join(stateDir, ipamDirName) }

// The directories in StateDir.
const (
	cacheDirName = "cache"
	ipamDirName  = "ipam"
)
