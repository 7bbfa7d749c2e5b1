package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ClusterSample is what the cluster collector shows, read at each scrape.
type ClusterSample struct {
	// InCluster: the node is in a cluster; nothing else is shown otherwise.
	InCluster bool
	// EtcdHealthy: a quorum read of the cluster's etcd answered just now, in
	// EtcdLatency (how long it was waited for when it failed; 0 when the node
	// is not connected yet).
	EtcdHealthy bool
	EtcdLatency time.Duration
	// Certificates are the node's cluster certificates: name ("ca", "node",
	// "peer", "join", "admin") → expiry.
	Certificates map[string]time.Time
}

// ClusterSource reads the node's cluster state for a scrape; ctx bounds the
// etcd read. It must be safe for concurrent use.
type ClusterSource func(ctx context.Context) ClusterSample

// clusterProbeTimeout bounds a scrape's read of etcd, well under Prometheus'
// default scrape timeout of 10 s.
const clusterProbeTimeout = 3 * time.Second

type clusterCollector struct {
	source                           ClusterSource
	up, latency, certExpiry, certTTL *prometheus.Desc
	now                              func() time.Time
}

// NewClusterCollector returns the collector of the cluster mode's health:
// agentd_cluster_etcd_up and agentd_cluster_etcd_request_duration_seconds (a
// quorum read made at the scrape), and for each of the node's cluster
// certificates agentd_certificate_expiration_seconds (kubelet's
// kubelet_certificate_manager_client_expiration_seconds: the expiry as a Unix
// time) and agentd_certificate_ttl_seconds (kubelet's
// kubelet_certificate_manager_client_ttl_seconds: the time left). A node not
// in a cluster has none of these series.
func NewClusterCollector(source ClusterSource) prometheus.Collector {
	return &clusterCollector{
		source: source,
		up: prometheus.NewDesc(Namespace+"_cluster_etcd_up",
			"1 when the cluster's etcd answered a quorum read from this node at the scrape, else 0 (in cluster mode only).", nil, nil),
		latency: prometheus.NewDesc(Namespace+"_cluster_etcd_request_duration_seconds",
			"Duration in seconds of the quorum read of the cluster's etcd made at the scrape (how long it was waited for when it failed).", nil, nil),
		certExpiry: prometheus.NewDesc(Namespace+"_certificate_expiration_seconds",
			"Expiry of a cluster certificate of this node, in seconds since the Unix epoch (kubelet_certificate_manager_client_expiration_seconds), by certificate: ca, node, peer, join, admin.",
			[]string{"certificate"}, nil),
		certTTL: prometheus.NewDesc(Namespace+"_certificate_ttl_seconds",
			"Seconds until a cluster certificate of this node expires, negative once it has (kubelet_certificate_manager_client_ttl_seconds).",
			[]string{"certificate"}, nil),
		now: time.Now,
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.latency
	ch <- c.certExpiry
	ch <- c.certTTL
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterProbeTimeout)
	defer cancel()
	s := c.source(ctx)
	if !s.InCluster {
		return
	}
	up := 0.0
	if s.EtcdHealthy {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, s.EtcdLatency.Seconds())
	now := c.now()
	for name, at := range s.Certificates {
		ch <- prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue, float64(at.Unix()), name)
		ch <- prometheus.MustNewConstMetric(c.certTTL, prometheus.GaugeValue, at.Sub(now).Seconds(), name)
	}
}
