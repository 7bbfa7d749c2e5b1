package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// setting is one directive: a key of the configuration file and, with its dots as dashes, a flag.
type setting struct {
	key              string // JSON path, e.g. "network.bridge"; the flag is "network-bridge"
	usage            string
	reloadable       bool // SIGHUP applies it
	restoreSensitive bool // part of the live-restore fingerprint
	hidden           bool // not in --help (testing only)
	field            func(*Config) any
}

func (s setting) flag() string { return strings.ReplaceAll(s.key, ".", "-") }

// settings is every directive, in the order --help, Diff and error messages list them.
var settings = []setting{
	{key: "manifest-dir", usage: "directory of static Pod manifests (YAML or JSON)",
		field: func(c *Config) any { return &c.ManifestDir }},
	{key: "root", usage: "persistent state directory, on disk: images, and all that containers write (writable layers, volumes, /etc/hosts, termination logs)", restoreSensitive: true,
		field: func(c *Config) any { return &c.Root }},
	{key: "run-dir", usage: "volatile state directory: API socket, monitor sockets and state", restoreSensitive: true,
		field: func(c *Config) any { return &c.RunDir }},
	{key: "log-dir", usage: "container logs: <namespace>_<pod>_<uid>/<container>/<restartCount>.log, CRI format",
		field: func(c *Config) any { return &c.LogDir }},
	{key: "socket", usage: "agentctl API socket (default <run-dir>/agent.sock)",
		field: func(c *Config) any { return &c.Socket }},
	{key: "live-restore", usage: "keep containers running while agentd is stopped, crashed or upgraded (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.LiveRestore }},
	{key: "node-name", usage: "name of this node, a DNS-1123 subdomain (default: the host name, lowercased)",
		field: func(c *Config) any { return &c.NodeName }},
	{key: "log-level", usage: "log level: debug, info, warn or error (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.LogLevel }},
	{key: "log-format", usage: "log format: text or json (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.LogFormat }},
	{key: "storage-driver", usage: "container root filesystem driver: overlay or vfs", restoreSensitive: true,
		field: func(c *Config) any { return &c.StorageDriver }},
	{key: "cgroup-parent", usage: "absolute cgroup path the pods' cgroups are created under", restoreSensitive: true,
		field: func(c *Config) any { return &c.CgroupParent }},
	{key: "network.bridge", usage: "Linux bridge of the pod network", restoreSensitive: true,
		field: func(c *Config) any { return &c.Network.Bridge }},
	{key: "network.subnet", usage: "IPv4 subnet (CIDR) pod IPs are allocated from", restoreSensitive: true,
		field: func(c *Config) any { return &c.Network.Subnet }},
	{key: "seccomp-default", usage: "run containers that set no seccomp profile with RuntimeDefault, Docker's default profile (kubelet's --seccomp-default); false leaves them unconfined",
		field: func(c *Config) any { return &c.SeccompDefault }},
	{key: "container-pids-limit", usage: "most processes and threads each container may have (its pids cgroup's pids.max); -1 for no limit",
		field: func(c *Config) any { return &c.ContainerPidsLimit }},
	{key: "image-max-size", usage: "largest unpacked size of one image, e.g. 32Gi; an import over it fails and leaves nothing; 0: no limit (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageMaxSize }},
	{key: "image-store-max-size", usage: "largest unpacked size of all images together; 0: no limit. Imports also never leave the image store's filesystem with less than min(5%, 1Gi) of space or 5% of inodes free (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageStoreMaxSize }},
	{key: "image-gc-high-threshold-percent", usage: "disk usage (percent) of the image store's filesystem at which unused images are removed, least recently used first (kubelet's imageGCHighThresholdPercent); 100 turns it off (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageGCHighThresholdPercent }},
	{key: "image-gc-low-threshold-percent", usage: "disk usage (percent) image garbage collection frees down to (kubelet's imageGCLowThresholdPercent) (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageGCLowThresholdPercent }},
	{key: "image-minimum-gc-age", usage: "an image first seen more recently than this is never collected (kubelet's imageMinimumGCAge) (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageMinimumGCAge }},
	{key: "image-maximum-gc-age", usage: "an image no container used for this long is removed whatever the disk usage (kubelet's imageMaximumGCAge); 0 turns it off (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageMaximumGCAge }},
	{key: "image-gc-period", usage: "how often image garbage collection runs (kubelet's is 5m) (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageGCPeriod }},
	{key: "registries-config", usage: "registries file in k3s's registries.yaml format: mirrors, plain-HTTP endpoints, CAs, client certificates and credentials per registry; a missing file means none (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.RegistriesConfig }},
	{key: "image-pull-auth-file", usage: "docker config.json with registry credentials, tried before kubelet's default locations (<root>/config.json, $HOME/.docker/config.json) (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImagePullAuthFile }},
	{key: "image-credential-provider-config", usage: "kubelet's CredentialProviderConfig file: exec plugins that give registry credentials (kubelet's --image-credential-provider-config) (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageCredentialProviderConfig }},
	{key: "image-credential-provider-bin-dir", usage: "directory of the credential provider plugins (kubelet's --image-credential-provider-bin-dir) (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImageCredentialProviderBinDir }},
	{key: "image-pull-parallel", usage: "layers one pull downloads at once (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImagePullParallel }},
	{key: "image-pull-progress-timeout", usage: "a pull that receives no byte for this long fails (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ImagePullProgressTimeout }},
	{key: "manifest-relist-interval", usage: "how often the manifest directory is listed again besides watching it (reloadable)", reloadable: true,
		field: func(c *Config) any { return &c.ManifestRelistInterval }},
	{key: "metrics-address", usage: "host:port of the Prometheus endpoint (/metrics, /metrics/resource); empty turns it off. Anyone who reaches it reads pod names and usage: keep it on loopback (a warning is logged otherwise). Needs a restart",
		field: func(c *Config) any { return &c.MetricsAddress }},
	{key: "cluster.enabled", usage: "join the external etcd of cluster.etcd-endpoints at start (otherwise cluster mode starts with `agentctl cluster init|join`)",
		field: func(c *Config) any { return &c.Cluster.Enabled }},
	{key: "cluster.etcd-endpoints", usage: "client URLs of an external etcd: `agentctl cluster join` uses it as a client instead of running a member",
		field: func(c *Config) any { return &c.Cluster.EtcdEndpoints }},
	{key: "cluster.etcd-ca-file", usage: "the CA certificate (PEM) that signed the external etcd's certificates; required with cluster.etcd-endpoints",
		field: func(c *Config) any { return &c.Cluster.EtcdCAFile }},
	{key: "cluster.etcd-cert-file", usage: "this node's client certificate (PEM) for the external etcd; required with cluster.etcd-endpoints",
		field: func(c *Config) any { return &c.Cluster.EtcdCertFile }},
	{key: "cluster.etcd-key-file", usage: "the key (PEM, mode 0600) of cluster.etcd-cert-file; required with cluster.etcd-endpoints",
		field: func(c *Config) any { return &c.Cluster.EtcdKeyFile }},
	{key: "cluster.node-labels", usage: "labels of this node in the cluster, for DaemonSets' nodeSelector (key=value,...)",
		field: func(c *Config) any { return &c.Cluster.NodeLabels }},
	{key: "cluster.node-ttl", usage: "TTL of the node's lease: a node that stops renewing it shows NotReady after this long",
		field: func(c *Config) any { return &c.Cluster.NodeTTL }},
	{key: "cri.socket", usage: "Kubernetes CRI v1 socket (runtime and image services), root only (default <run-dir>/cri.sock); empty turns the CRI off",
		field: func(c *Config) any { return &c.CRI.Socket }},
	{key: "cri.stream-address", usage: "host:port of the CRI's streaming server (Exec, Attach, PortForward URLs), a loopback IP only: it has no authentication beyond the URLs' one-time tokens; port 0 picks a free port; empty turns streaming off",
		field: func(c *Config) any { return &c.CRI.StreamAddress }},
	{key: "backoff-base", usage: "for tests only: base of the restart back-off (kubelet's 10s, doubling up to 5m)", hidden: true,
		field: func(c *Config) any { return &c.BackoffBase }},
}

// addFlags registers every setting on fs, bound to the fields of c, with c's values as the defaults.
func addFlags(fs *pflag.FlagSet, c *Config) {
	for _, s := range settings {
		switch p := s.field(c).(type) {
		case *string:
			fs.StringVar(p, s.flag(), *p, s.usage)
		case *bool:
			fs.BoolVar(p, s.flag(), *p, s.usage)
		case *int64:
			fs.Int64Var(p, s.flag(), *p, s.usage)
		case *Duration:
			fs.Var(p, s.flag(), s.usage)
		case *Size:
			fs.Var(p, s.flag(), s.usage)
		case *[]string:
			fs.StringSliceVar(p, s.flag(), *p, s.usage)
		case *map[string]string:
			fs.StringToStringVar(p, s.flag(), *p, s.usage)
		default:
			panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.key, p))
		}
		if s.hidden {
			_ = fs.MarkHidden(s.flag())
		}
		if s.key == "node-name" || s.key == "cri.socket" {
			// The usage names the default ("the host name", "<run-dir>/cri.sock"); this host's would read as a constant.
			fs.Lookup(s.flag()).DefValue = ""
		}
	}
}

// format renders a setting's value for messages, Diff and the restore fingerprint.
func format(field any) string {
	switch v := field.(type) {
	case *string:
		return *v
	case *bool:
		return strconv.FormatBool(*v)
	case *int64:
		return strconv.FormatInt(*v, 10)
	case *Duration:
		return v.String()
	case *Size:
		return v.String()
	case *[]string:
		return "[" + strings.Join(*v, ",") + "]"
	case *map[string]string:
		kv := make([]string, 0, len(*v))
		for _, k := range slices.Sorted(maps.Keys(*v)) {
			kv = append(kv, k+"="+(*v)[k])
		}
		return "[" + strings.Join(kv, ",") + "]"
	}
	panic(fmt.Sprintf("config: cannot format %T", field))
}

// describe says what JSON a setting wants, for type errors.
func describe(field any) string {
	switch field.(type) {
	case *string:
		return "a string"
	case *bool:
		return "true or false"
	case *int64:
		return "an integer"
	case *Duration:
		return `a duration string such as "20s"`
	case *Size:
		return `a size string such as "32Gi" or "500M"`
	case *[]string:
		return "a list of strings"
	case *map[string]string:
		return "an object of string values"
	}
	return fmt.Sprintf("%T", field)
}

// copyField sets dst (a field pointer) to a copy of the value src (the same field of another Config) points to.
func copyField(dst, src any) {
	switch d := dst.(type) {
	case *string:
		*d = *src.(*string)
	case *bool:
		*d = *src.(*bool)
	case *int64:
		*d = *src.(*int64)
	case *Duration:
		*d = *src.(*Duration)
	case *Size:
		*d = *src.(*Size)
	case *[]string:
		*d = slices.Clone(*src.(*[]string))
	case *map[string]string:
		*d = maps.Clone(*src.(*map[string]string))
	default:
		panic(fmt.Sprintf("config: cannot copy %T", dst))
	}
}

// Duration is a time.Duration written as a Go duration string ("20s", "1m30s") in the file and on the command line.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string, the form the file is read in.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string; a number is an error, since its unit would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want %s, got %s", describe(d), abbrev(b))
	}
	return d.Set(s)
}

// Set implements pflag.Value.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want %s, got %q", describe(d), s)
	}
	d.Duration = v
	return nil
}

// Type implements pflag.Value.
func (d *Duration) Type() string { return "duration" }

var _ pflag.Value = (*Duration)(nil)

func abbrev(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
