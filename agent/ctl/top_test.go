package ctl

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
)

// metricsBackend is a FakeBackend that serves fixed pod metrics.
type metricsBackend struct {
	*apitest.FakeBackend
	items []metricsv1beta1.PodMetrics
}

func (b metricsBackend) PodMetrics(_ context.Context, namespace, name string) ([]metricsv1beta1.PodMetrics, error) {
	var out []metricsv1beta1.PodMetrics
	for _, pm := range b.items {
		if (namespace == "" || pm.Namespace == namespace) && (name == "" || pm.Name == name) {
			out = append(out, pm)
		}
	}
	if name != "" && len(out) == 0 {
		return nil, api.ErrNotFound
	}
	return out, nil
}

func usage(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

func TestTopPods(t *testing.T) {
	b := metricsBackend{FakeBackend: apitest.NewFakeBackend(), items: []metricsv1beta1.PodMetrics{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "logger"}, Containers: []metricsv1beta1.ContainerMetrics{
			{Name: "log", Usage: usage("1500u", "3Mi")}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}, Containers: []metricsv1beta1.ContainerMetrics{
			{Name: "app", Usage: usage("4500000n", "10Mi")}, {Name: "sidecar", Usage: usage("1m", "2560Ki")}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "dns"}, Containers: []metricsv1beta1.ContainerMetrics{
			{Name: "coredns", Usage: usage("250m", "64Mi")}}},
	}}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	s, err := api.Listen(sock, b, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		// Pods sum their containers: 4.5m + 1m = 6m (millicores round up, as kubectl's), 10Mi + 2.5Mi = 12Mi.
		{[]string{"top", "pods"}, 0, "NAME      CPU(cores)   MEMORY(bytes)\nlogger    2m           3Mi\nweb       6m           12Mi\n", ""},
		{[]string{"top", "pod", "web", "--containers"}, 0,
			"POD       NAME      CPU(cores)   MEMORY(bytes)\nweb       app       5m           10Mi\nweb       sidecar   1m           2Mi\n", ""},
		{[]string{"top", "pod", "-A", "--sort-by=cpu", "--no-headers"}, 0,
			"kube-system   dns       250m      64Mi\ndefault       web       6m        12Mi\ndefault       logger    2m        3Mi\n", ""},
		{[]string{"top", "pod", "gone"}, 1, "", "error: podmetrics.metrics.k8s.io \"default/gone\" not found\n"},
		{[]string{"top", "pods", "-n", "empty"}, 0, "", "No resources found in empty namespace.\n"},
		{[]string{"top", "pods", "--sort-by=name"}, 1, "", "error: --sort-by accepts only cpu or memory\n"},
	} {
		code, stdout, stderr := run(sock, tc.args...)
		if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("agentctl %v: exit %d\n%q\n%q\nwant exit %d\n%q\n%q", tc.args, code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
}
