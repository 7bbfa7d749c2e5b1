package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestE2ECrashPoints kills agentd (AGENTD_CRASH_AT) at each step of sandbox
// set-up, container start, network attachment and pod removal, starts it again,
// and checks that it converges from there: the pod runs once (or is gone), and
// nothing is left behind. With live restore on and off.
func TestE2ECrashPoints(t *testing.T) {
	creating := []string{
		"sandbox-created",          // namespaces, /etc files, volumes; no network, no pod.json
		"network-plugin-added",     // the bridge plugin attached the pod; libcni did not cache it
		"sandbox-network-added",    // attached and cached; no pod.json
		"sandbox-recorded",         // pod.json written; no container
		"container-config-written", // the monitor's config.json; no monitor
		"container-monitor-spawned",
		"container-started", // the first run started; agentd has not read its journal
	}
	removing := []string{
		"pod-kill-recorded",      // pod.json says Terminating; nothing stopped
		"pod-containers-stopped", // monitors stopped and removed; sandbox and network there
		"network-plugin-deleted", // the plugin detached; libcni's cache entry remains
		"pod-network-removed",    // detached; sandbox, volumes, cgroup there
	}
	for _, live := range []bool{true, false} {
		name := "LiveRestore"
		if !live {
			name = "LiveRestoreOff"
		}
		t.Run(name, func(t *testing.T) {
			for _, point := range creating {
				t.Run(point, func(t *testing.T) { testCrashCreating(t, live, point) })
			}
			for _, point := range removing {
				t.Run(point, func(t *testing.T) { testCrashRemoving(t, live, point) })
			}
		})
	}
}

// testCrashCreating: agentd dies at point while it sets up a new pod (an init
// container, then a printer); the next agentd runs the pod once.
func testCrashCreating(t *testing.T, live bool, point string) {
	a := newAgent(t, map[string]any{"live-restore": live})
	p := &chaosPod{name: "crash", kind: chaosInit, present: true}
	a.write("crash.yaml", p.manifest())
	a.env = []string{"AGENTD_CRASH_AT=" + point}
	if a.launchAndWait() {
		a.waitCrash(point)
	}
	a.env = nil
	a.start()
	a.waitChaosConverged([]*chaosPod{p}, 60*time.Second)
	a.checkNoLeaks(desiredNames([]*chaosPod{p}))
}

// testCrashRemoving: agentd dies at point while it removes a pod (its manifest
// edited, so a new copy must replace it, or deleted); the next agentd finishes
// the removal and runs what the manifests ask for.
func testCrashRemoving(t *testing.T, live bool, point string) {
	a := newAgent(t, map[string]any{"live-restore": live})
	edited := &chaosPod{name: "edited", kind: chaosPrinter, present: true}
	deleted := &chaosPod{name: "deleted", kind: chaosPrinter, present: true}
	pods := []*chaosPod{edited, deleted}
	for _, p := range pods {
		a.write(p.name+".yaml", p.manifest())
	}
	a.start()
	a.waitChaosConverged(pods, 60*time.Second)
	a.stop(unix.SIGKILL, 30*time.Second)
	a.env = []string{"AGENTD_CRASH_AT=" + point}
	if a.launchAndWait() {
		if !live {
			// Without live restore the pods were dropped at the start, and the API
			// answers before the manifests are first read: wait until that reading
			// brought them back, so that the changes below are ones agentd acts on
			// (a kill), not the content it starts with.
			a.eventually(60*time.Second, "the pods started again from their manifests", func() (bool, string) {
				out, _ := a.try("get", "pods", "--no-headers")
				return strings.Contains(out, edited.name+" ") && strings.Contains(out, deleted.name+" "), out
			})
		}
		edited.gen++
		a.write(edited.name+".yaml", edited.manifest())
		deleted.present = false
		if err := os.Remove(filepath.Join(a.manifest, deleted.name+".yaml")); err != nil {
			t.Fatal(err)
		}
		a.waitCrash(point)
	}
	a.env = nil
	a.start()
	a.waitChaosConverged(pods, 60*time.Second)
	a.checkNoLeaks(desiredNames(pods))
}

// waitCrash waits for agentd to kill itself at the armed crash point.
func (a *agent) waitCrash(point string) {
	a.t.Helper()
	select {
	case err := <-a.exited:
		a.exited <- err
	case <-time.After(60 * time.Second):
		a.t.Fatalf("agentd did not reach crash point %s\n%s", point, a.stderr)
	}
	if !strings.Contains(a.stderr.String(), "crashpoint: killing agentd at "+point) {
		a.t.Fatalf("agentd exited, but not at %s:\n%s", point, a.stderr)
	}
}
