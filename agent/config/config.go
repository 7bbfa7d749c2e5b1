// Package config holds agentd's settings: it parses the command line and the JSON configuration file
// (--config-file, default /etc/agent/config.json, in the style of Docker's daemon.json), merges them over the
// defaults, validates the result and, on SIGHUP, reads the file again.
//
// Every setting is both a flag and a file key; a nested key is a flag with a dash at the dot
// (--network-bridge is {"network": {"bridge": ...}}). As in dockerd, a setting given both as a flag
// and in the file fails the start, and so does a key the agent does not know; both errors name every such key.
// Flags win over the file, the file over the defaults; a reload re-reads the file only, and the flags given at
// start keep winning.
//
// Reloadable settings (applied at SIGHUP): live-restore, log-level, log-format, image-max-size,
// image-store-max-size, the image GC settings, the image pull settings (registries-config, image-pull-*,
// image-credential-provider-*), manifest-relist-interval. The others need a restart; Diff tells them apart. Restore-sensitive settings (root, run-dir, storage-driver,
// cgroup-parent, network) decide whether running pods can be adopted; RestoreSensitive returns them for the
// fingerprint.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// DefaultConfigFile is where agentd looks for its configuration file when --config-file is not given. It may be
// missing; a file named with --config-file may not.
const DefaultConfigFile = "/etc/agent/config.json"

// DefaultRegistriesConfig is where agentd looks for its registries file (k3s's registries.yaml format); it may be
// missing.
const DefaultRegistriesConfig = "/etc/agent/registries.yaml"

// ErrHelp is returned by Load when the arguments ask for help (-h, --help): print Usage and exit 0.
var ErrHelp = pflag.ErrHelp

// Seams for tests: where the default file is, and the host name node-name defaults to.
var (
	defaultConfigFile = DefaultConfigFile
	hostname          = os.Hostname
)

// Config is agentd's merged configuration. Its JSON form is the configuration file's.
type Config struct {
	ManifestDir            string   `json:"manifest-dir"`
	Root                   string   `json:"root"`
	RunDir                 string   `json:"run-dir"`
	LogDir                 string   `json:"log-dir"`
	Socket                 string   `json:"socket"` // "" means <RunDir>/agent.sock; use SocketPath
	LiveRestore            bool     `json:"live-restore"`
	NodeName               string   `json:"node-name"`
	LogLevel               string   `json:"log-level"`
	LogFormat              string   `json:"log-format"`
	StorageDriver          string   `json:"storage-driver"`
	CgroupParent           string   `json:"cgroup-parent"`
	Network                Network  `json:"network"`
	SeccompDefault         bool     `json:"seccomp-default"`
	ContainerPidsLimit     int64    `json:"container-pids-limit"`
	ImageMaxSize           Size     `json:"image-max-size"`
	ImageStoreMaxSize      Size     `json:"image-store-max-size"`
	ManifestRelistInterval Duration `json:"manifest-relist-interval"`
	// Image garbage collection, kubelet's settings.
	ImageGCHighThresholdPercent int64    `json:"image-gc-high-threshold-percent"`
	ImageGCLowThresholdPercent  int64    `json:"image-gc-low-threshold-percent"`
	ImageMinimumGCAge           Duration `json:"image-minimum-gc-age"`
	ImageMaximumGCAge           Duration `json:"image-maximum-gc-age"`
	ImageGCPeriod               Duration `json:"image-gc-period"`
	// Image pulls: registries, credentials, transfer.
	RegistriesConfig              string   `json:"registries-config"`
	ImagePullAuthFile             string   `json:"image-pull-auth-file"`
	ImageCredentialProviderConfig string   `json:"image-credential-provider-config"`
	ImageCredentialProviderBinDir string   `json:"image-credential-provider-bin-dir"`
	ImagePullParallel             int64    `json:"image-pull-parallel"`
	ImagePullProgressTimeout      Duration `json:"image-pull-progress-timeout"`
	// MetricsAddress is where the Prometheus endpoint listens (host:port); "" turns it off.
	MetricsAddress string  `json:"metrics-address"`
	Cluster        Cluster `json:"cluster"`
	CRI            CRI     `json:"cri"`
	// BackoffBase is the base of kubelet's restart back-off (10s doubling to 5m); only tests change it.
	BackoffBase Duration `json:"backoff-base"`

	// ConfigFile is the absolute path of the configuration file read (or, for the default, looked for).
	ConfigFile string `json:"-"`

	origin *origin // how Load built this Config, for Reload; nil for Default
}

// Network is the pod network.
type Network struct {
	Bridge string `json:"bridge"` // Linux bridge
	Subnet string `json:"subnet"` // IPv4 CIDR pod IPs come from
}

// Cluster is cluster mode's configuration. A node enters cluster mode with `agentctl cluster init|join`, which
// records the membership in root; Enabled instead joins the external etcd at EtcdEndpoints at start.
type Cluster struct {
	Enabled       bool     `json:"enabled"`
	EtcdEndpoints []string `json:"etcd-endpoints"`
	// The external etcd's CA and this node's client certificate and key (PEM files).
	EtcdCAFile   string            `json:"etcd-ca-file"`
	EtcdCertFile string            `json:"etcd-cert-file"`
	EtcdKeyFile  string            `json:"etcd-key-file"`
	NodeLabels   map[string]string `json:"node-labels"`
	NodeTTL      Duration          `json:"node-ttl"`
}

// CRI is the Kubernetes CRI v1 endpoint agentd serves (package cri/server).
type CRI struct {
	// Socket is the CRI socket's path; "" turns the CRI off. When neither the file nor a flag gives it, it is
	// <run-dir>/cri.sock (DefaultCRISocket), following run-dir.
	Socket string `json:"socket"`
	// StreamAddress is where the streaming server of Exec, Attach and PortForward listens (host:port, a loopback
	// IP; port 0 picks a free port); "" turns streaming off.
	StreamAddress string `json:"stream-address"`
}

// DefaultCRIStreamAddress is where the CRI's streaming server listens by default: loopback, a port the kernel picks
// (containerd's default). Its URLs carry the port.
const DefaultCRIStreamAddress = "127.0.0.1:0"

// DefaultCRISocket is where agentd serves the CRI when cri.socket is not given.
func DefaultCRISocket(runDir string) string { return filepath.Join(runDir, "cri.sock") }

// DefaultContainerPidsLimit bounds each container's processes and threads. A fork bomb
// stops there instead of exhausting the host's PIDs (pid_max is 32768 on some hosts,
// 4194304 on most 64-bit ones), while busy servers (a JVM with large thread pools,
// a database with a process per connection) stay well below it; podman's default is
// 2048, CRI-O's was 1024.
const DefaultContainerPidsLimit = 4096

// Change is a setting whose value differs between two configurations, formatted as in the file (lists and
// objects as [a,b] and [k=v]).
type Change struct {
	Key      string // file key, e.g. "live-restore" or "network.subnet"
	Old, New string
}

// Default returns the defaults, node-name being the host name lowercased ("" if it cannot be read, which
// validation then reports).
func Default() *Config {
	name, _ := hostname()
	return &Config{
		ManifestDir:                 "/etc/agent/manifests",
		Root:                        "/var/lib/agent",
		RunDir:                      "/run/agent",
		LogDir:                      "/var/log/pods",
		NodeName:                    strings.ToLower(name),
		LogLevel:                    "info",
		LogFormat:                   "text",
		StorageDriver:               "overlay",
		CgroupParent:                "/agent",
		Network:                     Network{Bridge: "agent0", Subnet: "10.77.0.0/16"},
		SeccompDefault:              true,
		ContainerPidsLimit:          DefaultContainerPidsLimit,
		ImageMaxSize:                Size{32 << 30},
		ManifestRelistInterval:      Duration{20 * time.Second},
		ImageGCHighThresholdPercent: 85,
		ImageGCLowThresholdPercent:  80,
		ImageMinimumGCAge:           Duration{2 * time.Minute},
		ImageGCPeriod:               Duration{5 * time.Minute},
		RegistriesConfig:            DefaultRegistriesConfig,
		ImagePullParallel:           3,
		ImagePullProgressTimeout:    Duration{time.Minute},
		MetricsAddress:              DefaultMetricsAddress,
		Cluster:                     Cluster{EtcdEndpoints: []string{}, NodeLabels: map[string]string{}, NodeTTL: Duration{10 * time.Second}},
		BackoffBase:                 Duration{10 * time.Second},
		CRI:                         CRI{Socket: DefaultCRISocket("/run/agent"), StreamAddress: DefaultCRIStreamAddress},
	}
}

// origin is what Reload needs to rebuild a Config: the defaults and the flags as they were at start.
type origin struct {
	defaults      *Config
	flags         *Config         // the flag values; only the keys in flagKeys were given
	flagKeys      map[string]bool // file keys of the settings given as flags
	configFileSet bool            // --config-file was given, so the file must exist
}

// Load parses agentd's arguments and its configuration file and returns the merged, validated configuration
// (defaults < file < flags). It returns ErrHelp for -h/--help; other errors say which flag, key or line is wrong.
func Load(args []string) (*Config, error) {
	defaults := Default()
	fs, flags, configFile := newFlagSet(defaults)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: agentd takes flags only", fs.Arg(0))
	}
	o := &origin{defaults: defaults, flags: flags, flagKeys: map[string]bool{}, configFileSet: fs.Changed("config-file")}
	for _, s := range settings {
		if fs.Changed(s.flag()) {
			o.flagKeys[s.key] = true
		}
	}
	if *configFile == "" {
		return nil, errors.New("config-file: is empty")
	}
	path, err := filepath.Abs(*configFile)
	if err != nil {
		return nil, fmt.Errorf("config-file: %w", err)
	}
	return o.build(path)
}

// Reload reads the configuration file again and returns the new configuration; c is left as it was. Flags given at
// start keep their values and keep winning, so the file may not add a key that was given as a flag. The caller
// keeps c when Reload fails (SIGHUP: log the error, change nothing).
func (c *Config) Reload() (*Config, error) {
	if c.origin == nil {
		return nil, errors.New("reload: this configuration was not made by Load")
	}
	return c.origin.build(c.ConfigFile)
}

func (o *origin) build(path string) (*Config, error) {
	fromFile := o.defaults.clone()
	fileKeys := map[string]bool{}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if fileKeys, err = decodeFile(data, fromFile); err != nil {
			return nil, fmt.Errorf("configuration file %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist) && !o.configFileSet:
		// The default file is optional: no file, no file settings.
	default:
		return nil, fmt.Errorf("read configuration file: %w", err)
	}

	c := fromFile.clone()
	var conflicts []string
	for _, s := range settings {
		if !o.flagKeys[s.key] {
			continue
		}
		if fileKeys[s.key] {
			conflicts = append(conflicts, fmt.Sprintf("%s: (from flag: %s, from file: %s)",
				s.key, format(s.field(o.flags)), format(s.field(fromFile))))
		}
		copyField(s.field(c), s.field(o.flags))
	}
	if !fileKeys["cri.socket"] && !o.flagKeys["cri.socket"] {
		c.CRI.Socket = DefaultCRISocket(c.RunDir) // the default follows run-dir; an explicit "" turns the CRI off
	}
	if len(conflicts) > 0 {
		slices.Sort(conflicts) // as dockerd, which visits flags in name order
		return nil, fmt.Errorf("the following directives are specified both as a flag and in the configuration file: %s; remove each from the command line or from %s",
			strings.Join(conflicts, ", "), path)
	}

	normalize(c)
	if errs := validate(c); len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration: %w", joinErrors(errs))
	}
	c.ConfigFile = path
	c.origin = o
	return c, nil
}

func newFlagSet(defaults *Config) (fs *pflag.FlagSet, flags *Config, configFile *string) {
	fs = pflag.NewFlagSet("agentd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is Usage's
	fs.Usage = func() {}
	fs.SortFlags = false
	configFile = fs.String("config-file", defaultConfigFile,
		"JSON configuration file; its keys are the other flags' names (a missing default file means defaults)")
	flags = defaults.clone()
	addFlags(fs, flags)
	return fs, flags, configFile
}

// Usage is agentd's --help text.
func Usage() string {
	fs, _, _ := newFlagSet(Default())
	return `Usage: agentd [flags]

agentd runs the Pods of a manifest directory, each container under its own agent-monitor.

Every flag except --config-file is also a key of the configuration file; a nested key takes dashes on the command
line (--network-bridge is {"network": {"bridge": ...}}). A setting given both ways is an error. SIGHUP re-reads the
file and applies the settings marked reloadable.

Flags:
` + fs.FlagUsages()
}

// Diff compares two configurations: reloadable holds the changed settings SIGHUP applies, needRestart those
// that take effect only when agentd restarts. Both are in the order of --help.
func Diff(before, after *Config) (reloadable, needRestart []Change) {
	for _, s := range settings {
		o, n := format(s.field(before)), format(s.field(after))
		if o == n {
			continue
		}
		if s.reloadable {
			reloadable = append(reloadable, Change{Key: s.key, Old: o, New: n})
		} else {
			needRestart = append(needRestart, Change{Key: s.key, Old: o, New: n})
		}
	}
	return reloadable, needRestart
}

// RestoreSensitive returns the settings running pods were set up with and cannot be adopted across, by file key:
// root, run-dir, storage-driver, cgroup-parent, network.bridge and network.subnet.
func (c *Config) RestoreSensitive() map[string]string {
	m := map[string]string{}
	for _, s := range settings {
		if s.restoreSensitive {
			m[s.key] = format(s.field(c))
		}
	}
	return m
}

// SocketPath is where agentd serves agentctl: Socket, or <RunDir>/agent.sock when Socket is empty.
func (c *Config) SocketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	return filepath.Join(c.RunDir, "agent.sock")
}

func (c *Config) clone() *Config {
	n := *c
	n.Cluster.EtcdEndpoints = slices.Clone(c.Cluster.EtcdEndpoints)
	n.Cluster.NodeLabels = maps.Clone(c.Cluster.NodeLabels)
	return &n
}

// errList is several problems reported at once, on one line.
type errList []error

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errList(errs)
}

func (l errList) Error() string {
	s := make([]string, len(l))
	for i, err := range l {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (l errList) Unwrap() []error { return l }
