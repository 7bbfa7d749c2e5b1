package agent

import (
	"errors"
	"testing"
)

// A probe that cannot be run (here: an exec whose command the runtime cannot run)
// is kubelet's prober error: a Warning Unhealthy event "<Kind> probe errored and
// resulted in unknown state: <error>", and the attempt does not count.
func TestAgentProbeErroredEvent(t *testing.T) {
	n := newNode(t)
	n.rt.SetExecError("check", errors.New(`exec: "check": executable file not found in $PATH`))
	r := n.start(false)
	p := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    readinessProbe:
      exec: {command: [check]}
      periodSeconds: 1
`)
	r.desire(p)
	want := `Readiness probe errored and resulted in unknown state: exec probe: exec: "check": executable file not found in $PATH`
	r.waitFor(t, "the errored probe's event", func() bool {
		for _, e := range r.a.events.List(p.UID) {
			if e.Type == "Warning" && e.Reason == "Unhealthy" && e.Message == want && e.InvolvedObject.FieldPath == "spec.containers{app}" {
				return true
			}
		}
		return false
	})
	if st, _ := r.status("web"); len(st.ContainerStatuses) != 1 || st.ContainerStatuses[0].Ready {
		t.Errorf("container statuses %+v, want app not ready", st.ContainerStatuses)
	}
}
