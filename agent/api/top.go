package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// The resource metrics API of `agentctl top`: metrics-server's metrics.k8s.io/v1beta1 paths and types.
const (
	// PathPodMetrics: GET a PodMetricsList of every namespace.
	PathPodMetrics = "/apis/metrics.k8s.io/v1beta1/pods"
	// PathNamespacedPodMetrics: GET …/namespaces/{namespace}/pods (PodMetricsList), …/pods/{name} (PodMetrics).
	pathNamespacedPodMetrics = "/apis/metrics.k8s.io/v1beta1/namespaces/"
)

// MetricsBackend is the optional part of a Backend that serves pod metrics;
// a Backend without it has no metrics paths (404). Safe for concurrent use.
type MetricsBackend interface {
	// PodMetrics returns the usage of the running pods of namespace (""
	// every namespace), or of one pod when name is set (ErrNotFound when it
	// does not run). CPU is a rate over the window each item names; a first
	// request may take a second to get two readings.
	PodMetrics(ctx context.Context, namespace, name string) ([]metricsv1beta1.PodMetrics, error)
}

// metricsRoutes adds the metrics paths when the backend serves them.
func (s *Server) metricsRoutes(mux *http.ServeMux) {
	mb, ok := s.b.(MetricsBackend)
	if !ok {
		return
	}
	list := func(w http.ResponseWriter, r *http.Request) {
		items, err := mb.PodMetrics(r.Context(), r.PathValue("namespace"), "")
		if err != nil {
			writeError(w, err)
			return
		}
		l := &metricsv1beta1.PodMetricsList{Items: items}
		l.APIVersion, l.Kind = metricsv1beta1.SchemeGroupVersion.String(), "PodMetricsList"
		writeJSON(w, l)
	}
	mux.HandleFunc("GET "+PathPodMetrics, list)
	mux.HandleFunc("GET "+pathNamespacedPodMetrics+"{namespace}/pods", list)
	mux.HandleFunc("GET "+pathNamespacedPodMetrics+"{namespace}/pods/{name}", func(w http.ResponseWriter, r *http.Request) {
		items, err := mb.PodMetrics(r.Context(), r.PathValue("namespace"), r.PathValue("name"))
		if errors.Is(err, ErrNotFound) || err == nil && len(items) == 0 {
			writeError(w, podMetricsNotFound(r.PathValue("namespace"), r.PathValue("name")))
			return
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, &items[0])
	})
}

// podMetricsNotFound is metrics-server's answer for a pod it has no metrics of.
func podMetricsNotFound(namespace, name string) error {
	return fmt.Errorf("%w: podmetrics.metrics.k8s.io %q not found", ErrNotFound, namespace+"/"+name)
}

// PodMetrics returns the usage of the running pods of namespace ("" every
// namespace), or of the pod name in namespace.
func (c *Client) PodMetrics(ctx context.Context, namespace, name string) ([]metricsv1beta1.PodMetrics, error) {
	switch {
	case name != "":
		var pm metricsv1beta1.PodMetrics
		if err := c.getJSON(ctx, pathNamespacedPodMetrics+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name), nil, &pm); err != nil {
			return nil, err
		}
		return []metricsv1beta1.PodMetrics{pm}, nil
	case namespace != "":
		var l metricsv1beta1.PodMetricsList
		if err := c.getJSON(ctx, pathNamespacedPodMetrics+url.PathEscape(namespace)+"/pods", nil, &l); err != nil {
			return nil, err
		}
		return l.Items, nil
	}
	var l metricsv1beta1.PodMetricsList
	if err := c.getJSON(ctx, PathPodMetrics, nil, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}
