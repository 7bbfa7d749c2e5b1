package network

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// The bridge plugin (ipMasq: true) gives each pod a nat chain, jumped to from
// POSTROUTING for the pod's source address:
//
//	-A POSTROUTING -s 10.77.0.2/32 -m comment --comment "name: \"agentd\" id: \"<uid>\"" -j CNI-<hash>
//	-A CNI-<hash> -d 10.77.0.0/16 -j ACCEPT
//	-A CNI-<hash> ! -d 224.0.0.0/4 -j MASQUERADE
//
// On DEL it removes them only when it finds the pod's interface in the pod's
// namespace, so a pod whose namespace is gone before its teardown would leave
// them behind for good; teardownMasq removes them then. The names follow
// FormatChainName and FormatComment in containernetworking/plugins pkg/utils.

// masqChain is the name of a pod's chain.
func masqChain(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return ("CNI-" + hex.EncodeToString(sum[:]))[:28]
}

// masqComment is the comment on the pod's rules.
func masqComment(network, containerID string) string {
	return fmt.Sprintf("name: %q id: %q", network, containerID)
}

// teardownMasq removes a pod's masquerading chain and the POSTROUTING rules
// jumping to it for the IPv4 addresses in res. A chain that does not exist is
// nothing to do.
func teardownMasq(ctx context.Context, network, containerID string, res types.Result) error {
	chain := masqChain(network, containerID)
	if err := iptables(ctx, "-t", "nat", "-S", chain); err != nil {
		return nil // no such chain: never set up, or removed already
	}
	comment := masqComment(network, containerID)
	for _, a := range resultIPv4s(res) {
		// An error here is a rule removed already; -X below fails if one
		// still references the chain.
		_ = iptables(ctx, "-t", "nat", "-D", "POSTROUTING", "-s", a, "-j", chain, "-m", "comment", "--comment", comment)
	}
	if err := iptables(ctx, "-t", "nat", "-F", chain); err != nil {
		return fmt.Errorf("remove masquerading chain %s: %w", chain, err)
	}
	if err := iptables(ctx, "-t", "nat", "-X", chain); err != nil {
		return fmt.Errorf("remove masquerading chain %s (is a rule outside POSTROUTING still using it?): %w", chain, err)
	}
	return nil
}

// resultIPv4s lists the IPv4 addresses of a CNI result.
func resultIPv4s(res types.Result) []string {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil
	}
	var out []string
	for _, ipc := range r.IPs {
		if v4 := ipc.Address.IP.To4(); v4 != nil {
			out = append(out, v4.String())
		}
	}
	return out
}

// iptables runs iptables (-w: wait for the xtables lock rather than fail).
func iptables(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
