package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

var (
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
	storageDrivers = []string{"overlay", "vfs"}
)

// maxSocketPath is what fits in sockaddr_un.sun_path (108 bytes) with its terminating NUL.
const maxSocketPath = 107

// maxPullParallel bounds the layers one pull downloads at once: more only
// opens more connections to one registry (containerd's default is 3).
const maxPullParallel = 64

// maxInterfaceName is IFNAMSIZ (16) less the NUL.
const maxInterfaceName = 15

// normalize puts values into the one form the agent compares and fingerprints: node name and enums lowercased,
// absolute paths cleaned (so "/var/lib/agent/" is not a changed root).
func normalize(c *Config) {
	c.NodeName = strings.ToLower(c.NodeName)
	c.LogLevel = strings.ToLower(c.LogLevel)
	c.LogFormat = strings.ToLower(c.LogFormat)
	c.StorageDriver = strings.ToLower(c.StorageDriver)
	for _, p := range []*string{&c.ManifestDir, &c.Root, &c.RunDir, &c.LogDir, &c.Socket, &c.CgroupParent,
		&c.RegistriesConfig, &c.ImagePullAuthFile, &c.ImageCredentialProviderConfig, &c.ImageCredentialProviderBinDir, &c.CRI.Socket} {
		if filepath.IsAbs(*p) {
			*p = filepath.Clean(*p)
		}
	}
}

// validate returns one error per bad setting, each starting with the setting's key. c must be normalized.
func validate(c *Config) []error {
	var errs []error
	bad := func(key, f string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(f, args...)))
	}
	for _, p := range []struct{ key, value string }{
		{"manifest-dir", c.ManifestDir},
		{"root", c.Root},
		{"run-dir", c.RunDir},
		{"log-dir", c.LogDir},
		{"cgroup-parent", c.CgroupParent},
	} {
		if !filepath.IsAbs(p.value) {
			bad(p.key, "%q is not an absolute path", p.value)
		}
	}
	switch {
	case c.Socket != "" && !filepath.IsAbs(c.Socket):
		bad("socket", "%q is not an absolute path", c.Socket)
	case len(c.SocketPath()) > maxSocketPath:
		key := "socket"
		if c.Socket == "" {
			key = "run-dir" // the socket is <run-dir>/agent.sock
		}
		bad(key, "socket path %q is longer than the %d bytes a Unix socket path can have", c.SocketPath(), maxSocketPath)
	}
	switch cri := c.CRI.Socket; {
	case cri == "": // off
	case !filepath.IsAbs(cri):
		bad("cri.socket", "%q is not an absolute path", cri)
	case len(cri) > maxSocketPath:
		bad("cri.socket", "socket path %q is longer than the %d bytes a Unix socket path can have", cri, maxSocketPath)
	case cri == c.SocketPath():
		bad("cri.socket", "%q is also the agentctl API socket", cri)
	}
	if err := checkStreamAddress(c.CRI.StreamAddress); err != nil {
		bad("cri.stream-address", "%v", err)
	}
	if c.NodeName == "" {
		bad("node-name", "is empty (set it, or give the host a name)")
	} else if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		bad("node-name", "%q is not a valid node name: %s", c.NodeName, strings.Join(msgs, "; "))
	}
	oneOf := func(key, value string, allowed []string) {
		if !slices.Contains(allowed, value) {
			bad(key, "%q is not one of %s", value, strings.Join(allowed, ", "))
		}
	}
	oneOf("log-level", c.LogLevel, logLevels)
	oneOf("log-format", c.LogFormat, logFormats)
	oneOf("storage-driver", c.StorageDriver, storageDrivers)
	if err := checkInterfaceName(c.Network.Bridge); err != nil {
		bad("network.bridge", "%v", err)
	}
	if err := checkSubnet(c.Network.Subnet); err != nil {
		bad("network.subnet", "%v", err)
	}
	if c.ContainerPidsLimit == 0 || c.ContainerPidsLimit < -1 {
		bad("container-pids-limit", "%d is not a positive number of processes, or -1 for no limit", c.ContainerPidsLimit)
	}
	if c.ManifestRelistInterval.Duration <= 0 {
		bad("manifest-relist-interval", "%s is not a positive duration", c.ManifestRelistInterval)
	}
	for key, v := range map[string]int64{"image-gc-high-threshold-percent": c.ImageGCHighThresholdPercent, "image-gc-low-threshold-percent": c.ImageGCLowThresholdPercent} {
		if v < 0 || v > 100 {
			bad(key, "%d is not a percentage between 0 and 100", v)
		}
	}
	if c.ImageGCLowThresholdPercent > c.ImageGCHighThresholdPercent {
		bad("image-gc-low-threshold-percent", "%d is above image-gc-high-threshold-percent %d: collection frees down to the low threshold", c.ImageGCLowThresholdPercent, c.ImageGCHighThresholdPercent)
	}
	if c.ImageMinimumGCAge.Duration < 0 {
		bad("image-minimum-gc-age", "%s is negative", c.ImageMinimumGCAge)
	}
	if m := c.ImageMaximumGCAge.Duration; m < 0 || m > 0 && m < c.ImageMinimumGCAge.Duration {
		bad("image-maximum-gc-age", "%s is neither 0 (off) nor at least image-minimum-gc-age %s", c.ImageMaximumGCAge, c.ImageMinimumGCAge)
	}
	if c.ImageGCPeriod.Duration <= 0 {
		bad("image-gc-period", "%s is not a positive duration", c.ImageGCPeriod)
	}
	for _, p := range []struct{ key, value string }{
		{"registries-config", c.RegistriesConfig},
		{"image-pull-auth-file", c.ImagePullAuthFile},
		{"image-credential-provider-config", c.ImageCredentialProviderConfig},
		{"image-credential-provider-bin-dir", c.ImageCredentialProviderBinDir},
	} {
		if p.value != "" && !filepath.IsAbs(p.value) {
			bad(p.key, "%q is not an absolute path", p.value)
		}
	}
	if (c.ImageCredentialProviderConfig == "") != (c.ImageCredentialProviderBinDir == "") {
		bad("image-credential-provider-config", "and image-credential-provider-bin-dir go together: set both (the plugins' configuration and the directory they are in) or neither")
	}
	if c.ImagePullParallel < 1 || c.ImagePullParallel > maxPullParallel {
		bad("image-pull-parallel", "%d is not a number of layers between 1 and %d", c.ImagePullParallel, maxPullParallel)
	}
	if c.ImagePullProgressTimeout.Duration <= 0 {
		bad("image-pull-progress-timeout", "%s is not a positive duration", c.ImagePullProgressTimeout)
	}
	if c.BackoffBase.Duration <= 0 {
		bad("backoff-base", "%s is not a positive duration", c.BackoffBase)
	}
	if err := checkMetricsAddress(c.MetricsAddress); err != nil {
		bad("metrics-address", "%v", err)
	}
	if c.Cluster.Enabled && len(c.Cluster.EtcdEndpoints) == 0 {
		bad("cluster.enabled", "joins the external etcd of cluster.etcd-endpoints, which is empty (for an embedded etcd, leave it false and run `agentctl cluster init` or `agentctl cluster join ENDPOINT`)")
	}
	for _, e := range c.Cluster.EtcdEndpoints {
		switch u, err := url.Parse(e); {
		case err == nil && u.Scheme == "http":
			bad("cluster.etcd-endpoints", "%q: cluster traffic is mutual TLS (anyone who reaches a plain-HTTP etcd can run containers as root on every node); use https:// with cluster.etcd-ca-file, cluster.etcd-cert-file and cluster.etcd-key-file", e)
		case err != nil || u.Scheme != "https" || u.Host == "":
			bad("cluster.etcd-endpoints", "%q is not an https:// URL", e)
		}
	}
	tlsFiles := map[string]string{"cluster.etcd-ca-file": c.Cluster.EtcdCAFile, "cluster.etcd-cert-file": c.Cluster.EtcdCertFile,
		"cluster.etcd-key-file": c.Cluster.EtcdKeyFile}
	for _, key := range slices.Sorted(maps.Keys(tlsFiles)) {
		f := tlsFiles[key]
		switch {
		case len(c.Cluster.EtcdEndpoints) > 0 && f == "":
			bad(key, "is required with cluster.etcd-endpoints: cluster traffic is mutual TLS")
		case f != "" && !filepath.IsAbs(f):
			bad(key, "%q is not an absolute path", f)
		}
	}
	for k, v := range c.Cluster.NodeLabels {
		for _, msg := range validation.IsQualifiedName(k) {
			bad("cluster.node-labels", "key %q: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			bad("cluster.node-labels", "value %q of %s: %s", v, k, msg)
		}
	}
	if c.Cluster.NodeTTL.Duration < 2*time.Second {
		bad("cluster.node-ttl", "%s is shorter than etcd's shortest lease (2s)", c.Cluster.NodeTTL)
	}
	return errs
}

func checkInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case len(name) > maxInterfaceName:
		return fmt.Errorf("%q is longer than the %d bytes of a Linux interface name", name, maxInterfaceName)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("%q is not a valid Linux interface name", name)
	}
	return nil
}

func checkSubnet(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR such as 10.77.0.0/16", s)
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("%q is not an IPv4 subnet", s)
	}
	if p.Masked() != p {
		return fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
	}
	if p.Bits() > 30 {
		return fmt.Errorf("%q is too small: a pod network needs at least a /30", s)
	}
	return nil
}
