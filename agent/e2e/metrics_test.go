package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestE2EMetrics: with metrics-address set, agentd serves its own metrics on
// /metrics and kubelet's resource metrics, read from the pod's cgroups, on
// /metrics/resource; `agentctl top pod` prints the pod's usage from the same
// readings.
func TestE2EMetrics(t *testing.T) {
	addr := freeLoopbackPort(t)
	a := newAgent(t, map[string]any{"metrics-address": addr})
	a.start()
	a.write("web.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - {name: app, image: "localhost/busybox:latest", imagePullPolicy: Never, command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"]}
`)
	a.waitStatus("web", "Running", 60*time.Second)

	scrape := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return resp.Status + "\n" + string(body)
		}
		return string(body)
	}
	has := func(path string, series ...string) func() (bool, string) {
		return func() (bool, string) {
			body := scrape(path)
			for _, s := range series {
				if !strings.Contains(body, s) {
					return false, "no " + s + " in:\n" + body
				}
			}
			return true, ""
		}
	}
	a.eventually(30*time.Second, "the pod's series on /metrics", has("/metrics",
		`agentd_pods{phase="Running",source="file"} 1`,
		`agentd_containers{container_state="running",source="file"} 1`,
		`agentd_container_restarts_total{container="app",namespace="default",pod="web"} 0`,
		`agentd_monitors_running 1`,
		`agentd_pod_start_duration_seconds_count 1`,
		`agentd_runtime_operations_total{operation_type="start_container"} 1`,
		`agentd_events_total{reason="Started",type="Normal"} 1`,
		`agentd_restore_containers_total{result="adopted"} 0`,
		"go_goroutines", "process_resident_memory_bytes"))
	a.eventually(30*time.Second, "the pod's series on /metrics/resource", has("/metrics/resource",
		`container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"}`,
		`container_memory_working_set_bytes{container="app",namespace="default",pod="web"}`,
		`container_memory_rss{container="app",namespace="default",pod="web"}`,
		`container_start_time_seconds{container="app",namespace="default",pod="web"}`,
		`pod_cpu_usage_seconds_total{namespace="default",pod="web"}`,
		`pod_memory_working_set_bytes{namespace="default",pod="web"}`,
		"node_cpu_usage_seconds_total", "node_memory_working_set_bytes", "scrape_error 0"))
	// The container's shell uses memory: a working set above zero.
	body := scrape("/metrics/resource")
	if strings.Contains(body, `container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 0`+"\n") {
		t.Errorf("the container's working set is 0:\n%s", body)
	}

	out := a.ctl("top", "pod", "web")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME CPU(cores) MEMORY(bytes)" {
		t.Fatalf("agentctl top pod web:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 3 || f[0] != "web" || !strings.HasSuffix(f[1], "m") || !strings.HasSuffix(f[2], "Mi") {
		t.Errorf("agentctl top pod web: row %q", lines[1])
	}
	out = a.ctl("top", "pod", "web", "--containers")
	if !strings.Contains(out, "POD") || !strings.Contains(strings.Join(strings.Fields(out), " "), "web app ") {
		t.Errorf("agentctl top pod web --containers:\n%s", out)
	}
	if out, err := a.try("top", "pod", "nosuch"); err == nil || !strings.Contains(out, `"default/nosuch" not found`) {
		t.Errorf("agentctl top pod nosuch: %v\n%s", err, out)
	}
	if !strings.Contains(a.stderr.String(), "Serving metrics") {
		t.Errorf("agentd did not log where it serves metrics:\n%s", a.stderr)
	}
}

// freeLoopbackPort returns a loopback address whose port was free a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}
