package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// DefaultMetricsAddress is where the Prometheus endpoint listens by default:
// loopback only, on a port none of a node's Kubernetes components uses, so
// agentd can run beside a kubelet (10248 healthz, 10250 API, 10255 read-only),
// kube-proxy (10249, 10256), a control plane (10257, 10259; 10251 and 10252 in
// older releases) and ingress-nginx's host-network metrics (10254).
//
// metrics-address needs a restart, as dockerd's metrics-addr and kubelet's
// ports do: the listener is bound once at start, and moving it at SIGHUP
// would cut the scrapes under way and could fail after the configuration was
// accepted.
const DefaultMetricsAddress = "127.0.0.1:10253"

// checkMetricsAddress accepts "" (off) and host:port with an IP address,
// localhost or no host (every address) and a port 0-65535. A host name other
// than localhost is refused: it would be resolved at every start, and what it
// resolves to is not in the configuration.
func checkMetricsAddress(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port, such as %s (empty turns the endpoint off)", addr, DefaultMetricsAddress)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: %q is not an IP address or localhost", addr, host)
		}
	}
	return nil
}

// checkStreamAddress accepts "" (off) and a loopback IP:port: the CRI's
// streaming server speaks plain HTTP and trusts whoever holds a URL's token,
// so it must not be reachable from the network (kubelet proxies its streams).
func checkStreamAddress(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port, such as %s (empty turns streaming off)", addr, DefaultCRIStreamAddress)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: %q is not a loopback IP address (127.0.0.1 or ::1): the streaming server has no authentication beyond its URLs' tokens", addr, host)
	}
	return nil
}

// IsLoopback says whether a valid metrics-address listens on loopback only
// (127.0.0.0/8, ::1 or localhost); an empty host means every address.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
