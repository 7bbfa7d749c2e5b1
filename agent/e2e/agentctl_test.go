package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EAgentctlUnknownCommand: the built agentctl refuses a command or subcommand it
// does not have with an error naming it and exit status 1, as kubectl does.
func TestE2EAgentctlUnknownCommand(t *testing.T) {
	bin := testutil.BinDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, `error: unknown command "foo" for "agentctl"`},
		{[]string{"image", "pul", "x"}, `error: unknown command "pul x"`},
		{[]string{"get", "foo"}, `error: the server doesn't have a resource type "foo"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "agentctl"), append(tc.args, "--socket", "/nonexistent/agent.sock")...)
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("agentctl %s: %v, want exit status 1\n%s", strings.Join(tc.args, " "), err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("agentctl %s: output %q lacks %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
}

// ctlStreams runs agentctl against a and returns its stdout and stderr apart.
func (a *agent) ctlStreams(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(a.bin, "agentctl"), args...)
	cmd.Env = append(os.Environ(), "AGENT_SOCKET="+a.socket)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestE2EAgentctlKubectl: agentctl behaves as kubectl where the issue says it did not:
// container defaulting, logs --previous in back-off, template outputs on a real agent.
func TestE2EAgentctlKubectl(t *testing.T) {
	// Back-offs long enough (5s, then 10s) to look at a container in one.
	a := newAgent(t, map[string]any{"backoff-base": "5s"})
	a.start()
	// Each run says which it is: the count lives in an emptyDir, kept across restarts.
	a.write("crash.yaml", `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: work, emptyDir: {}}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "n=$(cat /work/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /work/n; echo run $n; exit 3"]
    volumeMounts: [{name: work, mountPath: /work}]
`)
	a.write("duo.yaml", `apiVersion: v1
kind: Pod
metadata:
  name: duo
  annotations: {kubectl.kubernetes.io/default-container: side}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: localhost/busybox:latest, imagePullPolicy: Never, command: ["sh", "-c", "echo from main | tee /tmp/who; exec sleep 1000"]}
  - {name: side, image: localhost/busybox:latest, imagePullPolicy: Never, command: ["sh", "-c", "echo from side | tee /tmp/who; exec sleep 1000"]}
`)
	a.write("two.yaml", `apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: localhost/busybox:latest, imagePullPolicy: Never, command: ["sh", "-c", "echo from main | tee /tmp/who; exec sleep 1000"]}
  - {name: side, image: localhost/busybox:latest, imagePullPolicy: Never, command: ["sh", "-c", "echo from side | tee /tmp/who; exec sleep 1000"]}
`)
	a.eventually(60*time.Second, "duo and two running with their output", func() (bool, string) {
		out, _ := a.try("get", "pods", "-o", "custom-columns=NAME:.metadata.name,READY:.status.containerStatuses[*].ready")
		o1, _, _ := a.ctlStreams("logs", "duo", "-c", "main")
		o2, _, _ := a.ctlStreams("logs", "two", "-c", "side")
		ready := strings.Fields(out)
		return slices.Contains(ready, "duo") && strings.Count(out, "true,true") == 2 && o1 == "from main\n" && o2 == "from side\n", out
	})

	// Container defaulting: the annotation's, silently; else the first, saying so.
	if out, errOut, err := a.ctlStreams("logs", "duo"); err != nil || out != "from side\n" || errOut != "" {
		t.Errorf("logs duo: %v, %q, %q; want the annotation's container, silently", err, out, errOut)
	}
	if out, errOut, err := a.ctlStreams("logs", "two"); err != nil || out != "from main\n" || errOut != "Defaulted container \"main\" out of: main, side\n" {
		t.Errorf("logs two: %v, %q, %q", err, out, errOut)
	}
	if out, errOut, err := a.ctlStreams("exec", "duo", "--", "cat", "/tmp/who"); err != nil || out != "from side\n" || errOut != "" {
		t.Errorf("exec duo: %v, %q, %q; want it in side", err, out, errOut)
	}
	if out, errOut, err := a.ctlStreams("exec", "two", "--", "echo", "hi"); err != nil || out != "hi\n" || errOut != "Defaulted container \"main\" out of: main, side\n" {
		t.Errorf("exec two: %v, %q, %q", err, out, errOut)
	}
	if out, _, err := a.ctlStreams("logs", "two", "--all-containers", "--prefix"); err != nil || out != "[pod/two/main] from main\n[pod/two/side] from side\n" {
		t.Errorf("logs --all-containers --prefix: %v, %q", err, out)
	}

	// logs --previous in back-off prints the run that lastState.terminated describes:
	// the one that has just ended (before, the one before it, or none in the first
	// back-off). Checked in two back-offs, each between two identical looks at the status.
	status := func() string {
		out, _, _ := a.ctlStreams("get", "pods", "crash", "-o",
			"jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.exitCode}")
		return out
	}
	seen := -1
	for range 2 {
		a.eventually(90*time.Second, fmt.Sprintf("crash in back-off after more than %d restarts, logs --previous of its last run", seen), func() (bool, string) {
			before := status()
			var restarts int
			if _, err := fmt.Sscanf(before, "CrashLoopBackOff %d 3", &restarts); err != nil || restarts <= seen {
				return false, "status: " + before
			}
			prev, errOut, err := a.ctlStreams("logs", "crash", "--previous")
			cur, _, _ := a.ctlStreams("logs", "crash")
			if after := status(); after != before {
				return false, "status changed: " + after
			}
			want := fmt.Sprintf("run %d\n", restarts+1)
			if err != nil || prev != want || cur != want {
				t.Fatalf("in back-off (%s): logs --previous %q (%v %s), logs %q; want both %q", before, prev, err, errOut, cur, want)
			}
			seen = restarts
			return true, ""
		})
	}

	// Completion from the running agent, as the shell scripts ask for it.
	if out, _, err := a.ctlStreams("__complete", "logs", "t"); err != nil || out != "two\n:4\n" {
		t.Errorf("__complete logs t: %v %q", err, out)
	}
	if out, _, err := a.ctlStreams("__complete", "exec", "duo", "-c", ""); err != nil || out != "main\nside\n:4\n" {
		t.Errorf("__complete exec duo -c: %v %q", err, out)
	}

	// Template outputs: kubectl's List with kinds, and the Pod itself by name.
	if out := a.ctl("get", "pods", "-o", "jsonpath={.kind} {.items[*].metadata.name} {.items[*].kind}"); out != "List crash duo two Pod Pod Pod" {
		t.Errorf("get pods -o jsonpath: %q", out)
	}
	if out := a.ctl("get", "pods", "duo", "-o", "jsonpath={.apiVersion}/{.kind} {.metadata.annotations.kubectl\\.kubernetes\\.io/default-container}"); out != "v1/Pod side" {
		t.Errorf("get pods duo -o jsonpath: %q", out)
	}
	if out := a.ctl("get", "pods", "-o", `go-template={{range .items}}{{.metadata.name}}={{len .spec.containers}};{{end}}`); out != "crash=1;duo=2;two=2;" {
		t.Errorf("get pods -o go-template: %q", out)
	}
	want := "NAME    CONTAINERS\ncrash   main\nduo     main,side\ntwo     main,side\n"
	if out := a.ctl("get", "pods", "-o", "custom-columns=NAME:.metadata.name,CONTAINERS:.spec.containers[*].name"); out != want {
		t.Errorf("get pods -o custom-columns:\n%s\nwant:\n%s", out, want)
	}
	if out := a.ctl("get", "events", "-o", "jsonpath={.items[0].apiVersion} {.items[0].kind}"); out != "v1 Event" {
		t.Errorf("get events -o jsonpath: %q", out)
	}
	if out, err := a.try("get", "pods", "-o", "jsonpath={.items["); err == nil || !strings.Contains(out, "error parsing jsonpath") {
		t.Errorf("a bad jsonpath: %v %q", err, out)
	}
}
