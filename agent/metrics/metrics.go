// Package metrics is agentd's Prometheus instrumentation: the metrics of
// /metrics (the agent's own: pods and containers by phase and source, restarts,
// pod start and sync durations, runtime operations, restore, image pulls,
// events) and of /metrics/resource (cAdvisor's per-container and per-pod CPU
// and memory, read from the containers' cgroups v1 or v2, and the node's), each
// on a registry of its own: nothing is registered with client_golang's global
// default registry, so tests make a fresh one with New.
//
// Names follow kubelet's (pkg/kubelet/metrics) and CRI-O's where the meaning is
// the same, with agentd's prefix instead of kubelet's: agentd_pod_start_duration_seconds is
// kubelet_pod_start_duration_seconds with its buckets,
// agentd_runtime_operations_total|errors_total|duration_seconds{operation_type}
// are kubelet's runtime operation metrics, agentd_pod_worker_duration_seconds
// kubelet's. The resource endpoint's names are cAdvisor's and kubelet's
// /metrics/resource, unprefixed, so dashboards made for kubelet work.
//
// Settings: metrics-address (agent/config) is where Serve listens; empty turns
// the endpoint off, and the agent then makes no *Metrics (every method is a
// no-op on a nil *Metrics). `agentctl top` reads the same cgroup files through
// agentd's API whether or not the endpoint is on.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes agentd's own metrics.
const Namespace = "agentd"

// podStartDurationBuckets are kubelet's for kubelet_pod_start_duration_seconds.
var podStartDurationBuckets = []float64{0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600}

// imagePullDurationBuckets: from a cached layer's second to a big image's hour.
var imagePullDurationBuckets = []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600}

// Restore results (RestoreResult).
const (
	RestoreAdopted   = "adopted"   // a live monitor was taken over
	RestoreReplaced  = "replaced"  // a monitor was stopped: live restore off, a restore-sensitive setting changed, or no valid record
	RestoreLost      = "lost"      // the monitor had died while agentd was away: its container was killed
	RestoreUnmanaged = "unmanaged" // a monitor of an incompatible protocol, left alone
)

// Metrics are agentd's own metrics, on their own registry. The zero value is
// not usable; a nil *Metrics is: every method then does nothing. It is safe for
// concurrent use.
type Metrics struct {
	reg      *prometheus.Registry
	resource *prometheus.Registry

	podStart          prometheus.Histogram
	podWorker         *prometheus.HistogramVec
	reconcile         prometheus.Histogram
	reconcileLast     prometheus.Gauge
	runtimeOps        *prometheus.CounterVec
	runtimeErrs       *prometheus.CounterVec
	runtimeDuration   *prometheus.HistogramVec
	restoreContainers *prometheus.CounterVec
	restoreDuration   prometheus.Gauge
	pulls             *prometheus.CounterVec
	pullBytes         prometheus.Counter
	pullDuration      prometheus.Histogram
	pullsInProgress   prometheus.Gauge
	events            *prometheus.CounterVec
}

// New makes the metrics on a fresh registry, with the Go runtime's and the
// process's collectors (go_*, process_*) as kubelet has them.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), resource: prometheus.NewRegistry()}
	m.podStart = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "pod_start_duration_seconds",
		Help:    "Duration in seconds from agentd first seeing a pod desired to all its containers running (kubelet_pod_start_duration_seconds).",
		Buckets: podStartDurationBuckets})
	m.podWorker = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "pod_worker_duration_seconds",
		Help:    "Duration in seconds of one step of a pod worker: sync (a step towards the desired state) or kill (kubelet_pod_worker_duration_seconds).",
		Buckets: prometheus.DefBuckets}, []string{"operation_type"})
	m.reconcile = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "reconcile_duration_seconds",
		Help:    "Duration in seconds of one round of the agent's loop: planning every pod and handing the work to the pod workers.",
		Buckets: prometheus.DefBuckets})
	m.reconcileLast = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "reconcile_last_success_timestamp_seconds",
		Help: "Unix time of the end of the agent loop's last round (kubelet_pleg_last_seen_seconds): stale when the loop is stuck."})
	m.runtimeOps = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "runtime_operations_total",
		Help: "Cumulative number of runtime operations by operation type (kubelet_runtime_operations_total)."}, []string{"operation_type"})
	m.runtimeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "runtime_operations_errors_total",
		Help: "Cumulative number of runtime operation errors by operation type (kubelet_runtime_operations_errors_total)."}, []string{"operation_type"})
	m.runtimeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "runtime_operations_duration_seconds",
		Help:    "Duration in seconds of runtime operations by operation type (kubelet_runtime_operations_duration_seconds).",
		Buckets: prometheus.ExponentialBuckets(.005, 2.5, 14)}, []string{"operation_type"})
	m.restoreContainers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "restore_containers_total",
		Help: "Container monitors found at agentd's start, by what restore did with them: adopted, replaced, lost (died while agentd was away) or unmanaged."}, []string{"result"})
	m.restoreDuration = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "restore_duration_seconds",
		Help: "Duration in seconds of the restore at agentd's start: finding, verifying and adopting or stopping the monitors an earlier agentd left."})
	m.pulls = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "image_pulls_total",
		Help: "Image pulls finished, by result: success or failure (CRI-O's image_pulls_success_total and image_pulls_failure_total)."}, []string{"result"})
	m.pullBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "image_pulls_bytes_total",
		Help: "Bytes of the images pulled successfully (CRI-O's image_pulls_bytes_total)."})
	m.pullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "image_pull_duration_seconds",
		Help: "Duration in seconds of image pulls, successful or not (kubelet_image_pull_duration_seconds).", Buckets: imagePullDurationBuckets})
	m.pullsInProgress = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "image_pulls_in_progress",
		Help: "Image pulls under way."})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "events_total",
		Help: "Events recorded (agentctl get events), by type and reason, repeats included."}, []string{"type", "reason"})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.podStart, m.podWorker, m.reconcile, m.reconcileLast, m.runtimeOps, m.runtimeErrs, m.runtimeDuration,
		m.restoreContainers, m.restoreDuration, m.pulls, m.pullBytes, m.pullDuration, m.pullsInProgress, m.events)
	// The result labels exist from the start, at 0, so rate() and absent() work before the first pull or restore.
	for _, r := range []string{"success", "failure"} {
		m.pulls.WithLabelValues(r)
	}
	for _, r := range []string{RestoreAdopted, RestoreReplaced, RestoreLost, RestoreUnmanaged} {
		m.restoreContainers.WithLabelValues(r)
	}
	return m
}

// Registry is the registry of /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ResourceRegistry is the registry of /metrics/resource.
func (m *Metrics) ResourceRegistry() *prometheus.Registry { return m.resource }

// Register adds a collector of /metrics (the agent's state, StateCollector).
func (m *Metrics) Register(c prometheus.Collector) {
	if m != nil {
		m.reg.MustRegister(c)
	}
}

// RegisterResource adds a collector of /metrics/resource (ResourceCollector).
func (m *Metrics) RegisterResource(c prometheus.Collector) {
	if m != nil {
		m.resource.MustRegister(c)
	}
}

// Handler serves /metrics and /metrics/resource.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 30 * time.Second}
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, opts))
	mux.Handle("GET /metrics/resource", promhttp.HandlerFor(m.resource, opts))
	return mux
}

// PodStarted observes a pod's start duration: from first desired to all its
// containers running.
func (m *Metrics) PodStarted(d time.Duration) {
	if m != nil {
		m.podStart.Observe(d.Seconds())
	}
}

// PodWorkerDone observes one step of a pod worker ("sync" or "kill").
func (m *Metrics) PodWorkerDone(operation string, d time.Duration) {
	if m != nil {
		m.podWorker.WithLabelValues(operation).Observe(d.Seconds())
	}
}

// ReconcileDone observes a round of the agent's loop that ended at end.
func (m *Metrics) ReconcileDone(d time.Duration, end time.Time) {
	if m != nil {
		m.reconcile.Observe(d.Seconds())
		m.reconcileLast.Set(float64(end.UnixNano()) / 1e9)
	}
}

// RuntimeOperation counts a runtime operation, its duration and its error.
func (m *Metrics) RuntimeOperation(operation string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.runtimeOps.WithLabelValues(operation).Inc()
	m.runtimeDuration.WithLabelValues(operation).Observe(d.Seconds())
	if err != nil {
		m.runtimeErrs.WithLabelValues(operation).Inc()
	}
}

// RestoreDone records a restore: how long it took and how many monitors had
// each result (RestoreAdopted, ...).
func (m *Metrics) RestoreDone(d time.Duration, results map[string]int) {
	if m == nil {
		return
	}
	m.restoreDuration.Set(d.Seconds())
	for r, n := range results {
		m.restoreContainers.WithLabelValues(r).Add(float64(n))
	}
}

// ImagePullStarted counts a pull under way; call the function it returns, once,
// when the pull ends, with the bytes pulled (0 on failure) and its error:
//
//	done := m.ImagePullStarted()
//	res, err := puller.Pull(...)
//	done(res.Size, err)
func (m *Metrics) ImagePullStarted() (done func(bytes int64, err error)) {
	if m == nil {
		return func(int64, error) {}
	}
	start := time.Now()
	m.pullsInProgress.Inc()
	return func(bytes int64, err error) {
		m.ImagePullFinished(bytes, time.Since(start), err)
	}
}

// ImagePullFinished records a pull that took d, begun with ImagePullStarted's
// count (use the function ImagePullStarted returns rather than this, unless
// the duration is measured elsewhere, as pull.Result.Duration).
func (m *Metrics) ImagePullFinished(bytes int64, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.pullsInProgress.Dec()
	m.pullDuration.Observe(d.Seconds())
	if err != nil {
		m.pulls.WithLabelValues("failure").Inc()
		return
	}
	m.pulls.WithLabelValues("success").Inc()
	if bytes > 0 {
		m.pullBytes.Add(float64(bytes))
	}
}

// Event counts an event recorded (state.Recorder's observer).
func (m *Metrics) Event(typ, reason string) {
	if m != nil {
		m.events.WithLabelValues(typ, reason).Inc()
	}
}
