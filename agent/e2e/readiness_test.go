package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/version"
)

// TestE2EReadyAfterRestart: a two-container pod whose one container exits once
// (restartPolicy Always) reads 2/2 Running with one restart, as on kubelet: a
// running container without a readiness probe is ready, also after a restart. The
// first exit is restarted at once, with no BackOff event.
func TestE2EReadyAfterRestart(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("pair.yaml", `apiVersion: v1
kind: Pod
metadata: {name: pair}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  volumes: [{name: data}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"]
  - name: once
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; if [ ! -e /data/ran ]; then touch /data/ran; exit 1; fi; while true; do sleep 0.2 & wait; done"]
    volumeMounts: [{name: data, mountPath: /data}]
`)
	a.eventually(60*time.Second, "pair 2/2 Running with one restart", func() (bool, string) {
		out, _ := a.try("get", "pods", "pair", "--no-headers")
		f := strings.Fields(out)
		return len(f) >= 4 && f[1] == "2/2" && f[2] == "Running" && f[3] == "1", out
	})
	p := a.pod("pair")
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready || cs.Started == nil || !*cs.Started || cs.State.Running == nil {
			t.Errorf("container %s: ready %v started %v state %+v", cs.Name, cs.Ready, cs.Started, cs.State)
		}
	}
	if ev := a.ctl("get", "events"); strings.Contains(ev, "BackOff") {
		t.Errorf("a first exit, restarted at once, made a BackOff event:\n%s", ev)
	}
}

// TestE2EProbeUserAgent: an httpGet probe sends kubelet's User-Agent,
// kube-probe/<major>.<minor>, to a server in the container (busybox httpd with a
// CGI script that logs what it was sent).
func TestE2EProbeUserAgent(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("ua.yaml", `apiVersion: v1
kind: Pod
metadata: {name: ua}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      mkdir -p /www/cgi-bin
      printf '#!/bin/sh\necho "$HTTP_USER_AGENT" >> /tmp/ua\nprintf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n' > /www/cgi-bin/ua
      chmod +x /www/cgi-bin/ua
      exec httpd -f -p 8080 -h /www
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /cgi-bin/ua, port: http}
      periodSeconds: 1
`)
	a.eventually(60*time.Second, "ua 1/1 Running (the probe reached the CGI)", func() (bool, string) {
		out, _ := a.try("get", "pods", "ua", "--no-headers")
		f := strings.Fields(out)
		return len(f) >= 3 && f[1] == "1/1" && f[2] == "Running", out + a.show("describe", "pod", "ua")
	})
	got := a.ctl("exec", "ua", "--", "cat", "/tmp/ua")
	want := "kube-probe/" + version.Kubernetes
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) == 0 || lines[0] != want {
		t.Errorf("User-Agent the probe sent: %q, want %q", got, want)
	}
}

// TestE2EUnhealthyPerAttempt: a readiness probe that never passes records an
// Unhealthy event per failed attempt, folded into one event with a count, which
// describe shows as "(xN over …)", as kubelet's.
func TestE2EUnhealthyPerAttempt(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("sick.yaml", simplePod("sick", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done")+`    readinessProbe:
      exec: {command: ["sh", "-c", "echo not yet; exit 1"]}
      periodSeconds: 1
`)
	a.eventually(60*time.Second, "an Unhealthy event counted 4 times", func() (bool, string) {
		var l corev1.EventList
		out := a.ctl("get", "events", "-o", "json")
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return false, out
		}
		for _, e := range l.Items {
			if e.Reason == "Unhealthy" && e.InvolvedObject.Name == "sick" && e.Count >= 4 {
				return e.Message == "Readiness probe failed: not yet\n" || e.Message == "Readiness probe failed: not yet", out
			}
		}
		return false, out
	})
	if out := a.ctl("describe", "pod", "sick"); !regexp.MustCompile(`Unhealthy .*\(x\d+ over `).MatchString(strings.Join(strings.Fields(out), " ")) {
		t.Errorf("describe does not show the count:\n%s", out)
	}
	if out := a.ctl("get", "pods", "sick", "--no-headers"); !strings.HasPrefix(strings.Join(strings.Fields(out), " "), "sick 0/1 Running") {
		t.Errorf("get pods: %s", out)
	}
}

// TestE2EReplacedPodOneRow: while a changed manifest's old pod terminates (it
// ignores TERM, so it takes its grace period), get pods shows one row for the
// name: the old pod Terminating, then the new one.
func TestE2EReplacedPodOneRow(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("swap.yaml", simplePod("swap", "trap '' TERM; echo old; while true; do sleep 0.2; done"))
	a.waitStatus("swap", "Running", 30*time.Second)
	a.write("swap.yaml", strings.Replace(simplePod("swap", "trap 'exit 0' TERM; echo new; while true; do sleep 0.2 & wait; done"),
		"terminationGracePeriodSeconds: 3", "terminationGracePeriodSeconds: 1", 1))
	sawTerminating := false
	a.eventually(60*time.Second, "the new swap running", func() (bool, string) {
		out, _ := a.try("get", "pods", "--no-headers")
		rows := 0
		status := ""
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "swap" {
				rows++
				status = f[2]
			}
		}
		if rows > 1 {
			t.Fatalf("two rows named swap:\n%s", out)
		}
		sawTerminating = sawTerminating || status == "Terminating"
		if status != "Running" || !sawTerminating {
			return false, out
		}
		logs, _ := a.try("logs", "swap")
		return strings.Contains(logs, "new"), out + logs
	})
}
