package probe

import "net"

// ProbeDialer returns the dialer probes use when a Target has no Dialer, and that a
// Dialer entering a pod's network namespace can use too. Like kubelet's, it closes
// connections with SO_LINGER set to 1 s so that probing every container every few
// seconds does not pile up sockets in TIME_WAIT for the OS's default 60 s. The
// timeout comes from the context the probe passes.
func ProbeDialer() *net.Dialer {
	return &net.Dialer{Control: setLinger, KeepAlive: -1}
}
