package printers

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var (
	podColumns     = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
	podWideColumns = []string{"IP", "NODE", "NOMINATED NODE", "READINESS GATES"}
)

// PrintPods prints pods as `kubectl get pods -o <format>` does.
//
//   - "" and "wide": the table (NAMESPACE first when showNamespace, as with -A; no header
//     line with noHeaders). Nothing at all for no pods: kubectl then says
//     "No resources found in <namespace> namespace." on stderr, which is the caller's part.
//   - "json" and "yaml": a v1 List (kubectl's kind "List"; it decodes as a PodList) whose
//     items have apiVersion v1 and kind Pod, with their status.
//   - "name": "pod/<name>" per line.
//
// Pods are printed in the API server's order, by namespace then name. now is the time
// ages are measured against.
func PrintPods(w io.Writer, pods []corev1.Pod, format string, showNamespace bool, noHeaders bool, now time.Time) error {
	return PrintPodsSorted(w, pods, format, showNamespace, noHeaders, "", now)
}

// PrintPodsSorted is PrintPods ordered by the jsonpath sortBy, as kubectl's --sort-by
// (SortBy), over the API server's order; "" is PrintPods' order.
func PrintPodsSorted(w io.Writer, pods []corev1.Pod, format string, showNamespace bool, noHeaders bool, sortBy string, now time.Time) error {
	sorted := slices.Clone(pods)
	slices.SortStableFunc(sorted, func(a, b corev1.Pod) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	sorted, err := SortBy(sorted, sortBy)
	if err != nil {
		return err
	}

	switch format {
	case FormatTable, FormatWide:
		if len(sorted) == 0 {
			return nil
		}
		wide := format == FormatWide
		var header []string
		if showNamespace {
			header = append(header, "NAMESPACE")
		}
		header = append(header, podColumns...)
		if wide {
			header = append(header, podWideColumns...)
		}
		rows := make([][]string, 0, len(sorted))
		for i := range sorted {
			row := PodRow(&sorted[i], wide, now)
			if showNamespace {
				row = append([]string{sorted[i].Namespace}, row...)
			}
			rows = append(rows, row)
		}
		return writeTable(w, header, rows, noHeaders)
	case FormatJSON, FormatYAML:
		for i := range sorted {
			setPodKind(&sorted[i])
		}
		if format == FormatJSON {
			return writeJSON(w, newList(sorted))
		}
		return writeYAML(w, newList(sorted))
	case FormatName:
		for i := range sorted {
			if _, err := fmt.Fprintf(w, "pod/%s\n", sorted[i].Name); err != nil {
				return err
			}
		}
		return nil
	default:
		for i := range sorted {
			setPodKind(&sorted[i])
		}
		if ok, err := printTemplate(w, format, newList(sorted), noHeaders); ok {
			return err
		}
		return unknownFormat(format, allowedFormats()...)
	}
}

// PrintPod prints one pod as `kubectl get pod NAME -o <format>` does: "json" and "yaml"
// print the Pod itself (apiVersion v1, kind Pod), "name" prints "pod/<name>". The table
// formats ("" and "wide") print the one-row table, with ages measured against the wall
// clock; use PrintPods to choose the time.
func PrintPod(w io.Writer, pod *corev1.Pod, format string) error {
	switch format {
	case FormatJSON, FormatYAML:
		p := *pod // shallow copy: only TypeMeta changes
		setPodKind(&p)
		if format == FormatJSON {
			return writeJSON(w, &p)
		}
		return writeYAML(w, &p)
	case FormatName:
		_, err := fmt.Fprintf(w, "pod/%s\n", pod.Name)
		return err
	case FormatTable, FormatWide:
		return PrintPods(w, []corev1.Pod{*pod}, format, false, false, time.Now())
	default:
		p := *pod
		setPodKind(&p)
		if ok, err := printTemplate(w, format, &p, false); ok {
			return err
		}
		return unknownFormat(format, allowedFormats()...)
	}
}

func setPodKind(p *corev1.Pod) {
	p.APIVersion = "v1"
	p.Kind = "Pod"
}
