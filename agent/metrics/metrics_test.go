package metrics

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLint(t *testing.T) {
	m := New()
	m.Register(NewStateCollector(func() []PodSample {
		return []PodSample{{Namespace: "default", Name: "web", Source: SourceFile, Phase: "Running",
			Containers: []ContainerSample{{Name: "app", State: "running", Restarts: 2, Monitor: true}}}}
	}))
	m.PodStarted(time.Second)
	m.PodWorkerDone("sync", time.Millisecond)
	m.ReconcileDone(time.Millisecond, time.Now())
	m.RuntimeOperation("start_container", time.Millisecond, errors.New("boom"))
	m.RestoreDone(time.Second, map[string]int{RestoreAdopted: 1})
	m.ImagePullStarted()(100, nil)
	m.Event("Normal", "Started")
	lint(t, m.Registry())
}

func TestImagePulls(t *testing.T) {
	m := New()
	done := m.ImagePullStarted()
	if v := testutil.ToFloat64(m.pullsInProgress); v != 1 {
		t.Errorf("in progress during a pull = %v, want 1", v)
	}
	done(1000, nil)
	m.ImagePullStarted()(0, errors.New("unauthorized"))
	want := `
# HELP agentd_image_pulls_bytes_total Bytes of the images pulled successfully (CRI-O's image_pulls_bytes_total).
# TYPE agentd_image_pulls_bytes_total counter
agentd_image_pulls_bytes_total 1000
# HELP agentd_image_pulls_in_progress Image pulls under way.
# TYPE agentd_image_pulls_in_progress gauge
agentd_image_pulls_in_progress 0
# HELP agentd_image_pulls_total Image pulls finished, by result: success or failure (CRI-O's image_pulls_success_total and image_pulls_failure_total).
# TYPE agentd_image_pulls_total counter
agentd_image_pulls_total{result="failure"} 1
agentd_image_pulls_total{result="success"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "agentd_image_pulls_bytes_total",
		"agentd_image_pulls_in_progress", "agentd_image_pulls_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.pullDuration); n != 1 {
		t.Errorf("pull duration histogram has %d series", n)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics // metrics-address empty: every call does nothing
	m.PodStarted(time.Second)
	m.RuntimeOperation("x", 0, nil)
	m.ImagePullStarted()(1, nil)
	m.Event("Normal", "Started")
	m.Register(nil)
}

func TestStateCollectorTwoCopies(t *testing.T) {
	m := New()
	m.Register(NewStateCollector(func() []PodSample {
		// The old copy of a changed manifest stopping, the new one starting.
		return []PodSample{
			{Namespace: "default", Name: "web", Source: SourceFile, Phase: "Running", Containers: []ContainerSample{{Name: "app", State: "running", Restarts: 3, Monitor: true}}},
			{Namespace: "default", Name: "web", Source: SourceFile, Phase: "Pending", Containers: []ContainerSample{{Name: "app", State: "waiting"}}},
		}
	}))
	want := `
# HELP agentd_container_restarts_total Restarts of a container (its restartCount), as kube-state-metrics' kube_pod_container_status_restarts_total; it starts again at 0 when the pod is replaced.
# TYPE agentd_container_restarts_total counter
agentd_container_restarts_total{container="app",namespace="default",pod="web"} 3
# HELP agentd_monitors_running Container monitors (agent-monitor processes) agentd manages.
# TYPE agentd_monitors_running gauge
agentd_monitors_running 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "agentd_container_restarts_total", "agentd_monitors_running"); err != nil {
		t.Error(err)
	}
}

func TestServe(t *testing.T) {
	m := New()
	s, err := Listen("127.0.0.1:0", m.Handler(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m.Event("Normal", "Started")
	for path, want := range map[string]string{"/metrics": `agentd_events_total{reason="Started",type="Normal"} 1`, "/metrics/resource": ""} {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
		if !strings.Contains(string(body), want) {
			t.Errorf("GET %s: no %q in:\n%s", path, want, body)
		}
	}
}
