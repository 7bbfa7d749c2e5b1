package metrics

import (
	"context"
	"errors"
	"io/fs"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// PodTarget is a pod whose cgroups the resource metrics read.
type PodTarget struct {
	Namespace, Name string
	Cgroup          string // the pod's cgroup (runtime.PodCgroup)
	Containers      []ContainerTarget
}

// ContainerTarget is a running container whose cgroup the resource metrics read.
type ContainerTarget struct {
	Name      string
	Cgroup    string    // its cgroup (runtime.Cgroup)
	StartTime time.Time // its current run's start
}

// TargetSource lists the pods to read at a scrape; safe for concurrent use, prompt.
type TargetSource func() []PodTarget

// ContainerUsage is one container's usage in a Sample.
type ContainerUsage struct {
	ContainerTarget
	Usage CgroupUsage
}

// PodUsage is one pod's usage in a Sample: its cgroup's, and its containers'
// (those whose cgroup could be read).
type PodUsage struct {
	PodTarget
	Usage      CgroupUsage
	HasUsage   bool // the pod's cgroup could be read
	Containers []ContainerUsage
}

// Resources reads the cgroups of pods and containers, and keeps the CPU rates
// of `agentctl top`. It is safe for concurrent use.
type Resources struct {
	cgroups *CgroupReader
	node    *NodeReader // nil: no node metrics
	log     logr.Logger
	rates   *RateCache
}

// NewResources reads cgroups with cg and the node's usage with node (may be nil).
func NewResources(cg *CgroupReader, node *NodeReader, log logr.Logger) *Resources {
	return &Resources{cgroups: cg, node: node, log: log, rates: NewRateCache()}
}

// Sample reads the usage of targets now. A cgroup that is gone (a container
// that just exited) is left out; other read errors are counted in errs.
func (r *Resources) Sample(targets []PodTarget) (pods []PodUsage, errs int) {
	for _, t := range targets {
		p := PodUsage{PodTarget: t}
		u, err := r.cgroups.Read(t.Cgroup)
		switch {
		case err == nil:
			p.Usage, p.HasUsage = u, true
		case !errors.Is(err, fs.ErrNotExist):
			errs++
			r.log.V(1).Info("Could not read a pod's cgroup", "pod", t.Namespace+"/"+t.Name, "error", err.Error())
		}
		for _, c := range t.Containers {
			u, err := r.cgroups.Read(c.Cgroup)
			switch {
			case err == nil:
				p.Containers = append(p.Containers, ContainerUsage{ContainerTarget: c, Usage: u})
			case !errors.Is(err, fs.ErrNotExist):
				errs++
				r.log.V(1).Info("Could not read a container's cgroup", "pod", t.Namespace+"/"+t.Name, "container", c.Name, "error", err.Error())
			}
		}
		pods = append(pods, p)
	}
	return pods, errs
}

// ContainerTop is a container's CPU rate (cores) and working set, for top.
type ContainerTop struct {
	Name       string
	CPUCores   float64
	WorkingSet uint64
}

// PodTop is a pod's containers' usage for top, read at Timestamp, the CPU rate
// over Window (the longest of its containers').
type PodTop struct {
	Namespace, Name string
	Timestamp       time.Time
	Window          time.Duration
	Containers      []ContainerTop
}

// Top returns the CPU rates and working sets of the targets' containers. A CPU
// rate needs two readings at least MinRateWindow apart: the last one this
// cache holds (from an earlier Top or scrape of /metrics/resource, up to
// MaxRateAge old) and this one; a container without one is read again after
// MinRateWindow, so the first Top takes that long, as kubectl top's first
// answer after metrics-server starts waits for its second scrape.
func (r *Resources) Top(ctx context.Context, targets []PodTarget) ([]PodTop, error) {
	for attempt := 0; ; attempt++ {
		now := time.Now()
		pods, _ := r.Sample(targets)
		out := make([]PodTop, 0, len(pods))
		missing := false
		for _, p := range pods {
			pt := PodTop{Namespace: p.Namespace, Name: p.Name, Timestamp: now}
			for _, c := range p.Containers {
				rate, window, ok := r.rates.Observe(c.Cgroup, c.Usage.CPUNanos, now)
				if !ok {
					missing = true
				}
				pt.Window = max(pt.Window, window)
				pt.Containers = append(pt.Containers, ContainerTop{Name: c.Name, CPUCores: rate, WorkingSet: c.Usage.WorkingSet})
			}
			out = append(out, pt)
		}
		if !missing || attempt > 0 {
			return out, nil
		}
		t := time.NewTimer(MinRateWindow)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// resourceCollector is /metrics/resource: kubelet's resource metrics endpoint.
type resourceCollector struct {
	r      *Resources
	source TargetSource

	containerCPU, containerWS, containerRSS, containerStart *prometheus.Desc
	podCPU, podWS, nodeCPU, nodeWS, scrapeError             *prometheus.Desc
}

// NewResourceCollector returns the collector of /metrics/resource, with
// kubelet's names (cAdvisor's for containers): container_cpu_usage_seconds_total,
// container_memory_working_set_bytes, container_memory_rss,
// container_start_time_seconds, pod_cpu_usage_seconds_total,
// pod_memory_working_set_bytes, node_cpu_usage_seconds_total,
// node_memory_working_set_bytes and scrape_error.
func NewResourceCollector(r *Resources, source TargetSource) prometheus.Collector {
	ctr := []string{"container", "pod", "namespace"}
	pod := []string{"pod", "namespace"}
	return &resourceCollector{r: r, source: source,
		containerCPU:   prometheus.NewDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", ctr, nil),
		containerWS:    prometheus.NewDesc("container_memory_working_set_bytes", "Current working set of the container in bytes", ctr, nil),
		containerRSS:   prometheus.NewDesc("container_memory_rss", "Size of RSS of the container in bytes", ctr, nil),
		containerStart: prometheus.NewDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds", ctr, nil),
		podCPU:         prometheus.NewDesc("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", pod, nil),
		podWS:          prometheus.NewDesc("pod_memory_working_set_bytes", "Current working set of the pod in bytes", pod, nil),
		nodeCPU:        prometheus.NewDesc("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", nil, nil),
		nodeWS:         prometheus.NewDesc("node_memory_working_set_bytes", "Current working set of the node in bytes", nil, nil),
		scrapeError:    prometheus.NewDesc("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil),
	}
}

func (c *resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.containerCPU, c.containerWS, c.containerRSS, c.containerStart, c.podCPU, c.podWS, c.nodeCPU, c.nodeWS, c.scrapeError} {
		ch <- d
	}
}

func (c *resourceCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	pods, errs := c.r.Sample(c.source())
	seenPod := map[[2]string]bool{}
	seenCtr := map[[3]string]bool{}
	for _, p := range pods {
		// One series per name: of two copies of a pod (one stopping), the first listed.
		if pk := [2]string{p.Name, p.Namespace}; p.HasUsage && !seenPod[pk] {
			seenPod[pk] = true
			ch <- prometheus.MustNewConstMetric(c.podCPU, prometheus.CounterValue, float64(p.Usage.CPUNanos)/1e9, p.Name, p.Namespace)
			ch <- prometheus.MustNewConstMetric(c.podWS, prometheus.GaugeValue, float64(p.Usage.WorkingSet), p.Name, p.Namespace)
		}
		for _, ct := range p.Containers {
			ck := [3]string{ct.Name, p.Name, p.Namespace}
			if seenCtr[ck] {
				continue
			}
			seenCtr[ck] = true
			// A scrape is a reading for top's CPU rates too.
			c.r.rates.Observe(ct.Cgroup, ct.Usage.CPUNanos, now)
			ch <- prometheus.MustNewConstMetric(c.containerCPU, prometheus.CounterValue, float64(ct.Usage.CPUNanos)/1e9, ct.Name, p.Name, p.Namespace)
			ch <- prometheus.MustNewConstMetric(c.containerWS, prometheus.GaugeValue, float64(ct.Usage.WorkingSet), ct.Name, p.Name, p.Namespace)
			ch <- prometheus.MustNewConstMetric(c.containerRSS, prometheus.GaugeValue, float64(ct.Usage.RSS), ct.Name, p.Name, p.Namespace)
			if !ct.StartTime.IsZero() {
				ch <- prometheus.MustNewConstMetric(c.containerStart, prometheus.GaugeValue, float64(ct.StartTime.UnixNano())/1e9, ct.Name, p.Name, p.Namespace)
			}
		}
	}
	if c.r.node != nil {
		if n, err := c.r.node.Read(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.nodeCPU, prometheus.CounterValue, n.CPUSeconds)
			ch <- prometheus.MustNewConstMetric(c.nodeWS, prometheus.GaugeValue, float64(n.WorkingSet))
		} else {
			errs++
			c.r.log.V(1).Info("Could not read the node's usage", "error", err.Error())
		}
	}
	scrapeErr := 0.0
	if errs > 0 {
		scrapeErr = 1
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeError, prometheus.GaugeValue, scrapeErr)
}

// The CPU rate window of top (RateCache).
const (
	// MinRateWindow is the shortest interval a CPU rate is computed over.
	MinRateWindow = time.Second
	// MaxRateAge is how old a reading may be and still be the start of a rate;
	// past it the rate would be an average over a long past, and a new one is begun.
	MaxRateAge = 2 * time.Minute
)

// RateCache turns cumulative CPU readings into rates, per key (a cgroup): the
// rate over the interval between the reading that began it and the first
// reading at least MinRateWindow later. It is safe for concurrent use.
type RateCache struct {
	mu        sync.Mutex // guards m and lastPrune
	m         map[string]*rateEntry
	lastPrune time.Time
}

type rateEntry struct {
	baseNanos uint64
	baseTime  time.Time
	rate      float64 // cores
	window    time.Duration
	hasRate   bool
	seen      time.Time
}

// NewRateCache returns an empty cache.
func NewRateCache() *RateCache { return &RateCache{m: map[string]*rateEntry{}} }

// Observe records a reading of key's cumulative CPU time taken at t and
// returns its rate in cores and the window it was computed over; ok is false
// until a rate is known.
func (c *RateCache) Observe(key string, nanos uint64, t time.Time) (rate float64, window time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Sub(c.lastPrune) > MaxRateAge {
		for k, e := range c.m {
			if t.Sub(e.seen) > MaxRateAge {
				delete(c.m, k)
			}
		}
		c.lastPrune = t
	}
	e := c.m[key]
	// A new cgroup of the same path (a restarted container) reads less: begin again.
	if e == nil || t.Sub(e.baseTime) > MaxRateAge || nanos < e.baseNanos {
		c.m[key] = &rateEntry{baseNanos: nanos, baseTime: t, seen: t}
		return 0, 0, false
	}
	e.seen = t
	if dt := t.Sub(e.baseTime); dt >= MinRateWindow {
		e.rate = float64(nanos-e.baseNanos) / float64(dt.Nanoseconds())
		e.window, e.hasRate = dt, true
		e.baseNanos, e.baseTime = nanos, t
	}
	return e.rate, e.window, e.hasRate
}
