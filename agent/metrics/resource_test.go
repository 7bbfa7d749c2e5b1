package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func fixtureTargets() []PodTarget {
	return []PodTarget{{Namespace: "default", Name: "web", Cgroup: "/agent/burstable/pod-u1",
		Containers: []ContainerTarget{
			{Name: "app", Cgroup: "/agent/burstable/pod-u1/app", StartTime: time.Unix(1700000000, 500_000_000)},
			{Name: "gone", Cgroup: "/agent/burstable/pod-u1/gone"}, // exited: no cgroup, no series
		}}}
}

func resourceRegistry(t *testing.T, v2 bool) *prometheus.Registry {
	root := "testdata/v1"
	if v2 {
		root = "testdata/v2"
	}
	node, err := NewNodeReader("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewResourceCollector(NewResources(NewCgroupReader(root, v2), node, logr.Discard()), fixtureTargets))
	return reg
}

func TestResourceCollectorV2(t *testing.T) {
	reg := resourceRegistry(t, true)
	want := `
# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 1.5
# HELP container_memory_rss Size of RSS of the container in bytes
# TYPE container_memory_rss gauge
container_memory_rss{container="app",namespace="default",pod="web"} 1.6777216e+07
# HELP container_memory_working_set_bytes Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 3.5651584e+07
# HELP container_start_time_seconds Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="default",pod="web"} 1.7000000005e+09
# HELP node_cpu_usage_seconds_total Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 15.6
# HELP node_memory_working_set_bytes Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 5.12e+09
# HELP pod_cpu_usage_seconds_total Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="default",pod="web"} 2
# HELP pod_memory_working_set_bytes Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="default",pod="web"} 4.194304e+07
# HELP scrape_error 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	lint(t, reg)
}

func TestResourceCollectorV1(t *testing.T) {
	reg := resourceRegistry(t, false)
	// The v1 fixture has no pod-level files: the pod's series are left out, not zero.
	want := `
# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 2.5
# HELP container_memory_rss Size of RSS of the container in bytes
# TYPE container_memory_rss gauge
container_memory_rss{container="app",namespace="default",pod="web"} 1.2582912e+07
# HELP container_memory_working_set_bytes Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 4.194304e+07
# HELP pod_cpu_usage_seconds_total Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
# HELP scrape_error 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "container_cpu_usage_seconds_total", "container_memory_rss",
		"container_memory_working_set_bytes", "pod_cpu_usage_seconds_total", "scrape_error"); err != nil {
		t.Error(err)
	}
}

func lint(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestRateCache(t *testing.T) {
	c := NewRateCache()
	t0 := time.Unix(1000, 0)
	if _, _, ok := c.Observe("a", 0, t0); ok {
		t.Fatal("a rate from one reading")
	}
	// Too soon after the first reading: no rate yet.
	if _, _, ok := c.Observe("a", 1e8, t0.Add(500*time.Millisecond)); ok {
		t.Fatal("a rate over less than MinRateWindow")
	}
	// 0.5 s of CPU over 2 s: 250m.
	if r, w, ok := c.Observe("a", 5e8, t0.Add(2*time.Second)); !ok || r != 0.25 || w != 2*time.Second {
		t.Fatalf("Observe = %v, %v, %v; want 0.25 over 2s", r, w, ok)
	}
	// Soon after: the cached rate.
	if r, _, ok := c.Observe("a", 6e8, t0.Add(2500*time.Millisecond)); !ok || r != 0.25 {
		t.Fatalf("cached rate = %v, %v; want 0.25", r, ok)
	}
	// A counter that went back (the container's cgroup was made anew): begin again.
	if _, _, ok := c.Observe("a", 1, t0.Add(4*time.Second)); ok {
		t.Fatal("a rate across a counter reset")
	}
	// A reading older than MaxRateAge begins anew.
	if _, _, ok := c.Observe("a", 2, t0.Add(4*time.Second+MaxRateAge+time.Second)); ok {
		t.Fatal("a rate over more than MaxRateAge")
	}
}

func TestTopWaitsForASecondReading(t *testing.T) {
	r := NewResources(NewCgroupReader("testdata/v2", true), nil, logr.Discard())
	start := time.Now()
	pods, err := r.Top(context.Background(), fixtureTargets())
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < MinRateWindow {
		t.Errorf("Top answered in %v, before a second reading", time.Since(start))
	}
	if len(pods) != 1 || len(pods[0].Containers) != 1 {
		t.Fatalf("Top = %+v, want pod web with container app", pods)
	}
	c := pods[0].Containers[0]
	// The fixture does not move: 0 cores, over at least MinRateWindow.
	if c.Name != "app" || c.CPUCores != 0 || c.WorkingSet != 35651584 || pods[0].Window < MinRateWindow {
		t.Errorf("Top = %+v (window %v)", c, pods[0].Window)
	}
	// The second Top has the rate already.
	start = time.Now()
	if _, err := r.Top(context.Background(), fixtureTargets()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= MinRateWindow {
		t.Errorf("the second Top took %v; want the cached rate", d)
	}
}
