package config

// Example is a configuration file setting every key to its default, except node-name (the host name by default)
// and backoff-base (for tests). It is shipped as manifests/config.example.json.
const Example = `{
  "manifest-dir": "/etc/agent/manifests",
  "root": "/var/lib/agent",
  "run-dir": "/run/agent",
  "log-dir": "/var/log/pods",
  "socket": "",
  "live-restore": false,
  "log-level": "info",
  "log-format": "text",
  "storage-driver": "overlay",
  "cgroup-parent": "/agent",
  "network": {
    "bridge": "agent0",
    "subnet": "10.77.0.0/16"
  },
  "seccomp-default": true,
  "container-pids-limit": 4096,
  "image-max-size": "32Gi",
  "image-store-max-size": "0",
  "image-gc-high-threshold-percent": 85,
  "image-gc-low-threshold-percent": 80,
  "image-minimum-gc-age": "2m0s",
  "image-maximum-gc-age": "0s",
  "image-gc-period": "5m0s",
  "registries-config": "/etc/agent/registries.yaml",
  "image-pull-auth-file": "",
  "image-credential-provider-config": "",
  "image-credential-provider-bin-dir": "",
  "image-pull-parallel": 3,
  "image-pull-progress-timeout": "1m0s",
  "manifest-relist-interval": "20s",
  "metrics-address": "127.0.0.1:10253",
  "cluster": {
    "enabled": false,
    "etcd-endpoints": [],
    "etcd-ca-file": "",
    "etcd-cert-file": "",
    "etcd-key-file": "",
    "node-labels": {},
    "node-ttl": "10s"
  },
  "cri": {
    "socket": "/run/agent/cri.sock",
    "stream-address": "127.0.0.1:0"
  }
}
`
