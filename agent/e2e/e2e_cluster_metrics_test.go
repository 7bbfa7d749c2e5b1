package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EClusterMetrics (issue 17): a node not in a cluster has no cluster series on /metrics; after `cluster
// init`, its etcd answers the scrape's read (agentd_cluster_etcd_up 1, a request duration) and each of its cluster
// certificates has an expiry in the future and a positive TTL.
func TestE2EClusterMetrics(t *testing.T) {
	addr := freeLoopbackPort(t)
	cfg := map[string]any{"node-name": "metrics", "metrics-address": addr,
		"cluster": map[string]any{"node-ttl": nodeTTL.String()}}
	n := &clusterNode{agent: newAgent(t, cfg), name: "metrics", peerURL: testutil.FreeLoopbackURL(t), clientURL: testutil.FreeLoopbackURL(t),
		joinURL: testutil.FreeLoopbackURL(t)}
	// As newClusterNode: the harness' last agentd must not rejoin the cluster.
	t.Cleanup(func() {
		if n.running() {
			_ = n.cmd.Process.Signal(unix.SIGKILL)
			n.exited <- <-n.exited
		}
		os.RemoveAll(filepath.Join(n.dir, "root", "cluster"))
	})
	n.start()
	n.eventually(30*time.Second, "/metrics served", func() (bool, string) {
		body := scrapeMetrics(addr)
		return strings.Contains(body, "agentd_pods{"), body
	})
	if body := scrapeMetrics(addr); strings.Contains(body, "agentd_cluster_") || strings.Contains(body, "agentd_certificate_") {
		t.Errorf("cluster series outside a cluster:\n%s", grepLines(body, "agentd_c"))
	}

	n.initCluster()
	now := float64(time.Now().Unix())
	n.eventually(60*time.Second, "the cluster's series on /metrics", func() (bool, string) {
		body := scrapeMetrics(addr)
		if !strings.Contains(body, "agentd_cluster_etcd_up 1\n") {
			return false, grepLines(body, "agentd_c")
		}
		if d := metricValue(body, "agentd_cluster_etcd_request_duration_seconds"); d <= 0 || d > 5 {
			return false, grepLines(body, "agentd_c")
		}
		for _, cert := range []string{"ca", "node", "peer", "join", "admin"} {
			exp := metricValue(body, `agentd_certificate_expiration_seconds{certificate="`+cert+`"}`)
			ttl := metricValue(body, `agentd_certificate_ttl_seconds{certificate="`+cert+`"}`)
			if exp <= now || ttl <= 0 {
				return false, cert + ": " + grepLines(body, "agentd_certificate")
			}
		}
		return true, ""
	})
}
