package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// setup points the default configuration file at a missing file in a temporary directory and fixes the host
// name, so no test depends on the machine. It returns the directory.
func setup(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	oldFile, oldHost := defaultConfigFile, hostname
	defaultConfigFile = filepath.Join(dir, "default.json")
	hostname = func() (string, error) { return "Node-1.Example", nil }
	t.Cleanup(func() { defaultConfigFile, hostname = oldFile, oldHost })
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// values is c without what Load adds for Reload, for comparing settings.
func values(c *Config) Config {
	v := *c
	v.origin, v.ConfigFile = nil, ""
	return v
}

func mustLoad(t *testing.T, args ...string) *Config {
	t.Helper()
	c, err := Load(args)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return c
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got none", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error does not contain %q:\n%v", p, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	setup(t)
	c := mustLoad(t)
	want := Config{
		ManifestDir:                 "/etc/agent/manifests",
		Root:                        "/var/lib/agent",
		RunDir:                      "/run/agent",
		LogDir:                      "/var/log/pods",
		NodeName:                    "node-1.example",
		LogLevel:                    "info",
		LogFormat:                   "text",
		StorageDriver:               "overlay",
		CgroupParent:                "/agent",
		Network:                     Network{Bridge: "agent0", Subnet: "10.77.0.0/16"},
		SeccompDefault:              true,
		ContainerPidsLimit:          4096,
		ImageMaxSize:                Size{32 << 30},
		ManifestRelistInterval:      Duration{20 * time.Second},
		ImageGCHighThresholdPercent: 85,
		ImageGCLowThresholdPercent:  80,
		ImageMinimumGCAge:           Duration{2 * time.Minute},
		ImageGCPeriod:               Duration{5 * time.Minute},
		RegistriesConfig:            "/etc/agent/registries.yaml",
		ImagePullParallel:           3,
		ImagePullProgressTimeout:    Duration{time.Minute},
		MetricsAddress:              "127.0.0.1:10253",
		Cluster:                     Cluster{EtcdEndpoints: []string{}, NodeLabels: map[string]string{}, NodeTTL: Duration{10 * time.Second}},
		BackoffBase:                 Duration{10 * time.Second},
		CRI:                         CRI{Socket: "/run/agent/cri.sock", StreamAddress: "127.0.0.1:0"},
	}
	if got := values(c); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if c.ConfigFile != defaultConfigFile {
		t.Errorf("ConfigFile = %q, want the default %q", c.ConfigFile, defaultConfigFile)
	}
	if got := c.SocketPath(); got != "/run/agent/agent.sock" {
		t.Errorf("SocketPath = %q", got)
	}
}

func TestMissingDefaultFileMeansDefaultsButMissingNamedFileFails(t *testing.T) {
	dir := setup(t)
	if got, want := values(mustLoad(t)), values(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("missing default file:\n got %+v\nwant %+v", got, want)
	}
	named := filepath.Join(dir, "agent.json")
	_, err := Load([]string{"--config-file", named})
	wantErr(t, err, named, "no such file")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error does not wrap ErrNotExist: %v", err)
	}
	// Naming the default path explicitly makes it required too.
	_, err = Load([]string{"--config-file=" + defaultConfigFile})
	wantErr(t, err, "no such file")
}

func TestFileAndFlagsMerge(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	writeFile(t, path, `{
		"root": "/srv/agent/",
		"log-level": "DEBUG",
		"network": {"bridge": "br-pods"},
		"cluster": {"etcd-endpoints": ["https://10.0.0.1:2379"], "etcd-ca-file": "/etc/agent/etcd/ca.crt",
			"etcd-cert-file": "/etc/agent/etcd/node.crt", "etcd-key-file": "/etc/agent/etcd/node.key"},
		"manifest-relist-interval": "1m30s"
	}`)
	c := mustLoad(t, "--config-file", path,
		"--network-subnet=10.99.0.0/24", "--live-restore", "--node-name", "Worker-7",
		"--cluster-node-labels", "zone=a,rack=3", "--backoff-base=100ms", "--socket=/tmp/agentd.sock")

	want := values(Default())
	want.Root = "/srv/agent" // from file, cleaned
	want.LogLevel = "debug"  // from file, lowercased
	want.Network = Network{Bridge: "br-pods", Subnet: "10.99.0.0/24"}
	want.Cluster.EtcdEndpoints = []string{"https://10.0.0.1:2379"}
	want.Cluster.EtcdCAFile, want.Cluster.EtcdCertFile, want.Cluster.EtcdKeyFile = "/etc/agent/etcd/ca.crt", "/etc/agent/etcd/node.crt", "/etc/agent/etcd/node.key"
	want.ManifestRelistInterval = Duration{90 * time.Second}
	want.LiveRestore = true
	want.NodeName = "worker-7"
	want.Cluster.NodeLabels = map[string]string{"zone": "a", "rack": "3"}
	want.BackoffBase = Duration{100 * time.Millisecond}
	want.Socket = "/tmp/agentd.sock"
	if got := values(c); !reflect.DeepEqual(got, want) {
		t.Errorf("merged:\n got %+v\nwant %+v", got, want)
	}
	if c.SocketPath() != "/tmp/agentd.sock" {
		t.Errorf("SocketPath = %q, want the socket setting", c.SocketPath())
	}
}

// TestCRISocket: cri.socket defaults to <run-dir>/cri.sock wherever run-dir is, an empty value (file or flag)
// turns the CRI off, and a changed value needs a restart.
func TestCRISocket(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	for _, tc := range []struct {
		name string
		file string
		args []string
		want string
	}{
		{"default", "", nil, "/run/agent/cri.sock"},
		{"follows run-dir from the file", `{"run-dir": "/run/a2/"}`, nil, "/run/a2/cri.sock"},
		{"follows run-dir from a flag", "", []string{"--run-dir=/tmp/r"}, "/tmp/r/cri.sock"},
		{"in the file", `{"cri": {"socket": "/run/k8s/cri.sock"}}`, nil, "/run/k8s/cri.sock"},
		{"flag", "", []string{"--cri-socket=/x/cri.sock"}, "/x/cri.sock"},
		{"off in the file", `{"run-dir": "/run/a2", "cri": {"socket": ""}}`, nil, ""},
		{"off by flag", "", []string{"--cri-socket="}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, path, tc.file)
			c := mustLoad(t, append([]string{"--config-file", path}, tc.args...)...)
			if c.CRI.Socket != tc.want {
				t.Errorf("cri.socket = %q, want %q", c.CRI.Socket, tc.want)
			}
			writeFile(t, path, `{"cri": {"socket": "/elsewhere/cri.sock"}}`)
			if strings.Contains(strings.Join(tc.args, " "), "--cri-socket") {
				return // the flag keeps winning, and the file may not set it too
			}
			next, err := c.Reload()
			if err != nil {
				t.Fatal(err)
			}
			r, n := Diff(c, next)
			if want := (Change{"cri.socket", tc.want, "/elsewhere/cri.sock"}); len(r) != 0 || !slices.Contains(n, want) {
				t.Errorf("Diff after changing cri.socket: reloadable %v, needRestart %v; want %v to need a restart", r, n, want)
			}
		})
	}
	if !strings.Contains(Usage(), "--cri-socket string") || !strings.Contains(Usage(), "default <run-dir>/cri.sock") {
		t.Errorf("--help does not describe --cri-socket:\n%s", Usage())
	}
}

// TestCRIStreamAddress: cri.stream-address defaults to 127.0.0.1:0, takes a loopback IP:port from the file or a
// flag, an empty value turns streaming off, and a change needs a restart.
func TestCRIStreamAddress(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	for _, tc := range []struct {
		name string
		file string
		args []string
		want string
	}{
		{"default", "", nil, "127.0.0.1:0"},
		{"in the file", `{"cri": {"stream-address": "127.0.0.1:10010"}}`, nil, "127.0.0.1:10010"},
		{"IPv6 loopback", "", []string{"--cri-stream-address=[::1]:0"}, "[::1]:0"},
		{"off", `{"cri": {"stream-address": ""}}`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, path, tc.file)
			c := mustLoad(t, append([]string{"--config-file", path}, tc.args...)...)
			if c.CRI.StreamAddress != tc.want {
				t.Errorf("cri.stream-address = %q, want %q", c.CRI.StreamAddress, tc.want)
			}
			if len(tc.args) > 0 {
				return
			}
			writeFile(t, path, `{"cri": {"stream-address": "127.0.0.2:0"}}`)
			next, err := c.Reload()
			if err != nil {
				t.Fatal(err)
			}
			r, n := Diff(c, next)
			if want := (Change{"cri.stream-address", tc.want, "127.0.0.2:0"}); len(r) != 0 || !slices.Contains(n, want) {
				t.Errorf("Diff after changing cri.stream-address: reloadable %v, needRestart %v; want %v to need a restart", r, n, want)
			}
		})
	}
}

func TestConflictNamesEveryKeyWithBothValues(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	writeFile(t, path, `{"live-restore": false, "root": "/b", "network": {"bridge": "br1"}, "log-format": "json"}`)
	_, err := Load([]string{"--config-file", path, "--root=/a", "--live-restore", "--network-bridge=br2", "--log-level=debug"})
	wantErr(t, err,
		"the following directives are specified both as a flag and in the configuration file: "+
			"live-restore: (from flag: true, from file: false), "+
			"network.bridge: (from flag: br2, from file: br1), "+
			"root: (from flag: /a, from file: /b)",
		path)
	for _, notConflict := range []string{"log-level", "log-format"} {
		if strings.Contains(err.Error(), notConflict) {
			t.Errorf("error names %s, which is not in both: %v", notConflict, err)
		}
	}
}

func TestFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unknown keys, nested too",
			`{"roots": "/x", "network": {"bridg": "br0"}, "cluster": {"enabled": false, "labels": {}}, "live_restore": true}`,
			[]string{"don't match any configuration option: cluster.labels, live_restore (did you mean live-restore?), network.bridg, roots"}},
		{"config-file is a flag only", `{"config-file": "/x.json"}`, []string{"config-file"}},
		{"trailing comma", "{\n  \"root\": \"/x\",\n}\n", []string{"invalid JSON at line 3, column 1"}},
		{"bad token", "{\"root\": \"/x\"\n  \"run-dir\": \"/y\"}", []string{"invalid JSON at line 2, column 3"}},
		{"truncated", "{\"root\": \"/x\"", []string{"invalid JSON at line 1, column 13: unexpected end of file"}},
		{"trailing data", `{"root": "/x"} {}`, []string{"data after the top-level object"}},
		{"not an object", `["root"]`, []string{"want a JSON object at the top, got array"}},
		{"null top", `null`, []string{"want a JSON object"}},
		{"wrong types, all named", `{"live-restore": "yes", "manifest-relist-interval": 20, "network": "agent0", "cluster": {"etcd-endpoints": "http://e:2379"}}`,
			[]string{`live-restore: want true or false, got "yes"`, `manifest-relist-interval: want a duration string such as "20s", got 20`,
				"network: want an object", "cluster.etcd-endpoints: want a list of strings"}},
		{"bad duration", `{"backoff-base": "10 seconds"}`, []string{`backoff-base: want a duration string such as "20s", got "10 seconds"`}},
		{"null value", `{"root": null}`, []string{"root: null is not a value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t)
			path := filepath.Join(dir, "agent.json")
			writeFile(t, path, tc.file)
			_, err := Load([]string{"--config-file", path})
			wantErr(t, err, append(tc.want, "configuration file "+path)...)
		})
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	writeFile(t, path, " \n")
	if got, want := values(mustLoad(t, "--config-file", path)), values(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("empty file:\n got %+v\nwant %+v", got, want)
	}
}

func TestInvalidValuesNameTheirKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		file string
		want string
	}{
		{"relative manifest-dir", []string{"--manifest-dir=manifests"}, "", `manifest-dir: "manifests" is not an absolute path`},
		{"relative root in file", nil, `{"root": "var/lib/agent"}`, `root: "var/lib/agent" is not an absolute path`},
		{"relative run-dir", []string{"--run-dir=run"}, "", `run-dir: "run" is not an absolute path`},
		{"relative log-dir", nil, `{"log-dir": ""}`, `log-dir: "" is not an absolute path`},
		{"relative socket", []string{"--socket=agent.sock"}, "", `socket: "agent.sock" is not an absolute path`},
		{"socket too long", []string{"--socket=/" + strings.Repeat("s", 120)}, "", "socket: socket path"},
		{"run-dir makes the socket too long", []string{"--run-dir=/" + strings.Repeat("r", 100)}, "", "run-dir: socket path"},
		{"relative cri.socket", nil, `{"cri": {"socket": "cri.sock"}}`, `cri.socket: "cri.sock" is not an absolute path`},
		{"cri.socket too long", []string{"--cri-socket=/" + strings.Repeat("c", 120)}, "", "cri.socket: socket path"},
		{"cri.socket is the API socket", []string{"--cri-socket=/run/agent/agent.sock"}, "", `cri.socket: "/run/agent/agent.sock" is also the agentctl API socket`},
		{"cri.stream-address on every address", []string{"--cri-stream-address=:0"}, "", `cri.stream-address: ":0": "" is not a loopback IP address`},
		{"cri.stream-address not loopback", nil, `{"cri": {"stream-address": "10.0.0.1:10010"}}`, `cri.stream-address: "10.0.0.1:10010": "10.0.0.1" is not a loopback IP address`},
		{"cri.stream-address by name", []string{"--cri-stream-address=localhost:0"}, "", `cri.stream-address: "localhost:0": "localhost" is not a loopback IP address`},
		{"cri.stream-address without port", []string{"--cri-stream-address=127.0.0.1"}, "", `cri.stream-address: "127.0.0.1" is not host:port`},
		{"cri.stream-address port", []string{"--cri-stream-address=127.0.0.1:70000"}, "", `cri.stream-address: "127.0.0.1:70000": port "70000" is not a number`},
		{"log-level", []string{"--log-level=verbose"}, "", `log-level: "verbose" is not one of debug, info, warn, error`},
		{"log-format", nil, `{"log-format": "logfmt"}`, `log-format: "logfmt" is not one of text, json`},
		{"storage-driver", []string{"--storage-driver=btrfs"}, "", `storage-driver: "btrfs" is not one of overlay, vfs`},
		{"cgroup-parent", []string{"--cgroup-parent=agent"}, "", `cgroup-parent: "agent" is not an absolute path`},
		{"subnet not a CIDR", []string{"--network-subnet=10.77.0.0"}, "", `network.subnet: "10.77.0.0" is not a CIDR`},
		{"subnet IPv6", nil, `{"network": {"subnet": "fd00::/64"}}`, `network.subnet: "fd00::/64" is not an IPv4 subnet`},
		{"subnet host bits", []string{"--network-subnet=10.77.1.1/16"}, "", "network.subnet: \"10.77.1.1/16\" has host bits set; did you mean 10.77.0.0/16?"},
		{"subnet too small", []string{"--network-subnet=10.77.0.0/31"}, "", "network.subnet: \"10.77.0.0/31\" is too small"},
		{"bridge too long", []string{"--network-bridge=a-very-long-bridge"}, "", "network.bridge: \"a-very-long-bridge\" is longer than"},
		{"bridge with slash", nil, `{"network": {"bridge": "br/0"}}`, `network.bridge: "br/0" is not a valid Linux interface name`},
		{"node-name", []string{"--node-name=my_host"}, "", `node-name: "my_host" is not a valid node name`},
		{"relist interval", []string{"--manifest-relist-interval=0s"}, "", "manifest-relist-interval: 0s is not a positive duration"},
		{"backoff-base", nil, `{"backoff-base": "-1s"}`, "backoff-base: -1s is not a positive duration"},
		{"gc threshold", []string{"--image-gc-high-threshold-percent=101"}, "", "image-gc-high-threshold-percent: 101 is not a percentage between 0 and 100"},
		{"gc thresholds crossed", nil, `{"image-gc-high-threshold-percent": 50, "image-gc-low-threshold-percent": 60}`, "image-gc-low-threshold-percent: 60 is above image-gc-high-threshold-percent 50"},
		{"gc ages", nil, `{"image-maximum-gc-age": "1m"}`, "image-maximum-gc-age: 1m0s is neither 0 (off) nor at least image-minimum-gc-age 2m0s"},
		{"gc period", []string{"--image-gc-period=0s"}, "", "image-gc-period: 0s is not a positive duration"},
		{"relative registries-config", []string{"--registries-config=registries.yaml"}, "", `registries-config: "registries.yaml" is not an absolute path`},
		{"relative auth file", nil, `{"image-pull-auth-file": "auth.json"}`, `image-pull-auth-file: "auth.json" is not an absolute path`},
		{"relative provider config", nil, `{"image-credential-provider-config": "p.yaml", "image-credential-provider-bin-dir": "/usr/libexec/agent"}`, `image-credential-provider-config: "p.yaml" is not an absolute path`},
		{"provider config without bin dir", []string{"--image-credential-provider-config=/etc/agent/providers.yaml"}, "", "image-credential-provider-config: and image-credential-provider-bin-dir go together"},
		{"provider bin dir without config", nil, `{"image-credential-provider-bin-dir": "/usr/libexec/agent"}`, "image-credential-provider-config: and image-credential-provider-bin-dir go together"},
		{"pull parallel 0", []string{"--image-pull-parallel=0"}, "", "image-pull-parallel: 0 is not a number of layers between 1 and 64"},
		{"pull parallel huge", nil, `{"image-pull-parallel": 1000}`, "image-pull-parallel: 1000 is not a number of layers between 1 and 64"},
		{"pull progress timeout", nil, `{"image-pull-progress-timeout": "0s"}`, "image-pull-progress-timeout: 0s is not a positive duration"},
		{"cluster without etcd", nil, `{"cluster": {"enabled": true}}`, "cluster.enabled: joins the external etcd of cluster.etcd-endpoints, which is empty"},
		{"cluster flag", []string{"--cluster-enabled"}, "", "cluster.enabled: joins the external etcd"},
		{"etcd endpoint", []string{"--cluster-etcd-endpoints=10.0.0.1:2379"}, "", `cluster.etcd-endpoints: "10.0.0.1:2379" is not an https:// URL`},
		{"plain-HTTP etcd", []string{"--cluster-etcd-endpoints=http://10.0.0.1:2379", "--cluster-etcd-ca-file=/ca", "--cluster-etcd-cert-file=/c", "--cluster-etcd-key-file=/k"}, "",
			`cluster.etcd-endpoints: "http://10.0.0.1:2379": cluster traffic is mutual TLS (anyone who reaches a plain-HTTP etcd can run containers as root on every node)`},
		{"etcd without TLS files", []string{"--cluster-etcd-endpoints=https://10.0.0.1:2379"}, "",
			`cluster.etcd-ca-file: is required with cluster.etcd-endpoints: cluster traffic is mutual TLS; cluster.etcd-cert-file: is required`},
		{"relative TLS file", []string{"--cluster-etcd-endpoints=https://10.0.0.1:2379", "--cluster-etcd-ca-file=ca.crt", "--cluster-etcd-cert-file=/c", "--cluster-etcd-key-file=/k"}, "",
			`cluster.etcd-ca-file: "ca.crt" is not an absolute path`},
		{"node label", []string{"--cluster-node-labels=zone=a b"}, "", `cluster.node-labels: value "a b" of zone:`},
		{"node ttl", nil, `{"cluster": {"node-ttl": "1s"}}`, "cluster.node-ttl: 1s is shorter than etcd's shortest lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t)
			args := tc.args
			if tc.file != "" {
				path := filepath.Join(dir, "agent.json")
				writeFile(t, path, tc.file)
				args = append(args, "--config-file", path)
			}
			_, err := Load(args)
			wantErr(t, err, "invalid configuration: ", tc.want)
		})
	}
}

func TestEveryInvalidValueIsReportedAtOnce(t *testing.T) {
	setup(t)
	_, err := Load([]string{"--root=r", "--log-level=loud", "--network-subnet=x", "--node-name=", "--cluster-enabled"})
	wantErr(t, err, "root:", "log-level:", "network.subnet:", "node-name: is empty", "cluster.enabled:")
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines, which breaks log lines: %q", err)
	}
}

func TestHostNameIsLowercasedAndValidated(t *testing.T) {
	setup(t)
	hostname = func() (string, error) { return "WEB_01", nil }
	_, err := Load(nil)
	wantErr(t, err, `node-name: "web_01" is not a valid node name`)
	if c := mustLoad(t, "--node-name=web-01"); c.NodeName != "web-01" {
		t.Errorf("NodeName = %q", c.NodeName)
	}
	hostname = func() (string, error) { return "", errors.New("no uts") }
	_, err = Load(nil)
	wantErr(t, err, "node-name: is empty (set it, or give the host a name)")
}

func TestCommandLineErrors(t *testing.T) {
	setup(t)
	if _, err := Load([]string{"--help"}); !errors.Is(err, ErrHelp) {
		t.Errorf("--help: %v, want ErrHelp", err)
	}
	if _, err := Load([]string{"-h"}); !errors.Is(err, ErrHelp) {
		t.Errorf("-h: %v, want ErrHelp", err)
	}
	_, err := Load([]string{"--roots=/x"})
	wantErr(t, err, "unknown flag: --roots")
	_, err = Load([]string{"--live-restore=maybe"})
	wantErr(t, err, "live-restore")
	_, err = Load([]string{"start"})
	wantErr(t, err, `unexpected argument "start"`)
	_, err = Load([]string{"--config-file="})
	wantErr(t, err, "config-file: is empty")
}

func TestUsageListsEveryFlagButTheHiddenOne(t *testing.T) {
	setup(t)
	u := Usage()
	if !strings.Contains(u, "--config-file") {
		t.Error("usage lacks --config-file")
	}
	for _, s := range settings {
		if got := strings.Contains(u, "--"+s.flag()+" "); got == s.hidden {
			t.Errorf("usage shows --%s: %v, want %v", s.flag(), got, !s.hidden)
		}
	}
}

func TestReloadKeepsFlagsAndPicksUpFileChanges(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	writeFile(t, path, `{"live-restore": false, "log-level": "info", "network": {"subnet": "10.77.0.0/16"}}`)
	old := mustLoad(t, "--config-file", path, "--root=/flag/root", "--log-format=json")

	writeFile(t, path, `{"live-restore": true, "log-level": "debug", "storage-driver": "vfs"}`)
	c, err := old.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if !c.LiveRestore || c.LogLevel != "debug" || c.StorageDriver != "vfs" {
		t.Errorf("file changes not picked up: %+v", values(c))
	}
	if c.Root != "/flag/root" || c.LogFormat != "json" {
		t.Errorf("flag values lost: root %q, log-format %q", c.Root, c.LogFormat)
	}
	if old.LiveRestore || old.LogLevel != "info" {
		t.Errorf("Reload changed the old config: %+v", values(old))
	}
	if c.ConfigFile != path {
		t.Errorf("ConfigFile = %q", c.ConfigFile)
	}

	// A reloaded config reloads again, still with the start's flags.
	writeFile(t, path, `{}`)
	c2, err := c.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if c2.LiveRestore || c2.Root != "/flag/root" {
		t.Errorf("second reload: %+v", values(c2))
	}

	for _, tc := range []struct{ name, file, want string }{
		{"file adds a flag's key", `{"root": "/file/root"}`, "root: (from flag: /flag/root, from file: /file/root)"},
		{"unknown key", `{"live-restor": true}`, "live-restor"},
		{"invalid value", `{"log-level": "loud"}`, "log-level:"},
	} {
		writeFile(t, path, tc.file)
		_, err := old.Reload()
		wantErr(t, err, tc.want)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = old.Reload()
	wantErr(t, err, "no such file")

	if _, err := Default().Reload(); err == nil {
		t.Error("Reload of a Config not made by Load succeeded")
	}
}

func TestReloadOfDefaultFile(t *testing.T) {
	setup(t)
	c := mustLoad(t)
	writeFile(t, defaultConfigFile, `{"live-restore": true}`)
	c2, err := c.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if !c2.LiveRestore {
		t.Error("default file created after start not read at reload")
	}
	if err := os.Remove(defaultConfigFile); err != nil {
		t.Fatal(err)
	}
	c3, err := c2.Reload()
	if err != nil {
		t.Fatalf("default file removed: %v", err)
	}
	if c3.LiveRestore {
		t.Error("default file removed: live-restore not back to its default")
	}
}

func TestDiff(t *testing.T) {
	base := Default()
	for _, tc := range []struct {
		name                     string
		change                   func(*Config)
		reloadable, needsRestart []Change
	}{
		{"nothing", func(*Config) {}, nil, nil},
		{"live-restore", func(c *Config) { c.LiveRestore = true }, []Change{{"live-restore", "false", "true"}}, nil},
		{"log settings", func(c *Config) { c.LogLevel, c.LogFormat = "debug", "json" },
			[]Change{{"log-level", "info", "debug"}, {"log-format", "text", "json"}}, nil},
		{"relist", func(c *Config) { c.ManifestRelistInterval.Duration = time.Minute },
			[]Change{{"manifest-relist-interval", "20s", "1m0s"}}, nil},
		{"image pulls", func(c *Config) {
			c.RegistriesConfig, c.ImagePullAuthFile, c.ImagePullParallel = "/srv/registries.yaml", "/srv/auth.json", 8
			c.ImageCredentialProviderConfig, c.ImageCredentialProviderBinDir = "/srv/providers.yaml", "/srv/plugins"
			c.ImagePullProgressTimeout.Duration = 30 * time.Second
		},
			[]Change{{"registries-config", "/etc/agent/registries.yaml", "/srv/registries.yaml"}, {"image-pull-auth-file", "", "/srv/auth.json"},
				{"image-credential-provider-config", "", "/srv/providers.yaml"}, {"image-credential-provider-bin-dir", "", "/srv/plugins"},
				{"image-pull-parallel", "3", "8"}, {"image-pull-progress-timeout", "1m0s", "30s"}}, nil},
		{"root", func(c *Config) { c.Root = "/srv/agent" }, nil, []Change{{"root", "/var/lib/agent", "/srv/agent"}}},
		{"mixed", func(c *Config) {
			c.LiveRestore, c.Network.Subnet, c.Cluster.NodeLabels = true, "10.1.0.0/16", map[string]string{"b": "2", "a": "1"}
		},
			[]Change{{"live-restore", "false", "true"}},
			[]Change{{"network.subnet", "10.77.0.0/16", "10.1.0.0/16"}, {"cluster.node-labels", "[]", "[a=1,b=2]"}}},
		{"nil and empty lists are equal", func(c *Config) { c.Cluster.EtcdEndpoints, c.Cluster.NodeLabels = nil, nil }, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after := base.clone()
			tc.change(after)
			r, n := Diff(base, after)
			if !reflect.DeepEqual(r, tc.reloadable) || !reflect.DeepEqual(n, tc.needsRestart) {
				t.Errorf("Diff:\n reloadable %v, want %v\n needRestart %v, want %v", r, tc.reloadable, n, tc.needsRestart)
			}
		})
	}
}

func TestRestoreSensitive(t *testing.T) {
	c := Default()
	want := map[string]string{
		"root":           "/var/lib/agent",
		"run-dir":        "/run/agent",
		"storage-driver": "overlay",
		"cgroup-parent":  "/agent",
		"network.bridge": "agent0",
		"network.subnet": "10.77.0.0/16",
	}
	if got := c.RestoreSensitive(); !reflect.DeepEqual(got, want) {
		t.Errorf("RestoreSensitive = %v, want %v", got, want)
	}
	c.LiveRestore, c.LogLevel = true, "debug"
	if got := c.RestoreSensitive(); !reflect.DeepEqual(got, want) {
		t.Errorf("non-sensitive settings changed the fingerprint: %v", got)
	}
}

func TestExampleLoadsAsTheDefaultsAndCoversEveryKey(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "config.example.json")
	writeFile(t, path, Example)
	c := mustLoad(t, "--config-file", path)
	if got, want := values(c), values(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("Example is not the defaults (update one or the other):\n got %+v\nwant %+v", got, want)
	}
	keys, err := decodeFile([]byte(Example), Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !s.hidden && s.key != "node-name" && !keys[s.key] {
			t.Errorf("Example lacks %s", s.key)
		}
	}
}

func TestJSONFormOfConfigIsTheFileFormat(t *testing.T) {
	dir := setup(t)
	c := Default()
	c.LiveRestore = true
	c.Cluster.EtcdEndpoints = []string{"https://e:2379"}
	c.Cluster.EtcdCAFile, c.Cluster.EtcdCertFile, c.Cluster.EtcdKeyFile = "/ca.crt", "/node.crt", "/node.key"
	c.ManifestRelistInterval.Duration = 3 * time.Second
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.json")
	writeFile(t, path, string(b))
	if got := mustLoad(t, "--config-file", path); !reflect.DeepEqual(values(got), values(c)) {
		t.Errorf("round trip through JSON:\n got %+v\nwant %+v", values(got), values(c))
	}
}
