package benchutil

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// CheckSubnet refuses a subnet that overlaps an address of this host (a bridge
// of ours on it would capture the host's traffic).
func CheckSubnet(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("-subnet %q: %w", s, err)
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if q, err := netip.ParsePrefix(ipn.String()); err == nil && q.Overlaps(p) {
				return fmt.Errorf("subnet %s overlaps %s on %s: pick another with -subnet", s, ipn, ifc.Name)
			}
		}
	}
	return nil
}

// PickBridge returns name (the -bridge flag) when no interface has it, else an
// error; with name "" the first free <prefix><n>, n < limit.
func PickBridge(name, prefix string, limit int) (string, error) {
	if name != "" {
		if _, err := net.InterfaceByName(name); err == nil {
			return "", fmt.Errorf("bridge %s exists already: pick another with -bridge", name)
		}
		return name, nil
	}
	for n := 0; n < limit; n++ {
		if _, err := net.InterfaceByName(fmt.Sprintf("%s%d", prefix, n)); err != nil {
			return fmt.Sprintf("%s%d", prefix, n), nil
		}
	}
	return "", fmt.Errorf("no free bridge name %s0..%s%d", prefix, prefix, limit-1)
}

// CheckNetworkTools checks what agentd's pod network needs (ip, iptables, the
// CNI bridge and host-local plugins), so that a missing piece is not measured
// as a pod without network.
func CheckNetworkTools() error {
	var missing []string
	for _, t := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err1 := os.Stat("/usr/lib/cni/" + p); err1 != nil {
			if _, err2 := os.Stat("/opt/cni/bin/" + p); err2 != nil {
				missing = append(missing, "CNI plugin "+p)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `sudo hack/install-deps.sh`", strings.Join(missing, ", "))
	}
	return nil
}
