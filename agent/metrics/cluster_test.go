package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestClusterCollector: outside a cluster no series; in one, etcd's health and latency and each certificate's
// expiry and time left, lint-clean.
func TestClusterCollector(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	sample := ClusterSample{}
	c := NewClusterCollector(func(ctx context.Context) ClusterSample {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the scrape's etcd read is not bounded")
		}
		return sample
	}).(*clusterCollector)
	c.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("outside a cluster: %d series, %v; want none", n, err)
	}

	sample = ClusterSample{InCluster: true, EtcdHealthy: true, EtcdLatency: 1500 * time.Microsecond, Certificates: map[string]time.Time{
		"ca": now.Add(10 * 365 * 24 * time.Hour), "node": now.Add(time.Hour), "admin": now.Add(-time.Minute)}}
	want := `
# HELP agentd_certificate_expiration_seconds Expiry of a cluster certificate of this node, in seconds since the Unix epoch (kubelet_certificate_manager_client_expiration_seconds), by certificate: ca, node, peer, join, admin.
# TYPE agentd_certificate_expiration_seconds gauge
agentd_certificate_expiration_seconds{certificate="admin"} 1.79629914e+09
agentd_certificate_expiration_seconds{certificate="ca"} 2.1116592e+09
agentd_certificate_expiration_seconds{certificate="node"} 1.7963028e+09
# HELP agentd_certificate_ttl_seconds Seconds until a cluster certificate of this node expires, negative once it has (kubelet_certificate_manager_client_ttl_seconds).
# TYPE agentd_certificate_ttl_seconds gauge
agentd_certificate_ttl_seconds{certificate="admin"} -60
agentd_certificate_ttl_seconds{certificate="ca"} 3.1536e+08
agentd_certificate_ttl_seconds{certificate="node"} 3600
# HELP agentd_cluster_etcd_request_duration_seconds Duration in seconds of the quorum read of the cluster's etcd made at the scrape (how long it was waited for when it failed).
# TYPE agentd_cluster_etcd_request_duration_seconds gauge
agentd_cluster_etcd_request_duration_seconds 0.0015
# HELP agentd_cluster_etcd_up 1 when the cluster's etcd answered a quorum read from this node at the scrape, else 0 (in cluster mode only).
# TYPE agentd_cluster_etcd_up gauge
agentd_cluster_etcd_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	sample = ClusterSample{InCluster: true}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP agentd_cluster_etcd_up 1 when the cluster's etcd answered a quorum read from this node at the scrape, else 0 (in cluster mode only).
# TYPE agentd_cluster_etcd_up gauge
agentd_cluster_etcd_up 0
`), "agentd_cluster_etcd_up"); err != nil {
		t.Error(err)
	}
}
