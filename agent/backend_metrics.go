package agent

import (
	"cmp"
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/agentd-project/agentd/agent/api"
)

var _ api.MetricsBackend = apiBackend{}

// PodMetrics serves `agentctl top`: the running containers' CPU rate and
// memory working set read from their cgroups (metrics.Resources.Top), as
// metrics-server's PodMetrics.
func (b apiBackend) PodMetrics(ctx context.Context, namespace, name string) ([]metricsv1beta1.PodMetrics, error) {
	targets := b.a.podTargets(namespace, name)
	if name != "" && len(targets) == 0 {
		return nil, api.ErrNotFound // the server names the pod
	}
	tops, err := b.a.resources.Top(ctx, targets)
	if err != nil {
		return nil, err
	}
	out := make([]metricsv1beta1.PodMetrics, 0, len(tops))
	for _, t := range tops {
		pm := metricsv1beta1.PodMetrics{
			TypeMeta:   metav1.TypeMeta{APIVersion: metricsv1beta1.SchemeGroupVersion.String(), Kind: "PodMetrics"},
			ObjectMeta: metav1.ObjectMeta{Namespace: t.Namespace, Name: t.Name},
			Timestamp:  metav1.NewTime(t.Timestamp),
			Window:     metav1.Duration{Duration: t.Window},
		}
		for _, c := range t.Containers {
			pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Name: c.Name, Usage: corev1.ResourceList{
				corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(c.CPUCores*1e9), resource.Nano),
				corev1.ResourceMemory: *resource.NewQuantity(int64(c.WorkingSet), resource.BinarySI),
			}})
		}
		slices.SortFunc(pm.Containers, func(x, y metricsv1beta1.ContainerMetrics) int { return cmp.Compare(x.Name, y.Name) })
		out = append(out, pm)
	}
	slices.SortFunc(out, func(x, y metricsv1beta1.PodMetrics) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	return out, nil
}
