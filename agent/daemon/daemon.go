// Package daemon is agentd's main: configuration, logging, signals. SIGTERM and
// SIGINT stop agentd (its pods too unless live restore is on); SIGHUP reloads the
// configuration file, applies what is reloadable and logs each change and each
// change that needs a restart.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent"
	"github.com/agentd-project/agentd/agent/cluster"
	"github.com/agentd-project/agentd/agent/config"
	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/imagegc"
	"github.com/agentd-project/agentd/agent/logging"
	"github.com/agentd-project/agentd/agent/network"
	"github.com/agentd-project/agentd/agent/version"
)

// Main runs agentd with args (without the program name) and returns its exit code.
func Main(args []string, stderr io.Writer) int {
	for _, a := range args {
		if a == "--version" || a == "version" {
			fmt.Fprintln(os.Stdout, "agentd", version.Version)
			return 0
		}
	}
	cfg, err := config.Load(args)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprint(os.Stdout, config.Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "agentd:", err)
		return 2
	}
	log, _, err := logging.New(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "agentd:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		log.Error(nil, "agentd must run as root: it creates namespaces, cgroups and mounts")
		return 1
	}
	if err := run(cfg, log); err != nil {
		log.Error(err, "agentd failed")
		return 1
	}
	return 0
}

func run(cfg *config.Config, log logr.Logger) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, d := range []string{cfg.Root, cfg.RunDir, cfg.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	a, err := agent.New(agent.Options{
		ManifestDir:      cfg.ManifestDir,
		Root:             cfg.Root,
		RunDir:           cfg.RunDir,
		LogDir:           cfg.LogDir,
		Socket:           cfg.SocketPath(),
		CRISocket:        cfg.CRI.Socket,
		CRIStreamAddress: cfg.CRI.StreamAddress,
		NodeName:         cfg.NodeName,
		StorageDriver:    cfg.StorageDriver,
		CgroupParent:     cfg.CgroupParent,
		LiveRestore:      cfg.LiveRestore,
		RelistInterval:   cfg.ManifestRelistInterval.Duration,
		BackoffBase:      cfg.BackoffBase.Duration,
		SeccompDefault:   cfg.SeccompDefault,
		PidsLimit:        max(cfg.ContainerPidsLimit, 0), // -1: no limit
		MonitorPath:      filepath.Join(filepath.Dir(self), "agent-monitor"),
		ImageLimits:      imageLimits(cfg),
		ImageGC:          imageGCPolicy(cfg),
		ImageGCPeriod:    cfg.ImageGCPeriod.Duration,
		// As kubelet's event recorder: one object cannot flood the event store.
		EventSpamFilter: true,
		Pull:            pullOptions(cfg),
		Network: network.Config{
			Bridge:   cfg.Network.Bridge,
			Subnet:   cfg.Network.Subnet,
			StateDir: filepath.Join(cfg.RunDir, "network"),
			IPMasq:   true,
			// Pods' host ports are forwarded also for the node's own
			// connections: keep them off the metrics port.
			ReservedHostPorts: addressPort(cfg.MetricsAddress),
		},
		Log:              log,
		Metrics:          newMetrics(cfg, log),
		MetricsAddress:   cfg.MetricsAddress,
		RestoreSensitive: cfg.RestoreSensitive(),
		Version:          version.Version,
		Cluster: agent.ClusterOptions{
			AutoJoin:      cfg.Cluster.Enabled,
			EtcdEndpoints: cfg.Cluster.EtcdEndpoints,
			EtcdTLS: cluster.EtcdTLSFiles{CAFile: cfg.Cluster.EtcdCAFile, CertFile: cfg.Cluster.EtcdCertFile,
				KeyFile: cfg.Cluster.EtcdKeyFile},
			NodeLabels: cfg.Cluster.NodeLabels,
			NodeTTL:    cfg.Cluster.NodeTTL.Duration,
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			if sig != unix.SIGHUP {
				log.Info("Signal received, stopping", "signal", sig.String())
				cancel()
				continue
			}
			next, err := cfg.Reload()
			if err != nil {
				log.Error(err, "Configuration not reloaded; keeping the current one", "file", cfg.ConfigFile)
				continue
			}
			// The pull settings' files are read first: a bad one keeps the
			// whole configuration as it was, as a bad key does.
			if err := a.SetPullOptions(pullOptions(next)); err != nil {
				log.Error(err, "Configuration not reloaded; keeping the current one", "file", cfg.ConfigFile)
				continue
			}
			reloadable, needRestart := config.Diff(cfg, next)
			for _, c := range reloadable {
				log.Info("Configuration changed", "key", c.Key, "old", c.Old, "new", c.New)
			}
			for _, c := range needRestart {
				log.Info("Configuration change needs a restart of agentd to take effect", "key", c.Key, "old", c.Old, "new", c.New)
			}
			if err := logging.Reconfigure(log, next.LogLevel, next.LogFormat); err != nil {
				log.Error(err, "Could not reconfigure logging")
			}
			a.SetLiveRestore(next.LiveRestore)
			a.SetImageLimits(imageLimits(next))
			a.SetImageGC(imageGCPolicy(next), next.ImageGCPeriod.Duration)
			cfg = next
		}
	}()
	return a.Run(ctx)
}

// imageLimits is the image store's disk budget in cfg.
func imageLimits(cfg *config.Config) image.Limits {
	return image.Limits{MaxImageSize: cfg.ImageMaxSize.Bytes, MaxStoreSize: cfg.ImageStoreMaxSize.Bytes}
}

// pullOptions are the image pull settings in cfg.
func pullOptions(cfg *config.Config) agent.PullOptions {
	return agent.PullOptions{
		RegistriesConfig:         cfg.RegistriesConfig,
		AuthFile:                 cfg.ImagePullAuthFile,
		CredentialProviderConfig: cfg.ImageCredentialProviderConfig,
		CredentialProviderBinDir: cfg.ImageCredentialProviderBinDir,
		Parallel:                 int(cfg.ImagePullParallel),
		ProgressTimeout:          cfg.ImagePullProgressTimeout.Duration,
	}
}

// imageGCPolicy is the image garbage collection policy in cfg.
func imageGCPolicy(cfg *config.Config) imagegc.Policy {
	return imagegc.Policy{HighThresholdPercent: int(cfg.ImageGCHighThresholdPercent), LowThresholdPercent: int(cfg.ImageGCLowThresholdPercent),
		MinAge: cfg.ImageMinimumGCAge.Duration, MaxAge: cfg.ImageMaximumGCAge.Duration}
}

// addressPort is the port of a host:port address, none when it has none (or 0).
func addressPort(addr string) []uint16 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil
	}
	return []uint16{uint16(p)}
}
