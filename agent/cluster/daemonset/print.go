package daemonset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// ErrUnknownFormat is returned (wrapped, naming the format) for an -o value
// PrintDaemonSets does not support; the message is kubectl's.
var ErrUnknownFormat = errors.New("unable to match a printer suitable for the output format")

var (
	columns     = []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}
	wideColumns = []string{"CONTAINERS", "IMAGES", "SELECTOR"}
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
		header := columns
		if format == "wide" {
			header = append(slices.Clone(columns), wideColumns...)
		}
		rows := make([][]string, 0, len(sorted))
		for i := range sorted {
			rows = append(rows, row(&sorted[i], format == "wide", now))
		}
		return writeTable(w, header, rows)
	case "json", "yaml":
		for i := range sorted {
			sorted[i].APIVersion = APIVersion
			sorted[i].Kind = Kind
		}
		l := kubectlList{APIVersion: "v1", Kind: "List", Items: sorted}
		if l.Items == nil {
			l.Items = []appsv1.DaemonSet{}
		}
		if format == "json" {
			return writeJSON(w, l)
		}
		out, err := yaml.Marshal(l)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	case "name":
		for i := range sorted {
			if _, err := fmt.Fprintf(w, "daemonset.apps/%s\n", sorted[i].Name); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%w %q, allowed formats are: json,name,wide,yaml", ErrUnknownFormat, format)
	}
}

// row is kubectl's printDaemonSet (pkg/printers/internalversion/printers.go).
func row(ds *appsv1.DaemonSet, wide bool, now time.Time) []string {
	st := ds.Status
	r := []string{
		ds.Name,
		strconv.Itoa(int(st.DesiredNumberScheduled)),
		strconv.Itoa(int(st.CurrentNumberScheduled)),
		strconv.Itoa(int(st.NumberReady)),
		strconv.Itoa(int(st.UpdatedNumberScheduled)),
		strconv.Itoa(int(st.NumberAvailable)),
		labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector),
		age(ds.CreationTimestamp, now),
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

// age is kubectl's translateTimestampSince.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// terminalEscaper neutralises terminal escape sequences, as kubectl does (kubernetes
// issue #101695): an image name must not drive the operator's terminal.
var terminalEscaper = strings.NewReplacer("\x1b", "^[", "\r", "\\r")

// writeTable writes kubectl's aligned table: tabwriter with minwidth 6, tabwidth 4,
// padding 3, spaces.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = terminalEscaper.Replace(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush() // tabwriter buffers until Flush, which reports the first write error
}

// kubectlList is what kubectl prints for several objects with -o json|yaml: a v1 List
// whose items carry their own apiVersion and kind. It decodes as a DaemonSetList too.
type kubectlList struct {
	APIVersion string             `json:"apiVersion"`
	Items      []appsv1.DaemonSet `json:"items"`
	Kind       string             `json:"kind"`
	Metadata   struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

// writeJSON prints v as kubectl's JSON printer does: keys sorted, four-space indent,
// trailing newline.
func writeJSON(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return err
	}
	out, err := json.MarshalIndent(generic, "", "    ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}
