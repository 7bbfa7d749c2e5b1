package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/metrics"
	"github.com/agentd-project/agentd/agent/runtime"
)

// The agent's metrics, driven through the fake runtime.

// metricValue is the value of the series name{labels} (label=value pairs), or
// -1 when there is none; a histogram's value is its count.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// stateGolden is the golden text of the state gauges with the given non-zero
// series (name{labels} → value); every other pod phase and container state is 0.
func stateGolden(nonZero map[string]float64) string {
	var b strings.Builder
	line := func(series string) {
		v := nonZero[series]
		fmt.Fprintf(&b, "%s %v\n", series, v)
	}
	b.WriteString("# HELP agentd_containers Containers of agentd's pods, by state (waiting, running, terminated) and pod source (kubelet_running_containers).\n# TYPE agentd_containers gauge\n")
	var lines []string
	for _, src := range []string{"cluster", "file"} {
		for _, st := range []string{"running", "terminated", "waiting"} {
			lines = append(lines, fmt.Sprintf(`agentd_containers{container_state=%q,source=%q}`, st, src))
		}
	}
	for _, l := range lines {
		line(l)
	}
	b.WriteString("# HELP agentd_pods Pods agentd runs or is to run, by phase and source (file: the manifest directory; cluster: a DaemonSet).\n# TYPE agentd_pods gauge\n")
	lines = nil
	for _, ph := range []string{"Failed", "Pending", "Running", "Succeeded", "Unknown"} {
		for _, src := range []string{"cluster", "file"} {
			lines = append(lines, fmt.Sprintf(`agentd_pods{phase=%q,source=%q}`, ph, src))
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		line(l)
	}
	return b.String()
}

const restartsHelp = "# HELP agentd_container_restarts_total Restarts of a container (its restartCount), as kube-state-metrics' kube_pod_container_status_restarts_total; it starts again at 0 when the pod is replaced.\n# TYPE agentd_container_restarts_total counter\n"

func TestMetricsStartAndRestart(t *testing.T) {
	n := newNode(t)
	n.metrics = metrics.New()
	r := n.start(false)
	r.desire(simplePod(t, "web", "Always"))
	r.waitFor(t, "web running", r.running("web", 0))
	reg := n.metrics.Registry()

	// A start.
	want := stateGolden(map[string]float64{`agentd_containers{container_state="running",source="file"}`: 1, `agentd_pods{phase="Running",source="file"}`: 1}) +
		restartsHelp + `agentd_container_restarts_total{container="app",namespace="default",pod="web"} 0
# HELP agentd_monitors_running Container monitors (agent-monitor processes) agentd manages.
# TYPE agentd_monitors_running gauge
agentd_monitors_running 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "agentd_containers", "agentd_pods", "agentd_container_restarts_total", "agentd_monitors_running"); err != nil {
		t.Errorf("after the start: %v", err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"agentd_pod_start_duration_seconds", nil, 1},
		{"agentd_runtime_operations_total", []string{"operation_type", "run_podsandbox"}, 1},
		{"agentd_runtime_operations_total", []string{"operation_type", "start_container"}, 1},
		{"agentd_runtime_operations_errors_total", []string{"operation_type", "start_container"}, -1},
		{"agentd_runtime_operations_duration_seconds", []string{"operation_type", "start_container"}, 1},
		{"agentd_events_total", []string{"type", "Normal", "reason", "Started"}, 1},
		{"agentd_events_total", []string{"type", "Normal", "reason", "Created"}, 1},
		{"agentd_restore_containers_total", []string{"result", "adopted"}, 0},
	} {
		if got := metricValue(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("after the start: %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := metricValue(t, reg, "agentd_pod_worker_duration_seconds", "operation_type", "sync"); got < 2 {
		t.Errorf("pod worker steps observed: %v, want at least 2 (sandbox, container)", got)
	}
	if got := metricValue(t, reg, "agentd_reconcile_last_success_timestamp_seconds"); got <= 0 {
		t.Errorf("no reconcile round recorded: %v", got)
	}

	// A restart: the monitor restarts the container; its pod started once.
	n.rt.Exit(runtime.MonitorID(string(podUID(r, "web")), "app"), 1)
	r.waitFor(t, "web restarted", r.running("web", 1))
	want = stateGolden(map[string]float64{`agentd_containers{container_state="running",source="file"}`: 1, `agentd_pods{phase="Running",source="file"}`: 1}) +
		restartsHelp + `agentd_container_restarts_total{container="app",namespace="default",pod="web"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "agentd_containers", "agentd_pods", "agentd_container_restarts_total"); err != nil {
		t.Errorf("after the restart: %v", err)
	}
	r.waitFor(t, "the restart's Started event counted", func() bool {
		return metricValue(t, reg, "agentd_events_total", "type", "Normal", "reason", "Started") == 2
	})
	if got := metricValue(t, reg, "agentd_pod_start_duration_seconds"); got != 1 {
		t.Errorf("pod starts observed after a restart: %v, want still 1", got)
	}
	lintRegistry(t, reg)
}

func TestMetricsFailedOperation(t *testing.T) {
	n := newNode(t)
	n.metrics = metrics.New()
	p := simplePod(t, "web", "Always")
	n.rt.FailStart(runtime.MonitorID(string(p.UID), "app"), errors.New("no such runtime"))
	r := n.start(false)
	r.desire(p)
	reg := n.metrics.Registry()
	r.waitFor(t, "the failed start counted", func() bool {
		return metricValue(t, reg, "agentd_runtime_operations_errors_total", "operation_type", "start_container") >= 1
	})
	r.waitFor(t, "the container waiting", func() bool {
		st, ok := r.status("web")
		return ok && len(st.ContainerStatuses) == 1 && st.ContainerStatuses[0].State.Waiting != nil
	})
	want := stateGolden(map[string]float64{`agentd_containers{container_state="waiting",source="file"}`: 1, `agentd_pods{phase="Pending",source="file"}`: 1}) +
		`# HELP agentd_monitors_running Container monitors (agent-monitor processes) agentd manages.
# TYPE agentd_monitors_running gauge
agentd_monitors_running 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "agentd_containers", "agentd_pods", "agentd_monitors_running"); err != nil {
		t.Error(err)
	}
	if got := metricValue(t, reg, "agentd_events_total", "type", "Warning", "reason", "Failed"); got < 1 {
		t.Errorf("Failed events counted: %v", got)
	}
	if got := metricValue(t, reg, "agentd_pod_start_duration_seconds"); got != 0 {
		t.Errorf("a pod that never ran observed as started: %v", got)
	}
	lintRegistry(t, reg)
}

func TestMetricsRestore(t *testing.T) {
	n := newNode(t)
	r := n.start(true)
	r.desire(simplePod(t, "web", "Always"))
	r.waitFor(t, "web running", r.running("web", 0))
	r.stop(t)

	n.metrics = metrics.New()
	r = n.start(true)
	reg := n.metrics.Registry()
	want := `# HELP agentd_restore_containers_total Container monitors found at agentd's start, by what restore did with them: adopted, replaced, lost (died while agentd was away) or unmanaged.
# TYPE agentd_restore_containers_total counter
agentd_restore_containers_total{result="adopted"} 1
agentd_restore_containers_total{result="lost"} 0
agentd_restore_containers_total{result="replaced"} 0
agentd_restore_containers_total{result="unmanaged"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "agentd_restore_containers_total"); err != nil {
		t.Error(err)
	}
	if got := metricValue(t, reg, "agentd_restore_duration_seconds"); got <= 0 {
		t.Errorf("restore duration = %v", got)
	}
	r.desire(simplePod(t, "web", "Always"))
	r.waitFor(t, "web adopted and running", r.running("web", 0))
	// An adopted pod started under the earlier agentd: no start duration.
	if got := metricValue(t, reg, "agentd_pod_start_duration_seconds"); got != 0 {
		t.Errorf("adopted pod observed as started: %v", got)
	}
	r.stop(t)

	// Live restore off: the monitor is replaced.
	n.metrics = metrics.New()
	n.start(false)
	if got := metricValue(t, n.metrics.Registry(), "agentd_restore_containers_total", "result", "replaced"); got != 1 {
		t.Errorf("replaced = %v, want 1", got)
	}
}

func lintRegistry(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// podUID is the UID of the pod named name the agent runs.
func podUID(r *agentRun, name string) types.UID {
	for _, p := range (apiBackend{r.a}).Pods() {
		if p.Name == name {
			return p.UID
		}
	}
	return ""
}

// TestMetricsResourcesAndTop reads a running pod's usage from a cgroup v2
// fixture at the paths the runtime gives its cgroups: /metrics/resource and
// the API's PodMetrics (agentctl top).
func TestMetricsResourcesAndTop(t *testing.T) {
	root := t.TempDir()
	cgroups.TestMode = true // the fixture is plain files
	t.Cleanup(func() { cgroups.TestMode = false })
	old := hostCgroups
	hostCgroups = func() *metrics.CgroupReader { return metrics.NewCgroupReader(root, true) }
	t.Cleanup(func() { hostCgroups = old })

	n := newNode(t)
	n.rt.Settings().CgroupParent = "/agent"
	n.metrics = metrics.New()
	r := n.start(false)
	p := simplePod(t, "web", "Always")
	r.desire(p)
	r.waitFor(t, "web running", r.running("web", 0))
	parent := r.a.rt.Settings().CgroupParent
	write := func(cg string, files map[string]string) {
		dir := filepath.Join(root, cg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctr := runtime.Cgroup(&p.Spec.Containers[0], parent, p).Path
	write(runtime.PodCgroup(parent, p), map[string]string{"cpu.stat": "usage_usec 3000000\n", "memory.current": "20971520\n", "memory.stat": "anon 1048576\ninactive_file 0\n"})
	write(ctr, map[string]string{"cpu.stat": "usage_usec 2000000\n", "memory.current": "16777216\n", "memory.stat": "anon 1048576\ninactive_file 4194304\n"})

	want := `# HELP container_memory_working_set_bytes Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 1.2582912e+07
# HELP pod_cpu_usage_seconds_total Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="default",pod="web"} 3
`
	if err := testutil.GatherAndCompare(n.metrics.ResourceRegistry(), strings.NewReader(want), "container_memory_working_set_bytes", "pod_cpu_usage_seconds_total"); err != nil {
		t.Error(err)
	}
	if got := metricValue(t, n.metrics.ResourceRegistry(), "container_start_time_seconds"); got <= 0 {
		t.Errorf("container_start_time_seconds = %v", got)
	}

	// The scrape was less than a second ago: top reads again a second later.
	// The fixture does not move: 0 cores.
	pms, err := (apiBackend{r.a}).PodMetrics(context.Background(), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(pms) != 1 || len(pms[0].Containers) != 1 {
		t.Fatalf("PodMetrics = %+v", pms)
	}
	u := pms[0].Containers[0].Usage
	if pms[0].Name != "web" || pms[0].Containers[0].Name != "app" || u.Memory().Value() != 12582912 || u.Cpu().MilliValue() != 0 {
		t.Errorf("PodMetrics = %+v", pms[0])
	}
	if _, err := (apiBackend{r.a}).PodMetrics(context.Background(), "default", "nosuch"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("PodMetrics of a pod that does not run: %v, want ErrNotFound", err)
	}
}
