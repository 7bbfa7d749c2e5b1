package daemon

import (
	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/config"
	"github.com/agentd-project/agentd/agent/metrics"
)

// newMetrics returns the metrics the agent serves on metrics-address, or nil
// when the setting is empty (the endpoint is off). An address that is not
// loopback is served, with a warning: anyone who reaches it reads the pods'
// names and usage.
func newMetrics(cfg *config.Config, log logr.Logger) *metrics.Metrics {
	if cfg.MetricsAddress == "" {
		return nil
	}
	if !config.IsLoopback(cfg.MetricsAddress) {
		log.Info("WARNING: metrics-address is not a loopback address: anyone who can reach it reads the names, namespaces and resource usage of this node's pods, without authentication",
			"address", cfg.MetricsAddress)
	}
	return metrics.New()
}
