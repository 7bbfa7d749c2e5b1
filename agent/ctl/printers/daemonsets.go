package printers

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var (
	daemonSetColumns     = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}
	daemonSetWideColumns = []string{"CONTAINERS", "IMAGES", "SELECTOR"}
)

// PrintDaemonSets prints DaemonSets as `kubectl get daemonsets -o <format>` does, ordered
// by namespace then name. now is the time ages are measured against.
//
//   - "" and "wide": NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE from
//     each status, and with "wide" CONTAINERS IMAGES SELECTOR. Nothing at all for no
//     DaemonSets (kubectl's "No resources found" goes to stderr, the caller's part).
//   - "json" and "yaml": a v1 List whose items have apiVersion apps/v1 and kind DaemonSet;
//     keys sorted, JSON indented by four spaces, as kubectl prints them.
//   - "name": "daemonset.apps/<name>" per line.
func PrintDaemonSets(w io.Writer, list []appsv1.DaemonSet, format string, now time.Time) error {
	sorted := slices.Clone(list)
	slices.SortStableFunc(sorted, func(a, b appsv1.DaemonSet) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	switch format {
	case "", "wide":
		if len(sorted) == 0 {
			return nil
		}
		header := daemonSetColumns
		if format == "wide" {
			header = append(slices.Clone(daemonSetColumns), daemonSetWideColumns...)
		}
		rows := make([][]string, 0, len(sorted))
		for i := range sorted {
			rows = append(rows, daemonSetRow(&sorted[i], format == "wide", now))
		}
		return writeTable(w, header, rows, false)
	case "json", "yaml":
		for i := range sorted {
			sorted[i].APIVersion, sorted[i].Kind = "apps/v1", "DaemonSet"
		}
		if format == "json" {
			return writeJSON(w, newList(sorted))
		}
		return writeYAML(w, newList(sorted))
	case "name":
		for i := range sorted {
			if _, err := fmt.Fprintf(w, "daemonset.apps/%s\n", sorted[i].Name); err != nil {
				return err
			}
		}
		return nil
	default:
		for i := range sorted {
			sorted[i].APIVersion, sorted[i].Kind = "apps/v1", "DaemonSet"
		}
		if ok, err := printTemplate(w, format, newList(sorted), false); ok {
			return err
		}
		return unknownFormat(format, allowedFormats()...)
	}
}

// daemonSetRow is kubectl's printDaemonSet (pkg/printers/internalversion/printers.go).
func daemonSetRow(ds *appsv1.DaemonSet, wide bool, now time.Time) []string {
	st := ds.Status
	r := []string{
		ds.Name,
		strconv.Itoa(int(st.DesiredNumberScheduled)),
		strconv.Itoa(int(st.CurrentNumberScheduled)),
		strconv.Itoa(int(st.NumberReady)),
		strconv.Itoa(int(st.UpdatedNumberScheduled)),
		strconv.Itoa(int(st.NumberAvailable)),
		labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector),
		since(ds.CreationTimestamp, now),
	}
	if wide {
		var names, images []string
		for _, c := range ds.Spec.Template.Spec.Containers {
			names = append(names, c.Name)
			images = append(images, c.Image)
		}
		r = append(r, strings.Join(names, ","), strings.Join(images, ","), metav1.FormatLabelSelector(ds.Spec.Selector))
	}
	return r
}

// PrintDaemonSet prints one DaemonSet as `kubectl get daemonset NAME -o <format>`
// does: json, yaml and templates print the DaemonSet itself (apiVersion apps/v1,
// kind DaemonSet), the other formats as PrintDaemonSets.
func PrintDaemonSet(w io.Writer, ds *appsv1.DaemonSet, format string, now time.Time) error {
	d := *ds // shallow copy: only TypeMeta changes
	d.APIVersion, d.Kind = "apps/v1", "DaemonSet"
	if ok, err := printSingle(w, &d, format, false); ok {
		return err
	}
	return PrintDaemonSets(w, []appsv1.DaemonSet{*ds}, format, now)
}
