package network

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// agentd masquerades the subnet itself now (subnetmasq.go), but pods an older
// agentd attached, and which live restore keeps, have the bridge plugin's
// rules, and their teardown must remove them.
//
// The bridge plugin (ipMasq: true) gives each pod a nat chain, jumped to from
// POSTROUTING for the pod's source address; every rule carries a comment that
// names the network and the pod:
//
//	-A POSTROUTING -s 10.77.0.2/32 -m comment --comment "name: \"agentd\" id: \"<uid>\"" -j CNI-<hash>
//	-A CNI-<hash> -d 10.77.0.0/16 -m comment --comment "name: \"agentd\" id: \"<uid>\"" -j ACCEPT
//	-A CNI-<hash> ! -d 224.0.0.0/4 -m comment --comment "name: \"agentd\" id: \"<uid>\"" -j MASQUERADE
//
// On DEL it removes them only when it finds the pod's interface in the pod's
// namespace, so a pod whose namespace (or eth0) is gone before its teardown
// would leave them behind for good; teardownMasq removes them itself. The names
// follow FormatChainName and FormatComment in containernetworking/plugins
// pkg/utils.

// masqChain is the name of a pod's chain.
func masqChain(network, containerID string) string {
	return masqChainWithPrefix("", network, containerID)
}

// masqChainWithPrefix names a plugin's chain for a pod: "CNI-<prefix><hash>",
// 28 characters (utils.MustFormatChainNameWithPrefix).
func masqChainWithPrefix(prefix, network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return ("CNI-" + prefix + hex.EncodeToString(sum[:]))[:28]
}

// masqComment is the comment on the pod's rules.
func masqComment(network, containerID string) string {
	return fmt.Sprintf("name: %q id: %q", network, containerID)
}

// parseMasqComment reads a comment masqComment wrote. ok is false for any
// other comment, also one that only resembles it.
func parseMasqComment(c string) (network, containerID string, ok bool) {
	rest, found := strings.CutPrefix(c, "name: ")
	if !found {
		return "", "", false
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", "", false
	}
	network, _ = strconv.Unquote(q)
	rest, found = strings.CutPrefix(rest[len(q):], " id: ")
	if !found {
		return "", "", false
	}
	containerID, err = strconv.Unquote(rest)
	if err != nil || masqComment(network, containerID) != c {
		return "", "", false
	}
	return network, containerID, true
}

// natRule is one rule of the nat table as `iptables -S` prints it.
type natRule struct {
	chain string
	spec  []string // the arguments after "-A <chain>": given to -D, they delete the rule
	// network and pod are those the rule's comment names, for a bridge plugin rule.
	network, pod string
}

// within says whether the rule matches a source or destination inside subnet:
// the bridge plugin's rules match the pod's address (-s) or the whole subnet (-d).
func (r natRule) within(subnet netip.Prefix) bool {
	for i := 0; i+1 < len(r.spec); i++ {
		if (r.spec[i] != "-s" && r.spec[i] != "-d") || (i > 0 && r.spec[i-1] == "!") {
			continue
		}
		p, err := netip.ParsePrefix(r.spec[i+1])
		if err != nil {
			continue
		}
		if p.Bits() >= subnet.Bits() && subnet.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// parseNatRules reads `iptables -t nat -S` output and returns the rules whose
// comment is the bridge plugin's. Lines it cannot read are not rules of ours
// and are skipped.
func parseNatRules(out string) []natRule {
	var rules []natRule
	for _, l := range parseRuleLines(out) {
		if network, pod, ok := parseMasqComment(l.comment()); ok {
			rules = append(rules, natRule{chain: l.chain, spec: l.spec, network: network, pod: pod})
		}
	}
	return rules
}

// ruleLine is one rule as `iptables -S` prints it: "-A <chain> <spec...>".
type ruleLine struct {
	chain string
	spec  []string // given to -D <chain>, they delete the rule
}

// comment is the rule's first --comment, "" without one.
func (r ruleLine) comment() string { return r.option("--comment") }

// target is the chain or target the rule jumps to (-j), "" without one.
func (r ruleLine) target() string { return r.option("-j") }

// option is the value of the rule's first opt.
func (r ruleLine) option(opt string) string {
	for i := 0; i+1 < len(r.spec); i++ {
		if r.spec[i] == opt {
			return r.spec[i+1]
		}
	}
	return ""
}

// parseRuleLines reads `iptables -S` output and returns its rules (the "-A"
// lines), in order. Lines it cannot read are skipped: iptables writes
// none, and they cannot be deleted by spec anyway.
func parseRuleLines(out string) []ruleLine {
	var rules []ruleLine
	for _, line := range strings.Split(out, "\n") {
		args, err := splitRuleLine(line)
		if err != nil || len(args) < 2 || args[0] != "-A" {
			continue
		}
		rules = append(rules, ruleLine{chain: args[1], spec: args[2:]})
	}
	return rules
}

// splitRuleLine splits one line of `iptables -S` into its arguments. iptables
// quotes an argument with anything but letters, digits, '-' and '_' in double
// quotes and escapes '"', '\' and '\” in it with a backslash
// (xtables_save_string).
func splitRuleLine(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\':
			if i+1 == len(line) {
				return nil, errors.New("backslash at the end of the line")
			}
			i++
			cur.WriteByte(line[i])
		case quoted && c == '"':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '"':
			quoted, inArg = true, true
		case c == ' ' || c == '\t':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated quote")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// natRulesOf lists the bridge plugin's rules in the nat table: every chain
// with -S, or the one chain given.
func natRulesOf(ctx context.Context, chain ...string) ([]natRule, error) {
	out, err := iptablesOutput(ctx, append([]string{"-t", "nat", "-S"}, chain...)...)
	if err != nil {
		return nil, err
	}
	return parseNatRules(out), nil
}

// teardownMasq removes a pod's masquerading chain and every POSTROUTING rule
// that jumps to it: those whose comment names the pod, and those for the
// addresses in ips (the pod's addresses as the CNI cache and host-local's
// reservations know them), should the listing miss one. A chain that does not
// exist is nothing to do; running it twice does nothing the second time.
func teardownMasq(ctx context.Context, network, containerID string, ips []string) error {
	chain := masqChain(network, containerID)
	if !masqChainExists(ctx, network, containerID) {
		return nil // never set up, or removed already
	}
	comment := masqComment(network, containerID)
	done := map[string]bool{}
	rules, err := natRulesOf(ctx, "POSTROUTING")
	if err != nil {
		return fmt.Errorf("list masquerading rules: %w", err)
	}
	for _, r := range rules {
		if r.network != network || r.pod != containerID {
			continue
		}
		// An error here is a rule removed already; -X below fails if one
		// still references the chain.
		_ = iptables(ctx, append([]string{"-t", "nat", "-D", r.chain}, r.spec...)...)
		for i := 0; i+1 < len(r.spec); i++ {
			if r.spec[i] == "-s" {
				done[strings.TrimSuffix(r.spec[i+1], "/32")] = true
			}
		}
	}
	for _, a := range ips {
		if !done[a] {
			_ = iptables(ctx, "-t", "nat", "-D", "POSTROUTING", "-s", a, "-j", chain, "-m", "comment", "--comment", comment)
		}
	}
	if err := iptables(ctx, "-t", "nat", "-F", chain); err != nil {
		return fmt.Errorf("remove masquerading chain %s: %w", chain, err)
	}
	if err := iptables(ctx, "-t", "nat", "-X", chain); err != nil {
		return fmt.Errorf("remove masquerading chain %s (is a rule outside POSTROUTING still using it?): %w", chain, err)
	}
	return nil
}

// masqChainExists says whether the pod's chain is in the nat table. No chain,
// no rules: the kernel refuses a rule that jumps to a chain that is not there.
func masqChainExists(ctx context.Context, network, containerID string) bool {
	return iptables(ctx, "-t", "nat", "-S", masqChain(network, containerID)) == nil
}

// iptables runs iptables (-w: wait for the xtables lock rather than fail).
func iptables(ctx context.Context, args ...string) error {
	_, err := iptablesOutput(ctx, args...)
	return err
}

// iptablesOutput runs iptables and returns what it printed.
func iptablesOutput(ctx context.Context, args ...string) (string, error) {
	return xtablesOutput(ctx, "iptables", args...)
}

// xtablesOutput runs iptables or ip6tables (-w: wait for the xtables lock
// rather than fail) and returns what it printed.
func xtablesOutput(ctx context.Context, command string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, command, append([]string{"-w"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", command, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
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
