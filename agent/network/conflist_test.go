package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

func TestBuildConfListDefaults(t *testing.T) {
	b, err := buildConfList(Config{StateDir: "/run/agent/network", IPMasq: true}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	want := `{
	  "cniVersion": "1.0.0",
	  "name": "agentd",
	  "plugins": [{
	    "type": "bridge",
	    "bridge": "agent0",
	    "isGateway": true,
	    "ipMasq": false,
	    "hairpinMode": true,
	    "ipam": {
	      "type": "host-local",
	      "ranges": [[{"subnet": "10.77.0.0/16", "gateway": "10.77.0.1"}]],
	      "routes": [{"dst": "0.0.0.0/0"}],
	      "dataDir": "/run/agent/network/ipam"
	    }
	  }, {
	    "type": "portmap",
	    "capabilities": {"portMappings": true},
	    "snat": true
	  }]
	}`
	var got, exp any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("generated configuration is not JSON: %v\n%s", err, b)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("configuration:\n%s\nwant:\n%s", b, want)
	}

	// libcni accepts it as it will run it.
	list, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		t.Fatalf("libcni rejects the configuration: %v\n%s", err, b)
	}
	if list.Name != "agentd" || list.CNIVersion != "1.0.0" || len(list.Plugins) != 2 || list.Plugins[0].Network.Type != "bridge" || list.Plugins[0].Network.IPAM.Type != "host-local" ||
		list.Plugins[1].Network.Type != "portmap" || !list.Plugins[1].Network.Capabilities["portMappings"] {
		t.Errorf("libcni reads name %q version %q plugins %d", list.Name, list.CNIVersion, len(list.Plugins))
	}
	// agentd masquerades the subnet itself (subnetmasq.go), not the plugin per pod.
	if ipMasqOn(list) {
		t.Error("ipMasqOn = true: the bridge plugin would masquerade each pod")
	}

	// As an older agentd attached pods, which teardown still handles.
	b, err = buildConfList(Config{StateDir: "/run/agent/network", IPMasq: true, legacyPluginMasq: true}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if list, err = libcni.NetworkConfFromBytes(b); err != nil || !ipMasqOn(list) {
		t.Errorf("legacyPluginMasq: ipMasqOn false (%v)\n%s", err, b)
	}
}

func TestBuildConfListSettings(t *testing.T) {
	b, err := buildConfList(Config{Bridge: "br-pods", Subnet: "192.168.50.0/24", StateDir: "/tmp/x", IPMasq: false}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Plugins []bridgeConf `json:"plugins"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	p := c.Plugins[0]
	if p.Bridge != "br-pods" || p.IPMasq || p.IPAM.Ranges[0][0] != (ipamRange{Subnet: "192.168.50.0/24", Gateway: "192.168.50.1"}) {
		t.Errorf("configuration does not follow the settings:\n%s", b)
	}
	list, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if ipMasqOn(list) {
		t.Error("ipMasqOn = true for ipMasq: false")
	}
}

func TestBuildConfListRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"not a CIDR", Config{Subnet: "10.77.0.0", StateDir: "/s"}, "want an IPv4 CIDR"},
		{"IPv6", Config{Subnet: "fd00::/64", StateDir: "/s"}, "only IPv4"},
		{"host bits", Config{Subnet: "10.77.3.4/16", StateDir: "/s"}, "did you mean 10.77.0.0/16"},
		{"too small", Config{Subnet: "10.77.0.0/31", StateDir: "/s"}, "too small"},
		{"long bridge name", Config{Bridge: "a-very-long-bridge", StateDir: "/s"}, "at most 15 characters"},
		{"slash in bridge name", Config{Bridge: "a/b", StateDir: "/s"}, "not a valid interface name"},
		{"no state dir", Config{}, "no state directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := buildConfList(tc.cfg.withDefaults())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSubnetGateway(t *testing.T) {
	for subnet, gw := range map[string]string{"10.77.0.0/16": "10.77.0.1", "10.199.3.0/24": "10.199.3.1", "10.198.7.4/30": "10.198.7.5"} {
		_, got, err := parseSubnet(subnet)
		if err != nil || got.String() != gw {
			t.Errorf("parseSubnet(%s) gateway %v, %v; want %s", subnet, got, err, gw)
		}
	}
}

func TestPodIPv4(t *testing.T) {
	idx := func(i int) *int { return &i }
	ipnet := func(s string) net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return *n
	}
	const ns = "/run/agent/pods/u1/ns/net"
	res := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{
			{Name: "agent0"},
			{Name: "veth1234"},
			{Name: "eth0", Sandbox: ns},
		},
		IPs: []*types100.IPConfig{
			{Interface: idx(0), Address: ipnet("10.77.0.1/16")}, // not the pod's interface
			{Interface: idx(2), Address: ipnet("fd00::5/64")},   // not IPv4
			{Interface: idx(2), Address: ipnet("10.77.0.9/16")},
		},
	}
	got, err := podIPv4(res, ns)
	if err != nil || got.String() != "10.77.0.9" {
		t.Errorf("podIPv4 = %v, %v; want 10.77.0.9", got, err)
	}
	if _, err := podIPv4(res, "/elsewhere"); err == nil {
		t.Error("podIPv4 found an address for a namespace the result is not about")
	}
	if got := resultIPv4s(res); !reflect.DeepEqual(got, []string{"10.77.0.1", "10.77.0.9"}) {
		t.Errorf("resultIPv4s = %v", got)
	}
}

// The names must be the bridge plugin's, or teardownMasq removes nothing. The
// want values were printed by containernetworking/plugins v1.1.1 pkg/utils
// (FormatChainName, FormatComment); the root test checks them against the
// installed plugin too.
func TestMasqNames(t *testing.T) {
	const uid = "0f8c2a8e-3b1d-4d6e-9c47-2b1f5e0a7d13"
	if got, want := masqChain("agentd", uid), "CNI-bdff72f63326faf018464c6f"; got != want {
		t.Errorf("masqChain = %s, want %s", got, want)
	}
	if got, want := masqComment("agentd", uid), `name: "agentd" id: "0f8c2a8e-3b1d-4d6e-9c47-2b1f5e0a7d13"`; got != want {
		t.Errorf("masqComment = %s, want %s", got, want)
	}
}

func TestNewMissingPlugins(t *testing.T) {
	_, err := New(Config{PluginDirs: []string{t.TempDir()}, StateDir: t.TempDir()})
	if !errors.Is(err, ErrPluginNotFound) {
		t.Fatalf("New without plugins: %v, want ErrPluginNotFound", err)
	}
	for _, s := range []string{`"bridge"`, "apt-get install containernetworking-plugins", "hack/install-deps.sh"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %s", err, s)
		}
	}
}

func TestNewOldPlugins(t *testing.T) {
	dir := t.TempDir()
	// A plugin that only speaks the CNI versions before 1.0.0.
	old := "#!/bin/sh\necho '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\"]}'\n"
	for _, p := range requiredPlugins {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(old), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := New(Config{PluginDirs: []string{dir}, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not 1.0.0") || !strings.Contains(err.Error(), "apt-get install containernetworking-plugins") {
		t.Errorf("New with old plugins: %v", err)
	}
}

// TestPodLocks: a second lock of the same pod waits for the first unlock; another pod's lock does not. That the
// second lock waits is read from a goroutine dump (its goroutine is blocked on the pod's mutex inside lock), not
// from how long it has not returned: on a loaded machine a lock that does not wait can take any time to return.
func TestPodLocks(t *testing.T) {
	var l podLocks
	unlockA := l.lock("a")
	done := make(chan struct{})
	go func() { l.lock("b")(); close(done) }()
	waitClosed(t, "the lock of pod b while a is locked", done) // another pod is not blocked by a
	second := make(chan struct{})
	go func() { l.lock("a")(); close(second) }()
	if !waitBlockedIn(t, "network.(*podLocks).lock(", "network.TestPodLocks.func", second) {
		t.Fatal("a second lock of the same pod did not wait")
	}
	unlockA()
	waitClosed(t, "the second lock of pod a after the first unlock", second)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) != 0 {
		t.Errorf("locks left after unlocking: %v", l.m)
	}
}

// waitClosed waits for ch to be closed, with a deadline generous enough for a loaded machine.
func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitBlockedIn waits until a goroutine started by caller (part of a function's name in a stack trace) is blocked
// on a sync.Mutex in fn, as a dump of all goroutines shows it, and returns true; it returns false if returned is
// closed first (the goroutine got through without blocking).
func waitBlockedIn(t *testing.T, fn, caller string, returned <-chan struct{}) bool {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(header, "[sync.Mutex.Lock") && strings.Contains(g, fn) && strings.Contains(g, caller) {
				return true
			}
		}
		select {
		case <-returned:
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine of %s blocked on a mutex in %s:\n%s", caller, fn, buf[:n])
			return false
		}
		time.Sleep(time.Millisecond) // polling the dump: a goroutine that blocks sends no event
	}
}

func TestCNICommand(t *testing.T) {
	env := []string{"PATH=/bin", "CNI_COMMAND=VERSION", "CNI_CONTAINERID=x", "CNI_COMMAND=ADD"}
	if got := cniCommand(env); got != "ADD" {
		t.Errorf("cniCommand = %q, want the last one, ADD", got)
	}
	if got := cniCommand(nil); got != "" {
		t.Errorf("cniCommand(nil) = %q", got)
	}
}

// TestPluginVersionsRemembered: New asks each plugin binary for its CNI versions
// once; a later New with the same state dir asks only a binary that changed
// since, and an unreadable record makes it ask them all again.
func TestPluginVersionsRemembered(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	calls := filepath.Join(t.TempDir(), "calls")
	plugin := func(p, extra string) {
		t.Helper()
		script := fmt.Sprintf("#!/bin/sh\necho %s >>%s\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n%s", p, calls, extra)
		tmp := filepath.Join(dir, "."+p)
		if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range requiredPlugins {
		plugin(p, "")
	}
	asked := func(want ...string) {
		t.Helper()
		if _, err := New(Config{PluginDirs: []string{dir}, StateDir: state}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(calls)
		_ = os.Remove(calls)
		if got := strings.Fields(string(data)); !slices.Equal(got, want) {
			t.Errorf("plugins asked: %q, want %q", got, want)
		}
	}
	asked(requiredPlugins...)
	asked()
	plugin("host-local", "# a new build\n")
	asked("host-local")
	asked()
	if err := os.WriteFile(filepath.Join(state, pluginVersionsFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	asked(requiredPlugins...)
	// A binary that stops speaking 1.0.0 is found at once, and again next time.
	old := "#!/bin/sh\necho '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\"]}'\n"
	if err := os.WriteFile(filepath.Join(dir, "bridge"), []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := New(Config{PluginDirs: []string{dir}, StateDir: state}); err == nil || !strings.Contains(err.Error(), "not 1.0.0") {
			t.Errorf("New after bridge was replaced by an old one: %v", err)
		}
	}
}
