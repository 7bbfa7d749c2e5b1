package printers

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var eventColumns = []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}

// PrintEvents prints events as `kubectl get events -o <format>` does.
//
//   - "" and "wide": LAST SEEN TYPE REASON OBJECT MESSAGE, OBJECT as "pod/<name>", oldest
//     first by the time each was last seen (as `kubectl events` orders them). Nothing for
//     no events (kubectl's "No resources found" goes to stderr, the caller's part).
//   - "json" and "yaml": a v1 List (kind "List", decodes as an EventList) whose items have
//     apiVersion v1 and kind Event, in the given order.
//   - "name": "event/<name>" per line.
func PrintEvents(w io.Writer, events []corev1.Event, format string, now time.Time) error {
	switch format {
	case FormatTable, FormatWide:
		if len(events) == 0 {
			return nil
		}
		sorted := slices.Clone(events)
		slices.SortStableFunc(sorted, func(a, b corev1.Event) int {
			return eventLastSeen(&a).Compare(eventLastSeen(&b))
		})
		rows := make([][]string, 0, len(sorted))
		for i := range sorted {
			rows = append(rows, eventRow(&sorted[i], now))
		}
		return writeTable(w, eventColumns, rows, false)
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
func eventRow(e *corev1.Event, now time.Time) []string {
	first := since(e.FirstTimestamp, now)
	if e.FirstTimestamp.IsZero() {
		first = sinceMicro(e.EventTime, now)
	}
	last := since(e.LastTimestamp, now)
	if e.LastTimestamp.IsZero() {
		last = first
	}
	if e.Series != nil {
		last = sinceMicro(e.Series.LastObservedTime, now)
	}

	object := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		object += "/" + e.InvolvedObject.Name
	}
	return []string{last, e.Type, e.Reason, object, strings.TrimSpace(e.Message)}
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
