package printers

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	eventColumns     = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
	eventWideColumns = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"}
)

// PrintEvents prints events as `kubectl get events -o <format>` does.
//
//   - "" and "wide": LAST SEEN TYPE REASON OBJECT MESSAGE, OBJECT as "pod/<name>", oldest
//     first by the time each was last seen (as `kubectl events` orders them). Nothing for
//     no events (kubectl's "No resources found" goes to stderr, the caller's part).
//   - "json" and "yaml": a v1 List (kind "List", decodes as an EventList) whose items have
//     apiVersion v1 and kind Event, in the given order.
//   - "name": "event/<name>" per line.
//
// "wide" adds kubectl's SUBOBJECT, SOURCE, FIRST SEEN, COUNT and NAME columns.
func PrintEvents(w io.Writer, events []corev1.Event, format string, now time.Time) error {
	return PrintEventsSorted(w, events, format, false, "", now)
}

// PrintEventsSorted is PrintEvents without the header line when noHeaders (a watch's
// later rows), and ordered by the jsonpath sortBy when given (kubectl's --sort-by,
// SortBy) rather than by the time each was last seen.
func PrintEventsSorted(w io.Writer, events []corev1.Event, format string, noHeaders bool, sortBy string, now time.Time) error {
	events, err := SortBy(events, sortBy)
	if err != nil {
		return err
	}
	switch format {
	case FormatTable, FormatWide:
		if len(events) == 0 {
			return nil
		}
		sorted := slices.Clone(events)
		if sortBy == "" {
			slices.SortStableFunc(sorted, func(a, b corev1.Event) int {
				return eventLastSeen(&a).Compare(eventLastSeen(&b))
			})
		}
		header := eventColumns
		if format == FormatWide {
			header = eventWideColumns
		}
		rows := make([][]string, 0, len(sorted))
		for i := range sorted {
			rows = append(rows, eventRow(&sorted[i], format == FormatWide, now))
		}
		return writeTable(w, header, rows, noHeaders)
	case FormatJSON, FormatYAML:
		items := slices.Clone(events)
		for i := range items {
			items[i].APIVersion = "v1"
			items[i].Kind = "Event"
		}
		if format == FormatJSON {
			return writeJSON(w, newList(items))
		}
		return writeYAML(w, newList(items))
	case FormatName:
		for i := range events {
			if _, err := fmt.Fprintf(w, "event/%s\n", events[i].Name); err != nil {
				return err
			}
		}
		return nil
	default:
		items := slices.Clone(events)
		for i := range items {
			items[i].APIVersion = "v1"
			items[i].Kind = "Event"
		}
		if ok, err := printTemplate(w, format, newList(items), false); ok {
			return err
		}
		return unknownFormat(format, allowedFormats()...)
	}
}

// eventRow is kubectl's printEvent row: LAST SEEN is lastTimestamp, else the first time
// seen; for a series, its last observation.
func eventRow(e *corev1.Event, wide bool, now time.Time) []string {
	first := since(e.FirstTimestamp, now)
	if e.FirstTimestamp.IsZero() {
		first = sinceMicro(e.EventTime, now)
	}
	last := since(e.LastTimestamp, now)
	if e.LastTimestamp.IsZero() {
		last = first
	}
	count := e.Count
	if e.Series != nil {
		last = sinceMicro(e.Series.LastObservedTime, now)
		count = e.Series.Count
	} else if count == 0 {
		count = 1 // a singleton of the events.k8s.io API
	}

	object := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		object += "/" + e.InvolvedObject.Name
	}
	if wide {
		return []string{last, e.Type, e.Reason, object, e.InvolvedObject.FieldPath, eventSource(e),
			strings.TrimSpace(e.Message), first, strconv.Itoa(int(count)), e.Name}
	}
	return []string{last, e.Type, e.Reason, object, strings.TrimSpace(e.Message)}
}

// eventSource is kubectl's SOURCE: the component (else the reporting controller), then
// ", " and the host (else the reporting instance) when there is one.
func eventSource(e *corev1.Event) string {
	component, host := e.Source.Component, e.Source.Host
	if component == "" {
		component = e.ReportingController
	}
	if host == "" {
		host = e.ReportingInstance
	}
	if host == "" {
		return component
	}
	return component + ", " + host
}

// eventLastSeen is the time `kubectl events` sorts by.
func eventLastSeen(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	default:
		return e.EventTime.Time
	}
}

func sinceMicro(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(t.Time))
}

// PrintEvent prints one event as `kubectl get event NAME -o <format>` does: json,
// yaml and templates print the Event itself (apiVersion v1, kind Event), the
// other formats as PrintEventsSorted.
func PrintEvent(w io.Writer, e *corev1.Event, format string, noHeaders bool, now time.Time) error {
	c := *e
	c.APIVersion, c.Kind = "v1", "Event"
	if ok, err := printSingle(w, &c, format, noHeaders); ok {
		return err
	}
	return PrintEventsSorted(w, []corev1.Event{*e}, format, noHeaders, "", now)
}
