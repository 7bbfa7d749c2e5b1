package reconcile

import "testing"

func TestRestoreCRIContainer(t *testing.T) {
	for _, tc := range []struct {
		name           string
		started, found bool
		m              MonitorFound
		live           bool
		want           CRIRestore
	}{
		{"created, live", false, false, MonitorRuns, true, CRICreated},
		{"created, not live", false, false, MonitorRuns, false, CRICreated},
		{"running, live", true, true, MonitorRuns, true, CRIAdopt},
		{"starting, live", true, true, MonitorStarting, true, CRIAdopt},
		{"running, not live", true, true, MonitorRuns, false, CRIStop},
		{"starting, not live", true, true, MonitorStarting, false, CRIStop},
		{"monitor dead", true, true, MonitorDead, true, CRILost},
		{"monitor dead, not live", true, true, MonitorDead, false, CRILost},
		{"started, monitor gone", true, false, MonitorRuns, true, CRILost},
		{"unmanaged", true, true, MonitorUnmanaged, true, CRILeaveUnmanaged},
		{"unmanaged, not live", true, true, MonitorUnmanaged, false, CRILeaveUnmanaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RestoreCRIContainer(tc.started, tc.found, tc.m, tc.live); got != tc.want {
				t.Errorf("RestoreCRIContainer(started %v, found %v, %v, live %v) = %s, want %s", tc.started, tc.found, tc.m, tc.live, got, tc.want)
			}
		})
	}
}
