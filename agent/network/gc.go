package network

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"

	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// attachment is what the network's state knows of one pod's attachment. Any
// of its parts can be there without the others: agentd killed while the
// plugins ran leaves a reservation (and a veth, and rules) without a cache
// entry; a teardown killed half-way leaves some of them.
type attachment struct {
	PodUID    string
	Cached    bool     // libcni has a cache entry
	NetNS     string   // the namespace the cache entry names, if readable
	Reserved  []string // the addresses host-local holds for it
	MasqRules int      // the bridge plugin's nat rules that name it
	Pending   bool     // an ADD began and was not cached (markPending)
}

// Collect tears down every attachment the network's state knows of whose pod
// keep rejects, and returns their pod UIDs, sorted. It looks in the CNI cache,
// in host-local's reservations and in the nat table for the bridge plugin's
// masquerading rules of our network, so it also finds what a Setup or
// Teardown killed half-way left without a cache entry: a reserved address
// whose namespace is gone, rules whose address is released. It detaches in
// the namespace the cache entry names when that is still pinned (which
// removes the veth too); otherwise it releases the address and removes the
// rules, and the veth goes with the namespace. The nat table is the host's:
// rules of a pod that neither the cache nor host-local know are taken for ours
// only when they match an address in our subnet, so that Collect leaves
// another agentd's pods alone.
//
// agentd calls it at start, once restore has decided which pods it keeps, and
// after it removed pods. keep must say yes to every pod that is or may be set
// up while Collect runs; it is called without locks held. Collect is
// idempotent; an attachment it could not tear down is reported in err, and
// the others are torn down anyway.
//
// Crash point network-collected: after each attachment Collect tore down. The
// next Collect tears down the rest.
//
// The CNI spec's GC verb (libcni's GCNetworkList) would do this for
// configurations of cniVersion 1.1.0, but Debian 12's plugins (1.1.1) speak
// 1.0.0 at most and their host-local has no GC, so Collect reads the state
// itself and deletes through the plugins.
func (n *Network) Collect(ctx context.Context, keep func(podUID string) bool) (collected []string, err error) {
	found, errs := n.scan(ctx)
	for _, a := range toCollect(found, keep) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := n.collect(ctx, a); err != nil {
			errs = append(errs, err)
			continue
		}
		n.log.Info("Collected pod network attachment", "pod", a.PodUID, "cached", a.Cached,
			"reserved", a.Reserved, "masqRules", a.MasqRules)
		collected = append(collected, a.PodUID)
		crashpoint.Hit("network-collected")
	}
	return collected, errors.Join(errs...)
}

// toCollect picks the attachments of the pods keep rejects, sorted by pod UID.
func toCollect(found map[string]*attachment, keep func(podUID string) bool) []*attachment {
	var out []*attachment
	for uid, a := range found {
		if !keep(uid) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PodUID < out[j].PodUID })
	return out
}

// scan gathers what the state knows of each pod's attachment. A file it cannot
// read is logged and skipped, a directory or the nat table reported in the
// errors; the rest is still collected.
func (n *Network) scan(ctx context.Context) (map[string]*attachment, []error) {
	found := map[string]*attachment{}
	get := func(uid string) *attachment {
		a := found[uid]
		if a == nil {
			a = &attachment{PodUID: uid}
			found[uid] = a
		}
		return a
	}
	var errs []error
	entries, bad, err := readCacheEntries(n.cfg.StateDir)
	n.logUnreadable(bad)
	if err != nil {
		errs = append(errs, fmt.Errorf("network: collect: %w", err))
	}
	for _, e := range entries {
		a := get(e.ContainerID)
		a.Cached, a.NetNS = true, e.NetNS
	}
	res, bad, err := readReservations(n.cfg.StateDir)
	n.logUnreadable(bad)
	if err != nil {
		errs = append(errs, fmt.Errorf("network: collect: %w", err))
	}
	for _, r := range res {
		a := get(r.ContainerID)
		a.Reserved = append(a.Reserved, r.IP.String())
	}
	if pending, err := os.ReadDir(pendingDir(n.cfg.StateDir)); err == nil {
		for _, e := range pending {
			if e.Type().IsRegular() && validContainerID(e.Name()) {
				get(e.Name()).Pending = true
			}
		}
	}
	// Without iptables there are no rules: the bridge plugin runs it to make them.
	if _, err := exec.LookPath("iptables"); err == nil {
		rules, err := natRulesOf(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("network: collect: masquerading rules: %w", err))
		}
		for _, r := range rules {
			if r.network != networkName || !validContainerID(r.pod) {
				continue
			}
			// The nat table is the host's, and another agentd (its own
			// run-dir, bridge and subnet) names its rules as we do: rules of
			// a pod our state does not know are ours only in our subnet.
			if a := found[r.pod]; a != nil || r.within(n.subnet) {
				get(r.pod).MasqRules++
			}
		}
	}
	return found, errs
}

// logUnreadable logs the state files scan skipped: a plugin or libcni wrote
// them, so they are a bug or tampering, and an operator should look.
func (n *Network) logUnreadable(bad []error) {
	for _, err := range bad {
		n.log.Error(err, "Skipped an unreadable pod network state file")
	}
}

// collect tears one attachment down under the pod's lock.
func (n *Network) collect(ctx context.Context, a *attachment) error {
	defer n.locks.lock(a.PodUID)()
	// teardown uses the namespace only when it still is one: the one agentd
	// attached the pod in, as the cache entry says.
	if err := n.teardown(ctx, a.PodUID, a.NetNS, a.MasqRules > 0); err != nil {
		return fmt.Errorf("network: collect: %w", err)
	}
	return nil
}
