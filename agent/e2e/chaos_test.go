package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// Crash consistency (issue 11): agentd killed at any instant converges once the
// manifests stop changing, with nothing stuck, duplicated or leaked.

// chaosKind is what a chaos pod does, and so the state it must converge to.
type chaosKind int

const (
	chaosPrinter chaosKind = iota // restartPolicy Always, prints n=1, n=2, … for ever: Running, its log contiguous
	chaosFlapper                  // restartPolicy Always, exits 1 every second or so: Running, restarted by policy
	chaosDone                     // restartPolicy OnFailure, exits 0: Succeeded
	chaosFails                    // restartPolicy Never, exits 3: Failed
	chaosInit                     // an init container, then a printer: Running
	chaosKinds
)

// chaosPod is one manifest of the churn: present or not, at some generation (an
// annotation: each generation is another UID, so an edit replaces the pod, and
// going back to an earlier generation brings back an earlier UID).
type chaosPod struct {
	name    string
	kind    chaosKind
	gen     int
	present bool
}

func (p *chaosPod) manifest() string {
	policy, cmd, init := "Always", printer, ""
	switch p.kind {
	case chaosFlapper:
		cmd = "trap 'exit 0' TERM; echo up; sleep 1 & wait; exit 1"
	case chaosDone:
		policy, cmd = "OnFailure", "echo done; exit 0"
	case chaosFails:
		policy, cmd = "Never", "echo failing; exit 3"
	case chaosInit:
		init = `  initContainers:
  - name: setup
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo setup > /work/ready"]
    volumeMounts: [{name: work, mountPath: /work}]
`
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  annotations: {chaos/gen: "%d"}
spec:
  restartPolicy: %s
  terminationGracePeriodSeconds: 2
  volumes: [{name: work, emptyDir: {}}]
%s  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    volumeMounts: [{name: work, mountPath: /work}]
`, p.name, p.gen, policy, init, cmd)
}

// chaosCrashPoints are the steps AGENTD_CRASH_AT can name (see the crash-point
// tests); a chaos round now and then arms one, so the kill lands exactly there.
var chaosCrashPoints = []string{
	"sandbox-created", "sandbox-network-added", "sandbox-recorded",
	"container-started", "pod-kill-recorded", "pod-containers-stopped", "pod-network-removed",
}

// chaosSettings are the chaos test's sizes, from the environment (make soak
// raises them) or small enough for make test.
func chaosSettings(t *testing.T) (seed uint64, pods, rounds int) {
	seed = uint64(time.Now().UnixNano())
	pods, rounds = 12, 24
	num := func(env string, v *int) {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", env, s)
			}
			*v = n
		}
	}
	if s := os.Getenv("AGENTD_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("AGENTD_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	num("AGENTD_CHAOS_PODS", &pods)
	num("AGENTD_CHAOS_ROUNDS", &rounds)
	return seed, pods, rounds
}

// TestE2EChaos: seeded churn of manifests (edits, removals, re-adds, reverts)
// with agentd killed (kill -9, or at an armed crash point) at a random instant of
// every round; then the manifests stop changing and every invariant must hold.
func TestE2EChaos(t *testing.T) {
	t.Run("LiveRestore", func(t *testing.T) { testChaos(t, true) })
	t.Run("LiveRestoreOff", func(t *testing.T) { testChaos(t, false) })
}

func testChaos(t *testing.T, live bool) {
	seed, npods, rounds := chaosSettings(t)
	if !live {
		rounds = max(rounds/3, 1) // every start replaces every pod: slower rounds
	}
	t.Logf("chaos: seed %d (AGENTD_CHAOS_SEED=%d to replay), %d pods, %d rounds, live restore %v", seed, seed, npods, rounds, live)
	rng := rand.New(rand.NewPCG(seed, 0x11))
	a := newAgent(t, map[string]any{"live-restore": live})
	pods := make([]*chaosPod, npods)
	for i := range pods {
		pods[i] = &chaosPod{name: fmt.Sprintf("chaos-%02d", i), kind: chaosKind(i % int(chaosKinds)), present: true}
		a.write(pods[i].name+".yaml", pods[i].manifest())
	}
	ops, crashes := 0, 0
	for round := 0; round < rounds; round++ {
		point := ""
		if rng.IntN(2) == 0 {
			point = fmt.Sprintf("%s@%d", chaosCrashPoints[rng.IntN(len(chaosCrashPoints))], 1+rng.IntN(3))
			a.env = []string{"AGENTD_CRASH_AT=" + point}
		}
		a.launchAndWait()
		a.env = nil
		for n := 2 + rng.IntN(8); n > 0; n-- {
			p := pods[rng.IntN(len(pods))]
			switch op := rng.IntN(10); {
			case !p.present:
				p.present = true // re-added as it was: its old UID comes back
				if op < 3 {
					p.gen++
				}
				a.write(p.name+".yaml", p.manifest())
			case op < 4:
				p.gen++
				a.write(p.name+".yaml", p.manifest())
			case op < 6 && p.gen > 0:
				p.gen-- // reverted: the UID of the copy just replaced
				a.write(p.name+".yaml", p.manifest())
			case op < 8:
				p.present = false
				if err := os.Remove(filepath.Join(a.manifest, p.name+".yaml")); err != nil {
					t.Fatal(err)
				}
			default:
				continue
			}
			ops++
		}
		// The kill lands anywhere in what those changes set off, or at the armed point.
		deadline := time.After(time.Duration(rng.IntN(2500)) * time.Millisecond)
		select {
		case err := <-a.exited:
			a.exited <- err
			crashes++ // at the armed point
		case <-deadline:
			if point != "" {
				a.t.Logf("round %d: %s not reached, killing", round, point)
			}
			a.stop(unix.SIGKILL, 30*time.Second)
		}
	}
	// The manifests stop changing: everything present must converge.
	a.start()
	up := time.Now()
	a.waitChaosConverged(pods, 90*time.Second)
	t.Logf("chaos: %d changes, %d kills (%d at crash points); converged %.1f s after the last start",
		ops, rounds, crashes, time.Since(up).Seconds())
	a.checkNoLeaks(desiredNames(pods))
}

func desiredNames(pods []*chaosPod) map[string]*chaosPod {
	out := map[string]*chaosPod{}
	for _, p := range pods {
		if p.present {
			out[p.name] = p
		}
	}
	return out
}

// launchAndWait starts agentd and waits until it answers, or until it exited (a
// crash point armed in its restore); it reports whether agentd is running.
func (a *agent) launchAndWait() bool {
	a.t.Helper()
	a.launch()
	running := true
	a.waitAnswer(60*time.Second, func(err error) {
		running = false
		if !strings.Contains(a.stderr.String(), "crashpoint: killing agentd at") {
			a.t.Fatalf("agentd exited: %v\n%s", err, a.stderr)
		}
	})
	return running
}

// waitChaosConverged waits until exactly the present pods exist, once each, at
// their generation, each in the state its kind must reach.
func (a *agent) waitChaosConverged(pods []*chaosPod, timeout time.Duration) {
	a.t.Helper()
	want := desiredNames(pods)
	a.eventually(timeout, "every pod in its expected state", func() (bool, string) {
		got := a.pods()
		seen := map[string]bool{}
		for i := range got {
			p := &got[i]
			cp := want[p.Name]
			if cp == nil || seen[p.Name] || p.DeletionTimestamp != nil {
				return false, fmt.Sprintf("unexpected pod %s (%s, deleting %v)\n%s", p.Name, p.UID, p.DeletionTimestamp != nil, a.show("get", "pods", "-A"))
			}
			seen[p.Name] = true
			if g := p.Annotations["chaos/gen"]; g != strconv.Itoa(cp.gen) {
				return false, fmt.Sprintf("%s runs generation %s, want %d", p.Name, g, cp.gen)
			}
			if ok, why := chaosPodOK(cp, p); !ok {
				return false, p.Name + ": " + why + "\n" + a.show("get", "pods", "-A")
			}
		}
		for name := range want {
			if !seen[name] {
				return false, "missing pod " + name + "\n" + a.show("get", "pods", "-A")
			}
		}
		return true, ""
	})
	// Every running container runs once, and the printers' logs have no gap.
	for _, p := range a.pods() {
		cp := want[p.Name]
		if cp.kind != chaosPrinter && cp.kind != chaosInit {
			continue // a flapper's run may end any moment
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				continue
			}
			a.checkOneInit(&p, cs.Name)
			j := a.journal(&p, cs.Name)
			// Running comes a moment before the first line.
			a.eventually(30*time.Second, p.Name+" prints", func() (bool, string) {
				n, err := contiguousFrom(j.Current().LogPath, j.Current().StartedAt)
				if err != nil {
					a.t.Error(err)
					return true, ""
				}
				return n > 0, "nothing printed yet"
			})
		}
	}
}

// chaosPodOK says whether a pod is in the state its kind converges to.
func chaosPodOK(cp *chaosPod, p *corev1.Pod) (bool, string) {
	if len(p.Status.ContainerStatuses) != 1 {
		return false, fmt.Sprintf("%d container statuses", len(p.Status.ContainerStatuses))
	}
	cs := p.Status.ContainerStatuses[0]
	switch cp.kind {
	case chaosPrinter, chaosInit:
		if p.Status.Phase != corev1.PodRunning || cs.State.Running == nil || !cs.Ready {
			return false, fmt.Sprintf("phase %s, state %+v", p.Status.Phase, cs.State)
		}
	case chaosFlapper:
		// Running, or waiting out its back-off; never terminated for good.
		if p.Status.Phase != corev1.PodRunning || cs.State.Terminated != nil || cs.RestartCount == 0 && cs.State.Running == nil {
			return false, fmt.Sprintf("phase %s, restarts %d, state %+v", p.Status.Phase, cs.RestartCount, cs.State)
		}
	case chaosDone:
		if p.Status.Phase != corev1.PodSucceeded {
			return false, fmt.Sprintf("phase %s, state %+v", p.Status.Phase, cs.State)
		}
	case chaosFails:
		if p.Status.Phase != corev1.PodFailed {
			return false, fmt.Sprintf("phase %s, state %+v", p.Status.Phase, cs.State)
		}
	}
	return true, ""
}

// contiguousFrom checks that what a printer's run logged since it started is n=1,
// n=2, … with none missing or repeated, and returns how many lines there are.
// (A pod removed and added again has its old UID, and so its old log directory:
// an earlier run's lines come first.)
func contiguousFrom(path string, since time.Time) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // created with the first line
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := 1
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, " F n=")
		if i < 0 {
			continue
		}
		ts, _, _ := strings.Cut(line, " ")
		if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || at.Before(since) {
			continue
		}
		if n, err := strconv.Atoi(line[i+5:]); err != nil || n != want {
			return want - 1, fmt.Errorf("%s: log gap or repeat: want n=%d, got %q", path, want, line)
		}
		want++
	}
	return want - 1, sc.Err()
}

// checkOneInit asserts that a running container's cgroup holds exactly one process
// whose parent is outside it: one container, not a duplicate beside it.
func (a *agent) checkOneInit(p *corev1.Pod, container string) {
	a.t.Helper()
	dir := filepath.Join("/sys/fs/cgroup/pids", a.podCgroup(p), container)
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		a.t.Errorf("%s/%s: %v", p.Name, container, err)
		return
	}
	in := map[int]bool{}
	for _, f := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(f)
		in[pid] = true
	}
	var inits []int
	for pid := range in {
		// A process that exited since cgroup.procs was read (the printer forks a sleep every 10 ms) has no
		// parent to ask about: it is not a second container.
		if parent, ok := ppid(pid); ok && !in[parent] {
			inits = append(inits, pid)
		}
	}
	if len(inits) != 1 {
		a.t.Errorf("%s/%s: %d container init processes in its cgroup, want 1: %v", p.Name, container, len(inits), inits)
	}
}

func ppid(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// checkNoLeaks waits until what is on the host belongs to the pods that should
// run, and to nothing else: monitors and their runs, sandboxes, pod data
// directories and volumes, cgroups, mounts, veths,
// IP reservations, CNI cache entries and masquerade rules. (agentd removes what
// belongs to no pod within seconds, also what a crash left where restore does
// not look.)
func (a *agent) checkNoLeaks(want map[string]*chaosPod) {
	a.t.Helper()
	start := time.Now()
	a.eventually(30*time.Second, "nothing left behind", func() (bool, string) {
		problems := a.leaks(want)
		return len(problems) == 0, "left behind or missing:\n  " + strings.Join(problems, "\n  ")
	})
	a.t.Logf("nothing left behind %.1f s after convergence", time.Since(start).Seconds())
}

func (a *agent) leaks(want map[string]*chaosPod) []string {
	a.t.Helper()
	uids := map[string]*corev1.Pod{}
	containers := map[string]bool{} // monitor IDs
	networked := 0
	for _, p := range a.pods() {
		if want[p.Name] == nil {
			continue
		}
		uids[string(p.UID)] = &p
		networked++
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			containers[string(p.UID)+"_"+c.Name] = true
		}
	}
	names := func(dir string) []string {
		entries, _ := os.ReadDir(dir)
		var out []string
		for _, e := range entries {
			// Directories, but for the network's state, which is files.
			if e.IsDir() || strings.HasPrefix(dir, filepath.Join(a.dir, "run", "network")) {
				out = append(out, e.Name())
			}
		}
		return out
	}
	var problems []string
	for _, id := range names(filepath.Join(a.dir, "run", "monitors")) {
		if !containers[id] {
			problems = append(problems, "monitor state of "+id)
		}
	}
	if n := len(names(filepath.Join(a.dir, "run", "monitors"))); n != len(containers) {
		problems = append(problems, fmt.Sprintf("%d monitors for %d containers", n, len(containers)))
	}
	// Each container's runs (rootfs, writable layer) are its monitor's, on disk.
	for _, id := range names(filepath.Join(a.dir, "root", "containers")) {
		if !containers[id] {
			problems = append(problems, "runs of "+id+" under root/containers")
		}
	}
	for _, dir := range []string{filepath.Join(a.dir, "run", "pods"), filepath.Join(a.dir, "root", "pods")} {
		for _, uid := range names(dir) {
			if uids[uid] == nil {
				problems = append(problems, filepath.Join(dir, uid))
			}
		}
	}
	for _, ctl := range []string{"pids", "memory", "cpu", "unified"} {
		base := filepath.Join("/sys/fs/cgroup", ctl, a.cgroupPrefix)
		for _, tier := range []string{"", "burstable", "besteffort"} {
			for _, d := range names(filepath.Join(base, tier)) {
				if uid, ok := strings.CutPrefix(d, "pod-"); ok && uids[uid] == nil {
					problems = append(problems, "cgroup "+filepath.Join(base, tier, d))
				}
			}
		}
		for _, d := range names(filepath.Join(base, "monitors")) {
			if !containers[d] {
				problems = append(problems, "cgroup "+filepath.Join(base, "monitors", d))
			}
		}
	}
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[4], a.dir+"/") {
			continue
		}
		rel := strings.Split(strings.TrimPrefix(f[4], a.dir+"/"), "/")
		// run/pods/<uid>, root/pods/<uid> (volumes), run/monitors/<id> (runs of
		// an older agentd's monitor), root/containers/<id> (runs).
		ok := len(rel) > 2 && (rel[1] == "pods" && uids[rel[2]] != nil ||
			(rel[1] == "monitors" || rel[1] == "containers") && containers[rel[2]])
		if !ok {
			problems = append(problems, "mount "+f[4])
		}
	}
	cfg := a.readConfig()
	netw := cfg["network"].(map[string]any)
	bridge, subnet := netw["bridge"].(string), netw["subnet"].(string)
	out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge).Output()
	veths := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			veths++
		}
	}
	if veths != networked {
		problems = append(problems, fmt.Sprintf("%d veths on %s for %d pods", veths, bridge, networked))
	}
	var reserved []string
	for _, f := range names(filepath.Join(a.dir, "run", "network", "ipam", "agentd")) {
		if f != "lock" && !strings.HasPrefix(f, "last_reserved_ip") {
			reserved = append(reserved, f)
		}
	}
	if len(reserved) != networked {
		problems = append(problems, fmt.Sprintf("%d IP reservations for %d pods: %v", len(reserved), networked, reserved))
	}
	cache := names(filepath.Join(a.dir, "run", "network", "cache", "results"))
	if len(cache) != networked {
		problems = append(problems, fmt.Sprintf("%d CNI cache entries for %d pods: %v", len(cache), networked, cache))
	}
	// Masquerading is agentd's one chain for the whole subnet: no pod has rules of its own.
	if p, m := natRules(subnet), subnetMasqJumps(subnet); len(p) != 0 || len(m) != 1 {
		problems = append(problems, fmt.Sprintf("per-pod masquerade rules %q (want none), agentd's jumps for the subnet %q (want one)", p, m))
	}
	sort.Strings(problems)
	return problems
}

func (a *agent) readConfig() map[string]any {
	a.t.Helper()
	cfg := map[string]any{}
	data, err := os.ReadFile(a.config)
	if err != nil {
		a.t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		a.t.Fatal(err)
	}
	return cfg
}
