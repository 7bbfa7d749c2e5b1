package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Pod sources (the source label).
const (
	SourceFile    = "file"    // a static pod of the manifest directory
	SourceCluster = "cluster" // a pod of a cluster DaemonSet
)

// Pod phases and container states, the values the gauges always have a series for.
var (
	podPhases       = []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}
	containerStates = []string{"waiting", "running", "terminated"}
	sources         = []string{SourceFile, SourceCluster}
)

// PodSample is what the state collector shows of a pod.
type PodSample struct {
	Namespace, Name string
	Source          string // SourceFile, SourceCluster
	Phase           string // corev1.PodPhase
	Containers      []ContainerSample
}

// ContainerSample is what the state collector shows of a container.
type ContainerSample struct {
	Name     string
	State    string // waiting, running or terminated
	Restarts int32
	// Monitor: agentd manages a monitor of this container (alive, or starting).
	Monitor bool
}

// StateSource lists the pods the agent has, for a scrape. It must be safe for
// concurrent use and return promptly.
type StateSource func() []PodSample

// stateCollector turns the agent's pods into gauges at each scrape, so they are
// never out of step with what `agentctl get pods` shows.
type stateCollector struct {
	source                          StateSource
	pods, containers, restarts, mon *prometheus.Desc
}

// NewStateCollector returns the collector of agentd_pods, agentd_containers,
// agentd_container_restarts_total and agentd_monitors_running.
func NewStateCollector(source StateSource) prometheus.Collector {
	return &stateCollector{
		source: source,
		pods: prometheus.NewDesc(Namespace+"_pods", "Pods agentd runs or is to run, by phase and source (file: the manifest directory; cluster: a DaemonSet).",
			[]string{"phase", "source"}, nil),
		containers: prometheus.NewDesc(Namespace+"_containers", "Containers of agentd's pods, by state (waiting, running, terminated) and pod source (kubelet_running_containers).",
			[]string{"container_state", "source"}, nil),
		restarts: prometheus.NewDesc(Namespace+"_container_restarts_total", "Restarts of a container (its restartCount), as kube-state-metrics' kube_pod_container_status_restarts_total; it starts again at 0 when the pod is replaced.",
			[]string{"namespace", "pod", "container"}, nil),
		mon: prometheus.NewDesc(Namespace+"_monitors_running", "Container monitors (agent-monitor processes) agentd manages.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pods
	ch <- c.containers
	ch <- c.restarts
	ch <- c.mon
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ a, b string }
	pods, ctrs := map[key]int{}, map[key]int{}
	for _, s := range sources {
		for _, p := range podPhases {
			pods[key{p, s}] = 0
		}
		for _, st := range containerStates {
			ctrs[key{st, s}] = 0
		}
	}
	monitors := 0
	// Two copies of a pod (the old one stopping, the new one starting) have one
	// series: the larger count.
	restarts := map[[3]string]int32{}
	for _, p := range c.source() {
		pods[key{p.Phase, p.Source}]++
		for _, ct := range p.Containers {
			ctrs[key{ct.State, p.Source}]++
			k := [3]string{p.Namespace, p.Name, ct.Name}
			restarts[k] = max(restarts[k], ct.Restarts)
			if ct.Monitor {
				monitors++
			}
		}
	}
	for k, n := range restarts {
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(n), k[0], k[1], k[2])
	}
	for k, n := range pods {
		ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(n), k.a, k.b)
	}
	for k, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(n), k.a, k.b)
	}
	ch <- prometheus.MustNewConstMetric(c.mon, prometheus.GaugeValue, float64(monitors))
}
