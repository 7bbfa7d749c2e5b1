package agent

import (
	"context"
	"time"

	"github.com/agentd-project/agentd/agent/metrics"
)

// clusterSample is the cluster mode's health for /metrics (issue 17): the
// cluster's etcd answering a quorum read now, and the expiry of the node's
// cluster certificates.
func (a *Agent) clusterSample(ctx context.Context) metrics.ClusterSample {
	if a.cluster == nil {
		return metrics.ClusterSample{}
	}
	h := a.cluster.EtcdHealth(ctx)
	if !h.InCluster {
		return metrics.ClusterSample{}
	}
	s := metrics.ClusterSample{InCluster: true, EtcdHealthy: h.Healthy, EtcdLatency: h.Latency, Certificates: map[string]time.Time{}}
	for _, c := range a.cluster.Certificates() {
		s.Certificates[c.Name] = c.NotAfter
	}
	return s
}
