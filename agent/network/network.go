// Package network gives each pod an IPv4 address on a host bridge. It attaches
// a pod's network namespace (the file agent/runtime pins at
// <run-dir>/pods/<uid>/ns/net) with the standard CNI plugins, run through
// libcni: the bridge plugin creates the bridge with the subnet's first address
// as gateway, moves one end of a veth pair into the pod as eth0 and adds a
// default route; host-local hands out the addresses. Traffic that leaves the
// subnet is masqueraded, when asked, by one chain of agentd's for the whole
// subnet (SetupMasquerade, subnetmasq.go), not by the plugin per pod.
//
// agentd's `network` setting changes it: the bridge name (default agent0) and
// the subnet (default 10.77.0.0/16) are restore-sensitive, so pods attached with
// other values are replaced rather than silently kept. Masquerading is on in
// agentd. The plugin binaries come from Debian's containernetworking-plugins
// package (/usr/lib/cni) or upstream's /opt/cni/bin; masquerading needs the
// iptables command. Debian 12's iptables is the nf_tables flavour
// (iptables-nft, chosen by update-alternatives), so the rules show in both
// `iptables-save` and `nft list ruleset`.
//
// SetupWithPorts also forwards host ports to the pod (a manifest's hostPort,
// CRI's port_mappings) with the portmap plugin, chained after bridge
// (portmap.go): from every address of the node, 127.0.0.1 included, or from
// one hostIP. agentd's own ports are refused, and so is a port another pod
// or a process of the node has: the first pod keeps it.
//
// ProtectHostPorts keeps pods off TCP ports of the node (cluster mode's etcd
// and join ports) with a chain of its own in the filter table of iptables and
// ip6tables, named after the bridge (hostports.go).
//
// The CNI cache and host-local's reservations live in Config.StateDir (agentd
// uses <run-dir>/network): volatile like the namespaces they describe, so a
// reboot forgets both together. agentd can be killed at any instant, also
// while a plugin runs: Setup deletes before it adds when the cache does not
// know a pod, Teardown finishes what a killed one began, and Collect tears
// down what the state still holds of pods agentd no longer keeps.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// ErrPluginNotFound is returned by New when a CNI plugin binary is missing.
var ErrPluginNotFound = errors.New("CNI plugin not found")

// installHint tells the operator how to get the plugin binaries.
const installHint = "install them with `apt-get install containernetworking-plugins` (or run hack/install-deps.sh)"

// Config is agentd's `network` setting plus where the network keeps its state.
type Config struct {
	Bridge     string   // host bridge; default "agent0"
	Subnet     string   // IPv4 pod subnet; default "10.77.0.0/16"; the bridge gets its first address
	PluginDirs []string // where the CNI plugin binaries are; default /usr/lib/cni, /opt/cni/bin
	StateDir   string   // required: CNI cache and host-local IPAM data (agentd: <run-dir>/network)
	// IPMasq masquerades traffic leaving the subnet (agentd turns it on),
	// with one set of rules for the whole subnet (SetupMasquerade); off,
	// SetupMasquerade removes them.
	IPMasq bool
	// ReservedHostPorts are ports of the node no pod may map, on top of
	// DefaultReservedHostPorts and the ports ProtectHostPorts protects
	// (agentd: its metrics port).
	ReservedHostPorts []uint16
	Log               logr.Logger

	// legacyPluginMasq has the bridge plugin masquerade each pod with a chain
	// of its own (ipMasq: true), as agentd did before SetupMasquerade: tests
	// use it to attach pods as an older agentd did.
	legacyPluginMasq bool
}

// Network attaches pods to the bridge. Its methods are safe for concurrent use;
// calls for the same pod are serialized, calls for different pods run in
// parallel. It holds no resources of its own: everything it sets up is in the
// kernel and in StateDir, so a new Network (a restarted agentd) over the same
// StateDir finds the pods an earlier one attached.
type Network struct {
	cfg     Config
	subnet  netip.Prefix
	gateway netip.Addr
	list    *libcni.NetworkConfigList
	// checkList is list without portmap: for CHECK (see portmap.go) and the
	// ADD of a pod without host ports.
	checkList *libcni.NetworkConfigList
	cni       *libcni.CNIConfig
	log       logr.Logger

	locks podLocks

	hostPortsMu    sync.Mutex // serializes ProtectHostPorts: it reads the rules, then changes them
	protectedPorts []uint16   // what ProtectHostPorts was last asked to protect; guarded by hostPortsMu

	masqMu   sync.Mutex // serializes SetupMasquerade: it reads the rules, then changes them
	masqDone bool       // SetupMasquerade succeeded in this process; guarded by masqMu

	// portsMu serializes the Setups of pods with host ports, from the check
	// that no other pod has their ports to the ADD that takes them.
	portsMu sync.Mutex
}

// New checks cfg and the plugin binaries and returns a Network. It changes
// nothing on the host but creating StateDir: the bridge appears with the first
// pod.
func New(cfg Config) (*Network, error) {
	cfg = cfg.withDefaults()
	conf, err := buildConfList(cfg)
	if err != nil {
		return nil, err
	}
	subnet, gw, _ := parseSubnet(cfg.Subnet) // checked by buildConfList
	list, err := libcni.NetworkConfFromBytes(conf)
	if err != nil {
		return nil, fmt.Errorf("network: generated CNI configuration: %w", err)
	}
	checkList, err := listWithout(list, "portmap")
	if err != nil {
		return nil, fmt.Errorf("network: generated CNI configuration: %w", err)
	}
	n := &Network{
		checkList: checkList,
		cfg:       cfg,
		subnet:    subnet,
		gateway:   gw,
		list:      list,
		cni:       libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, cacheDir(cfg.StateDir), crashExec{defaultExec()}),
		log:       cfg.Log,
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("network: state directory: %w", err)
	}
	if err := n.checkPlugins(); err != nil {
		return nil, err
	}
	if cfg.IPMasq {
		if _, err := exec.LookPath("iptables"); err != nil {
			return nil, fmt.Errorf("network: masquerading needs iptables: %w; install it with `apt-get install iptables` (or run hack/install-deps.sh)", err)
		}
	}
	return n, nil
}

// checkPlugins finds each plugin binary and makes sure it speaks our cniVersion,
// so that a missing or too old plugin is reported at agentd's start and not at
// the first pod. A binary is asked (an exec) only when it is not the one whose
// answer pluginVersionsFile holds.
func (n *Network) checkPlugins() error {
	dirs := strings.Join(n.cfg.PluginDirs, ", ")
	known := readPluginVersions(n.cfg.StateDir)
	learned := map[string]pluginVersions{}
	for _, p := range requiredPlugins {
		path, err := invoke.FindInPath(p, n.cfg.PluginDirs)
		if err != nil {
			return fmt.Errorf("network: %w: %q in %s; %s", ErrPluginNotFound, p, dirs, installHint)
		}
		// Identified before it is asked: a binary replaced in between is asked
		// again next time, its identity then being another.
		bin, statErr := statPlugin(path)
		versions := known[p].Versions
		if statErr != nil || known[p].Binary != bin {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			info, err := n.cni.GetVersionInfo(ctx, p)
			cancel()
			if err != nil {
				return fmt.Errorf("network: CNI plugin %q in %s: %w", p, dirs, err)
			}
			versions = info.SupportedVersions()
		}
		if statErr == nil {
			learned[p] = pluginVersions{Binary: bin, Versions: versions}
		}
		if !slices.Contains(versions, cniVersion) {
			return fmt.Errorf("network: CNI plugin %q in %s supports CNI versions %s but not %s; %s",
				p, dirs, strings.Join(versions, ", "), cniVersion, installHint)
		}
	}
	if !maps.EqualFunc(known, learned, func(a, b pluginVersions) bool { return a.Binary == b.Binary && slices.Equal(a.Versions, b.Versions) }) {
		if err := writePluginVersions(n.cfg.StateDir, learned); err != nil {
			n.log.V(1).Info("Could not record the CNI plugins' versions; they are asked again at the next start", "error", err.Error())
		}
	}
	return nil
}

// Gateway returns the bridge's address, the first of the subnet; pods route
// everything through it.
func (n *Network) Gateway() string { return n.gateway.String() }

// runtimeConf is what CNI is told about one pod: the pod UID is the container
// ID, so attachments, reservations and iptables chains are named after it.
func runtimeConf(podUID, netnsPath string, ports []PortMapping) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: podUID, NetNS: netnsPath, IfName: ifName, CapabilityArgs: capArgs(ports)}
}

// Setup attaches the pod's network namespace (the path of its pinned netns
// file) to the bridge and returns the pod's IPv4 address. It is idempotent: for
// a pod that is attached already — by this process or an earlier agentd —
// it verifies the attachment (CNI CHECK) and returns the address it has. An
// attachment that fails the check is torn down and made again, which may give
// the pod another address. A failed Setup leaves nothing behind.
//
// Without a cached result Setup cannot know whether an earlier agentd, killed
// while the plugins ran, attached the pod after all: the plugin finishes its
// ADD, but libcni never records it. So it deletes first, as the CNI spec asks
// of a runtime unsure of an attachment; otherwise host-local would refuse the
// pod a second address ("duplicate allocation") and the bridge plugin a
// second eth0, for good.
func (n *Network) Setup(ctx context.Context, podUID, netnsPath string) (string, error) {
	return n.SetupWithPorts(ctx, podUID, netnsPath, nil)
}

// SetupWithPorts is Setup for a pod that also gets host ports: connections to
// the node's addresses (hostIP's alone when set), from elsewhere and from the
// node itself, 127.0.0.1 included, on each mapping's host port and protocol go
// to the pod's container port. ports are checked first (CheckPortMappings):
// a port agentd keeps for itself (DefaultReservedHostPorts,
// Config.ReservedHostPorts, the ports ProtectHostPorts protects) fails with
// ErrHostPortReserved, one another pod has or a process of the node listens
// on with ErrHostPortInUse; nothing is set up then. A pod attached with other
// ports is attached again with these (which may change its address).
func (n *Network) SetupWithPorts(ctx context.Context, podUID, netnsPath string, requested []PortMapping) (string, error) {
	ports, err := CheckPortMappings(requested, n.ReservedHostPorts())
	if err != nil {
		return "", fmt.Errorf("network: pod %s: %w", podUID, err)
	}
	if len(ports) > 0 {
		// Before the pod's lock, as every Setup with ports does: one order.
		n.portsMu.Lock()
		defer n.portsMu.Unlock()
	}
	if !validContainerID(podUID) {
		return "", fmt.Errorf("network: setup: %q is not a valid pod UID (letters, digits, '_', '.' and '-', starting with a letter or digit)", podUID)
	}
	if !isNetNS(netnsPath) {
		return "", fmt.Errorf("network: pod %s: %s is not a network namespace: %w", podUID, netnsPath, os.ErrNotExist)
	}
	defer n.locks.lock(podUID)()
	rt := runtimeConf(podUID, netnsPath, ports)

	if err := checkCacheEntry(n.cfg.StateDir, podUID); err != nil {
		return "", fmt.Errorf("network: pod %s: %w", podUID, err)
	}
	cached, err := n.cni.GetNetworkListCachedResult(n.list, rt)
	switch {
	case err != nil || cached == nil && n.pending(podUID):
		// An ADD that agentd's crash cut short: the plugins may have finished
		// it (they outlive agentd) without libcni caching the result. DEL
		// before adding again, as the CNI spec asks, or host-local refuses a
		// second address.
		if err != nil {
			n.log.Info("Unreadable cached pod network result, attaching again", "pod", podUID, "error", err.Error())
		} else {
			n.log.Info("An earlier attachment of the pod was interrupted; detaching it first", "pod", podUID)
		}
		if err := n.teardown(ctx, podUID, netnsPath, false); err != nil {
			return "", err
		}
	case cached == nil:
		// Never attached: nothing to delete first.
	default:
		ip, ipErr := podIPv4(cached, netnsPath)
		var checkErr error
		if _, crt, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && crt != nil &&
			!samePorts(cachedPortMappings(crt.CapabilityArgs), ports) {
			checkErr = fmt.Errorf("attached with host ports %v, wanted %v", cachedPortMappings(crt.CapabilityArgs), ports)
		} else if checkErr = n.cni.CheckNetworkList(ctx, n.checkList, rt); checkErr == nil && len(ports) > 0 &&
			!dnatChainExists(ctx, n.list.Name, podUID) {
			checkErr = fmt.Errorf("the chain %s that forwards its host ports is gone", dnatChain(n.list.Name, podUID))
		}
		if ipErr == nil && checkErr == nil {
			return ip.String(), nil
		}
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("network: pod %s: check: %w", podUID, err)
		}
		n.log.Info("Pod network attachment is broken, attaching again", "pod", podUID, "netns", netnsPath,
			"error", errors.Join(ipErr, checkErr).Error())
		if err := n.teardown(ctx, podUID, netnsPath, false); err != nil {
			return "", err
		}
	}

	if len(ports) > 0 {
		if err := n.portConflicts(podUID, ports); err != nil {
			return "", fmt.Errorf("network: pod %s: %w", podUID, err)
		}
		if err := ensureLocalnetGuard(ctx, n.cfg.Bridge); err != nil {
			return "", fmt.Errorf("network: pod %s: %w", podUID, err)
		}
	}
	if err := n.ensureMasquerade(ctx); err != nil {
		return "", fmt.Errorf("network: pod %s: %w", podUID, err)
	}
	if err := n.markPending(podUID); err != nil {
		return "", fmt.Errorf("network: pod %s: %w", podUID, err)
	}
	// A pod without host ports is attached without portmap, which would only
	// start, find no mappings and exit (about 10 ms of CPU per pod). libcni
	// caches the list an attachment was made with, and Teardown deletes with
	// the cached one; a pod that gets ports later is attached again (above).
	list := n.list
	if len(ports) == 0 {
		list = n.checkList
	}
	res, err := n.cni.AddNetworkList(ctx, list, rt)
	if err == nil {
		var ip netip.Addr
		if ip, err = podIPv4(res, netnsPath); err == nil {
			n.clearPending(podUID) // libcni cached the result: that is the record now
			return ip.String(), nil
		}
	}
	// Undo what the plugins got done, so the address and the veth do not leak;
	// context.WithoutCancel: a cancelled Setup must still clean up.
	if delErr := n.teardown(context.WithoutCancel(ctx), podUID, netnsPath, false); delErr != nil {
		n.log.Error(delErr, "Could not undo a failed pod network setup", "pod", podUID, "netns", netnsPath)
	}
	return "", fmt.Errorf("network: pod %s: attach to bridge %s: %w", podUID, n.cfg.Bridge, err)
}

// Teardown detaches the pod from the bridge and releases its address. It
// succeeds when there is nothing to tear down: a pod never set up, or torn
// down already. Call it before the pod's namespace is unpinned; when the
// namespace is gone already (the veth went with it) it still releases the
// address and removes the pod's masquerading rules (those of the bridge
// plugin, which an older agentd had make them), also when the CNI cache does
// not know the pod (agentd was killed while attaching it).
func (n *Network) Teardown(ctx context.Context, podUID, netnsPath string) error {
	if !validContainerID(podUID) {
		return fmt.Errorf("network: teardown: %q is not a valid pod UID (letters, digits, '_', '.' and '-', starting with a letter or digit)", podUID)
	}
	defer n.locks.lock(podUID)()
	return n.teardown(ctx, podUID, netnsPath, false)
}

// teardown runs CNI DEL, which removes the veth (when it finds eth0 in the
// namespace), the masquerading rules for the addresses on eth0 and host-local's
// reservation, and then libcni's cache entry; then it removes the rules the
// bridge plugin left because it found no eth0. Each step is keyed by the pod
// UID, so a teardown killed half-way is finished by the next one. forceMasq
// looks for rules also when neither the pod's nor agentd's configuration
// masquerades (Collect found some). The caller holds the pod's lock.
func (n *Network) teardown(ctx context.Context, podUID, netnsPath string, forceMasq bool) error {
	if !isNetNS(netnsPath) {
		netnsPath = "" // the plugins then only release the address
	}
	rt := runtimeConf(podUID, netnsPath, nil)
	if err := checkCacheEntry(n.cfg.StateDir, podUID); err != nil {
		return fmt.Errorf("network: pod %s: %w", podUID, err)
	}

	// Delete with the configuration the pod was attached with, which differs
	// from ours when agentd's network setting changed since (or an older
	// agentd, without portmap, attached it), and with the host ports it was
	// attached with: portmap deletes nothing without.
	list := n.list
	var ports []PortMapping
	cachedConf := false // libcni's cache says how the pod was attached: the plugins' rules follow from it
	if b, crt, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && b != nil {
		if l, err := libcni.NetworkConfFromBytes(b); err == nil {
			list, cachedConf = l, true
		} else {
			n.log.Info("Unreadable cached pod network configuration, deleting with the current one", "pod", podUID, "error", err.Error())
		}
		if crt != nil {
			ports = cachedPortMappings(crt.CapabilityArgs)
		}
	}
	// Without a cache entry (agentd killed mid-ADD, or a pod an earlier
	// Teardown finished), the nat table says what the plugins may have left:
	// iptables runs only then, so that the DEL of a pod attached by this
	// agentd, without ports or per-pod masquerading, runs none.
	if !cachedConf && len(ports) == 0 && hasPortmap(list) && dnatChainExists(ctx, list.Name, podUID) {
		// Attached with ports that were not cached (agentd killed mid-ADD).
		ports = deletePlaceholder
	}
	rt.CapabilityArgs = capArgs(ports)
	// The pod's addresses, as the cache and host-local know them before the
	// DEL forgets them, for the rules the bridge plugin will not remove. The
	// plugin's DEL fails when the chain its rules jump to is gone, so the
	// rules go after it, not before. Only a pod attached with ipMasq on (by an
	// agentd from before SetupMasquerade, or legacyPluginMasq) has them.
	var masqIPs []string
	maybeMasq := forceMasq || ipMasqOn(list) || !cachedConf && (n.cfg.IPMasq || n.pending(podUID))
	masq := maybeMasq && masqChainExists(ctx, list.Name, podUID)
	if masq {
		if cached, err := n.cni.GetNetworkListCachedResult(list, rt); err == nil && cached != nil {
			masqIPs = resultIPv4s(cached)
		}
		masqIPs = append(masqIPs, reservedIPv4s(n.cfg.StateDir, podUID)...)
	}
	if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("network: pod %s: detach: %w", podUID, err)
	}
	if masq {
		if err := teardownMasq(ctx, list.Name, podUID, masqIPs); err != nil {
			return fmt.Errorf("network: pod %s: %w", podUID, err)
		}
	}
	n.clearPending(podUID)
	return nil
}

// pendingDir holds a marker per pod whose ADD has begun and whose result libcni
// has not cached yet: where one is found, an ADD was cut short.
func pendingDir(stateDir string) string { return filepath.Join(stateDir, "pending") }

// markPending records that an ADD of the pod begins. It is not synced: run-dir
// and the namespaces it describes go together at a reboot, and a kill leaves
// the page cache as it is.
func (n *Network) markPending(podUID string) error {
	dir := pendingDir(n.cfg.StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, podUID), os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func (n *Network) pending(podUID string) bool {
	_, err := os.Lstat(filepath.Join(pendingDir(n.cfg.StateDir), podUID))
	return err == nil
}

func (n *Network) clearPending(podUID string) {
	_ = os.Remove(filepath.Join(pendingDir(n.cfg.StateDir), podUID))
}

// defaultExec runs the plugins as libcni does when given no Exec.
func defaultExec() invoke.Exec {
	return &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
}

// crashExec runs the plugins and offers the moments right after one returns
// as crash points: the plugin's work is done, libcni's cache does not say so
// yet.
//
//   - network-plugin-added: after a plugin's ADD succeeded, before libcni
//     caches the result. The next Setup finds no cached result and deletes
//     before it adds again.
//   - network-plugin-deleted: after a plugin's DEL succeeded, before libcni
//     removes the cache entry and before teardown removes the masquerading
//     rules the plugin left. The next Teardown (or Collect) deletes again,
//     which the plugin finds done, and removes the rules.
//
// Those are the bridge plugin's; portmap's (it runs after bridge on ADD,
// before it on DEL) are network-portmap-added and network-portmap-deleted.
type crashExec struct{ invoke.Exec }

func (e crashExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	out, err := e.Exec.ExecPlugin(ctx, pluginPath, stdinData, environ)
	if err == nil {
		what := "plugin"
		if filepath.Base(pluginPath) == "portmap" {
			what = "portmap"
		}
		switch cniCommand(environ) {
		case "ADD":
			crashpoint.Hit("network-" + what + "-added")
		case "DEL":
			crashpoint.Hit("network-" + what + "-deleted")
		}
	}
	return out, err
}

// cniCommand is the CNI_COMMAND a plugin runs with: the last one set wins.
func cniCommand(environ []string) string {
	cmd := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	return cmd
}

// podIPv4 picks the pod's address out of a CNI result: the first IPv4 address
// of the interface inside netnsPath.
func podIPv4(res types.Result, netnsPath string) (netip.Addr, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("CNI result: %w", err)
	}
	for _, ipc := range r.IPs {
		if ipc.Interface == nil || *ipc.Interface < 0 || *ipc.Interface >= len(r.Interfaces) {
			continue
		}
		iface := r.Interfaces[*ipc.Interface]
		if iface.Name != ifName || iface.Sandbox != netnsPath {
			continue
		}
		if a, ok := netip.AddrFromSlice(ipc.Address.IP.To4()); ok {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("CNI result has no IPv4 address for %s in %s", ifName, netnsPath)
}

// ipMasqOn says whether a configuration list masquerades.
func ipMasqOn(list *libcni.NetworkConfigList) bool {
	for _, p := range list.Plugins {
		var c struct {
			IPMasq bool `json:"ipMasq"`
		}
		if p.Network.Type == "bridge" && json.Unmarshal(p.Bytes, &c) == nil && c.IPMasq {
			return true
		}
	}
	return false
}

// isNetNS says whether path is a network namespace: a pinned (bind-mounted)
// nsfs file or /proc/<pid>/ns/net. A pinned file whose mount is gone is a plain
// empty file, and not one.
func isNetNS(path string) bool {
	if path == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// podLocks serializes the calls for one pod.
type podLocks struct {
	mu sync.Mutex
	m  map[string]*podLock // guarded by mu
}

type podLock struct {
	sync.Mutex
	refs int // guarded by podLocks.mu
}

// lock locks the pod and returns the unlock function.
func (l *podLocks) lock(uid string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*podLock{}
	}
	pl := l.m[uid]
	if pl == nil {
		pl = &podLock{}
		l.m[uid] = pl
	}
	pl.refs++
	l.mu.Unlock()

	pl.Lock()
	return func() {
		pl.Unlock()
		l.mu.Lock()
		if pl.refs--; pl.refs == 0 {
			delete(l.m, uid)
		}
		l.mu.Unlock()
	}
}
