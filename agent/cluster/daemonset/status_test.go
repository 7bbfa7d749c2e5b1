package daemonset

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

func TestStatus(t *testing.T) {
	ds := mustDecode(t, readTestdata(t, "node-logger.yaml"))
	ds.Generation = 4
	cur := TemplateHash(ds)
	const old = "0123456789"

	cases := []struct {
		name    string
		reports []NodeReport
		want    appsv1.DaemonSetStatus
	}{
		{"no nodes", nil, appsv1.DaemonSetStatus{ObservedGeneration: 4}},
		{"rolled out everywhere", []NodeReport{
			{Node: "a", Matches: true, Running: true, Ready: true, TemplateHash: cur},
			{Node: "b", Matches: true, Running: true, Ready: true, TemplateHash: cur},
			{Node: "c", Matches: true, Running: true, Ready: true, TemplateHash: cur},
		}, appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 3,
			UpdatedNumberScheduled: 3, NumberAvailable: 3, ObservedGeneration: 4}},
		{"new DaemonSet, no pod yet", []NodeReport{
			{Node: "a", Matches: true}, {Node: "b", Matches: true}, {Node: "c"},
		}, appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberUnavailable: 2, ObservedGeneration: 4}},
		{"rolling update half way", []NodeReport{
			{Node: "a", Matches: true, Running: true, Ready: true, TemplateHash: cur},  // updated and ready
			{Node: "b", Matches: true, Running: true, Ready: false, TemplateHash: cur}, // updated, starting
			{Node: "c", Matches: true, Running: true, Ready: true, TemplateHash: old},  // still the old template
			{Node: "d", Matches: true, Running: false, TemplateHash: ""},               // old pod taken down
		}, appsv1.DaemonSetStatus{DesiredNumberScheduled: 4, CurrentNumberScheduled: 3, NumberReady: 2,
			UpdatedNumberScheduled: 2, NumberAvailable: 2, NumberUnavailable: 2, ObservedGeneration: 4}},
		{"node relabelled: its pod is misscheduled", []NodeReport{
			{Node: "a", Matches: true, Running: true, Ready: true, TemplateHash: cur},
			{Node: "b", Matches: false, Running: true, Ready: true, TemplateHash: cur},
			{Node: "c", Matches: false},
		}, appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberMisscheduled: 1,
			NumberReady: 1, UpdatedNumberScheduled: 1, NumberAvailable: 1, ObservedGeneration: 4}},
		{"a stale Ready without a pod does not count", []NodeReport{
			{Node: "a", Matches: true, Running: false, Ready: true, TemplateHash: cur},
		}, appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, NumberUnavailable: 1, ObservedGeneration: 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Status(ds, tc.reports); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Status =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}
