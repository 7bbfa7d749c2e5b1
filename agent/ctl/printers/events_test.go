package printers

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func event(name, kind, object, typ, reason, message string, count int32, first, last time.Duration) corev1.Event {
	return corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Name: object, Namespace: "default"},
		Type:           typ,
		Reason:         reason,
		Message:        message,
		Count:          count,
		FirstTimestamp: ago(first),
		LastTimestamp:  ago(last),
		Source:         corev1.EventSource{Component: "agentd", Host: "node-a"},
	}
}

// testEvents are out of order on purpose.
func testEvents() []corev1.Event {
	return []corev1.Event{
		event("web.1", "Pod", "web", "Warning", "BackOff", "Back-off restarting failed container nginx in pod web_default", 3, 8*time.Minute, 2*time.Minute),
		event("db.1", "Pod", "db", "Normal", "Started", "  Started container postgres\n", 1, 45*time.Second, 45*time.Second),
		event("web.0", "Pod", "web", "Normal", "Pulled", `Container image "nginx:1.25" already present on machine`, 1, 10*time.Minute, 10*time.Minute),
	}
}

func TestPrintEventsTable(t *testing.T) {
	var b bytes.Buffer
	if err := PrintEvents(&b, testEvents(), "", now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"LAST SEEN   TYPE      REASON    OBJECT    MESSAGE\n" +
		"10m         Normal    Pulled    pod/web   Container image \"nginx:1.25\" already present on machine\n" +
		"2m          Warning   BackOff   pod/web   Back-off restarting failed container nginx in pod web_default\n" +
		"45s         Normal    Started   pod/db    Started container postgres\n"
	if b.String() != want {
		t.Errorf("events:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestEventRowTimes(t *testing.T) {
	noLast := event("e", "Pod", "web", "Normal", "Scheduled", "m", 1, 7*time.Minute, 0)
	noLast.LastTimestamp = metav1.Time{}

	newAPI := event("e", "Pod", "web", "Normal", "Killing", "m", 0, 0, 0)
	newAPI.FirstTimestamp, newAPI.LastTimestamp = metav1.Time{}, metav1.Time{}
	newAPI.EventTime = metav1.NewMicroTime(now.Add(-20 * time.Minute))
	newAPI.Series = &corev1.EventSeries{Count: 4, LastObservedTime: metav1.NewMicroTime(now.Add(-90 * time.Second))}

	noName := event("e", "Node", "", "Normal", "Starting", "m", 1, time.Hour, time.Hour)

	tests := []struct {
		name     string
		e        corev1.Event
		lastSeen string
		object   string
	}{
		{"last seen falls back to first seen", noLast, "7m", "pod/web"},
		{"a series is last seen at its last observation", newAPI, "90s", "pod/web"},
		{"an object without a name is its kind", noName, "60m", "node"},
	}
	for _, tt := range tests {
		row := eventRow(&tt.e, false, now)
		if row[0] != tt.lastSeen || row[3] != tt.object {
			t.Errorf("%s: row %q, want LAST SEEN %q and OBJECT %q", tt.name, row, tt.lastSeen, tt.object)
		}
	}
}

func TestPrintEventsJSONAndName(t *testing.T) {
	var b bytes.Buffer
	if err := PrintEvents(&b, testEvents(), "json", now); err != nil {
		t.Fatal(err)
	}
	var list corev1.EventList
	if err := json.Unmarshal(b.Bytes(), &list); err != nil {
		t.Fatalf("json does not decode as an EventList: %v", err)
	}
	if list.Kind != "List" || list.APIVersion != "v1" || len(list.Items) != 3 {
		t.Fatalf("got %s %s with %d items, want a v1 List of 3", list.APIVersion, list.Kind, len(list.Items))
	}
	first := list.Items[0]
	if first.Kind != "Event" || first.APIVersion != "v1" || first.Reason != "BackOff" || first.Count != 3 ||
		first.InvolvedObject.Name != "web" {
		t.Errorf("first item %+v, want the BackOff event of pod web as v1 Event", first)
	}

	b.Reset()
	if err := PrintEvents(&b, testEvents(), "name", now); err != nil {
		t.Fatal(err)
	}
	if want := "event/web.1\nevent/db.1\nevent/web.0\n"; b.String() != want {
		t.Errorf("-o name = %q, want %q", b.String(), want)
	}
}

// kubectl get events -o wide: SUBOBJECT (the field path), SOURCE (component, host),
// FIRST SEEN, COUNT and NAME around the plain columns.
func TestPrintEventsWide(t *testing.T) {
	evs := testEvents()
	evs[0].InvolvedObject.FieldPath = "spec.containers{nginx}"
	evs[2].Source = corev1.EventSource{}
	evs[2].ReportingController = "agentd"
	var b bytes.Buffer
	if err := PrintEvents(&b, evs, "wide", now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"LAST SEEN   TYPE      REASON    OBJECT    SUBOBJECT                SOURCE           MESSAGE                                                         FIRST SEEN   COUNT   NAME\n" +
		"10m         Normal    Pulled    pod/web                            agentd           Container image \"nginx:1.25\" already present on machine         10m          1       web.0\n" +
		"2m          Warning   BackOff   pod/web   spec.containers{nginx}   agentd, node-a   Back-off restarting failed container nginx in pod web_default   8m           3       web.1\n" +
		"45s         Normal    Started   pod/db                             agentd, node-a   Started container postgres                                      45s          1       db.1\n"
	if b.String() != want {
		t.Errorf("events -o wide:\n%s\nwant:\n%s", b.String(), want)
	}
}

// --sort-by orders every output by a jsonpath, here the count and the name.
func TestPrintEventsSortBy(t *testing.T) {
	var b bytes.Buffer
	if err := PrintEventsSorted(&b, testEvents(), "jsonpath={.items[*].metadata.name}", false, ".count", now); err != nil || b.String() != "db.1 web.0 web.1" {
		t.Errorf("--sort-by .count: %v %q", err, b.String())
	}
	b.Reset()
	if err := PrintEventsSorted(&b, testEvents(), "", true, "{.metadata.name}", now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"45s   Normal    Started   pod/db    Started container postgres\n" +
		"10m   Normal    Pulled    pod/web   Container image \"nginx:1.25\" already present on machine\n" +
		"2m    Warning   BackOff   pod/web   Back-off restarting failed container nginx in pod web_default\n"
	if b.String() != want {
		t.Errorf("--sort-by {.metadata.name} --no-headers:\n%s\nwant:\n%s", b.String(), want)
	}
}
