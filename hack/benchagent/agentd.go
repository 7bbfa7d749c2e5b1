package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/cri"
)

// env is one agentd of this run with everything of its own: a work directory
// (manifests, root, run-dir, log-dir, config file, agentd's log), a cgroup
// parent, a bridge and a subnet.
type env struct {
	o                              *options
	base, bin                      string
	manifests, root, runDir        string
	logDir, socket, config, logOut string
	parent, bridge, subnet         string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited; exitErr is then set
	exitE  error
	client *api.Client
}

func newEnv(o *options, base, bin string) (*env, error) {
	e := &env{o: o, base: base, bin: bin,
		manifests: filepath.Join(base, "manifests"),
		root:      filepath.Join(base, "root"),
		runDir:    filepath.Join(base, "run"),
		logDir:    filepath.Join(base, "logs"),
		config:    filepath.Join(base, "config.json"),
		logOut:    filepath.Join(base, "agentd.log"),
		parent:    fmt.Sprintf("/agentd-bench-%d", os.Getpid()),
		subnet:    o.subnet,
	}
	e.socket = filepath.Join(e.runDir, "agent.sock")
	e.client = api.NewClient(e.socket)
	if err := os.MkdirAll(e.manifests, 0o755); err != nil {
		return nil, err
	}
	if e.bridge = o.bridge; e.bridge == "" {
		for n := 0; n < 1000; n++ {
			name := fmt.Sprintf("agbench%d", n)
			if _, err := net.InterfaceByName(name); err != nil {
				e.bridge = name
				break
			}
		}
	} else if _, err := net.InterfaceByName(e.bridge); err == nil {
		return nil, fmt.Errorf("bridge %s exists already: pick another with -bridge", e.bridge)
	}
	if e.bridge == "" {
		return nil, errors.New("no free bridge name agbench0..agbench999")
	}
	if err := checkSubnet(e.subnet); err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"manifest-dir":  e.manifests,
		"root":          e.root,
		"run-dir":       e.runDir,
		"log-dir":       e.logDir,
		"cgroup-parent": e.parent,
		"live-restore":  false, // SIGTERM stops the pods: that is what the stop benchmark times
		"log-level":     o.logLevel,
		"network":       map[string]string{"bridge": e.bridge, "subnet": e.subnet},
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(e.config, data, 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// checkSubnet refuses a subnet that overlaps an address of this host (a bridge
// of ours on it would capture the host's traffic).
func checkSubnet(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("-subnet %q: %w", s, err)
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			q, err := netip.ParsePrefix(ipn.String())
			if err == nil && q.Overlaps(p) {
				return fmt.Errorf("subnet %s overlaps %s on %s: pick another with -subnet", s, ipn, ifc.Name)
			}
		}
	}
	return nil
}

// ctl runs agentctl against this agentd (or offline, with --root).
func (e *env) ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "agentctl"), args...)
	cmd.Env = append(os.Environ(), "AGENT_SOCKET="+e.socket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("agentctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (e *env) importImage(ctx context.Context, archive string) error {
	_, err := e.ctl(ctx, "--root", e.root, "image", "import", archive)
	return err
}

// start runs agentd and waits until its API answers; it returns how long that took.
func (e *env) start(ctx context.Context) (time.Duration, error) {
	if e.running() {
		return 0, errors.New("agentd runs already")
	}
	out, err := os.OpenFile(e.logOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "==== agentd started by benchagent at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(e.bin, "agentd"), "--config-file", e.config)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C in the terminal reaches us, and we stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Its working directory is ours, and so is that of everything it runs (CNI
	// plugins, iptables): the clean-up finds those by it.
	cmd.Dir = e.base
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		out.Close()
		return 0, err
	}
	out.Close()
	e.cmd, e.exited = cmd, make(chan struct{})
	go func() { e.exitE = cmd.Wait(); close(e.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-e.exited:
			return 0, fmt.Errorf("agentd exited at start: %v\n%s", e.exitE, e.logTail(30))
		default:
		}
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := e.client.Info(ictx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("agentd does not answer on %s: %v\n%s", e.socket, err, e.logTail(30))
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(t0)
	if b, _ := os.ReadFile(e.logOut); strings.Contains(string(b), "Pod networking unavailable") {
		return took, fmt.Errorf("agentd runs without pod networking (CNI plugins or iptables missing? run hack/install-deps.sh):\n%s", e.logTail(30))
	}
	return took, nil
}

func (e *env) pid() int {
	if e.cmd == nil || e.cmd.Process == nil {
		return 0
	}
	return e.cmd.Process.Pid
}

func (e *env) running() bool {
	if e.cmd == nil {
		return false
	}
	select {
	case <-e.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM (live restore is off: agentd stops its pods) and waits for
// agentd to exit; it returns how long that took.
func (e *env) stop(timeout time.Duration) (time.Duration, error) {
	if !e.running() {
		return 0, nil
	}
	t0 := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-e.exited:
		took := time.Since(t0)
		if e.exitE != nil {
			return took, fmt.Errorf("agentd exited with %v after SIGTERM\n%s", e.exitE, e.logTail(20))
		}
		return took, nil
	case <-time.After(timeout):
		return time.Since(t0), fmt.Errorf("agentd did not exit within %v of SIGTERM\n%s", timeout, e.logTail(20))
	}
}

// alive returns an error when agentd has exited.
func (e *env) alive() error {
	if e.running() {
		return nil
	}
	return fmt.Errorf("agentd exited: %v\n%s", e.exitE, e.logTail(20))
}

func (e *env) kill() {
	if e.running() {
		_ = e.cmd.Process.Signal(syscall.SIGKILL)
		<-e.exited
	}
}

func (e *env) logTail(n int) string {
	b, _ := os.ReadFile(e.logOut)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "agentd log (last lines, " + e.logOut + "):\n  " + strings.Join(lines, "\n  ")
}

// write puts a manifest in place as tools should: a temporary name the source
// skips (a dotfile), then rename.
func (e *env) write(name, content string) error {
	tmp := filepath.Join(e.manifests, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(e.manifests, name))
}

// monitorPids reads <run-dir>/monitors/*/journal.json: monitor pid by monitor id.
func (e *env) monitorPids() map[string]int {
	out := map[string]int{}
	dirs, _ := filepath.Glob(filepath.Join(e.runDir, "monitors", "*", cri.JournalFile))
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var j cri.Journal
		if json.Unmarshal(b, &j) == nil && j.MonitorPid > 0 {
			out[filepath.Base(filepath.Dir(f))] = j.MonitorPid
		}
	}
	return out
}

// cleanup stops agentd and removes everything of this run. It returns what it
// found left over (each also removed where it could be).
func (e *env) cleanup(saveLog string) error {
	var errs []error
	if e.running() {
		if _, err := e.stop(60 * time.Second); err != nil {
			errs = append(errs, err)
			e.kill()
		}
	}
	// Monitors left (agentd crashed or was killed): an agentd with live restore off
	// stops every monitor it finds at start; with no manifests it starts nothing.
	if ms, _ := os.ReadDir(filepath.Join(e.runDir, "monitors")); len(ms) > 0 {
		fmt.Printf("clean-up: %d monitor(s) left; starting agentd once more (live restore off, no manifests) to stop them\n", len(ms))
		_ = os.RemoveAll(e.manifests)
		_ = os.MkdirAll(e.manifests, 0o755)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if _, err := e.start(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clean-up start: %w", err))
		}
		cancel()
		if _, err := e.stop(60 * time.Second); err != nil {
			errs = append(errs, err)
		}
		e.kill()
	}
	// Helpers agentd ran and did not wait for (a CNI plugin still adding a pod
	// when agentd exited: it goes on, and adds its nat rules, after agentd is
	// gone): let them finish before the network is checked.
	waitHelpers := func() []proc {
		var helpers []proc
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			helpers = helpers[:0]
			for _, p := range processesOf(e.base, e.parent) {
				if !p.ours {
					helpers = append(helpers, p)
				}
			}
			if len(helpers) == 0 || time.Now().After(deadline) {
				return helpers
			}
		}
	}
	if h := waitHelpers(); len(h) > 0 {
		for _, p := range h {
			errs = append(errs, fmt.Errorf("still running 30 s after agentd exited, with %s as its directory or in its command line: pid %d %s (left alone)", e.base, p.pid, p.cmd))
		}
	}
	// Processes: monitors (their state dir is in their command line), containers
	// (their root is under base), anything in our cgroup parent.
	left := processesOf(e.base, e.parent)
	if len(left) > 0 {
		time.Sleep(2 * time.Second) // a monitor's last `next` step may still be finishing
		left = processesOf(e.base, e.parent)
	}
	// What agentd left (it should not have): every one of them is in our cgroup
	// parent or runs from our work dir, so it is ours to kill, by pid.
	n := 0
	for _, p := range left {
		if !p.ours {
			continue // reported above
		}
		errs = append(errs, fmt.Errorf("left running: pid %d %s (killed now)", p.pid, p.cmd))
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		left[n] = p
		n++
	}
	left = left[:n]
	for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		n := 0
		for _, p := range left {
			if !noThreadLeft(p.pid) {
				left[n] = p
				n++
			}
		}
		left = left[:n]
	}
	for _, p := range left {
		errs = append(errs, fmt.Errorf("pid %d still running after SIGKILL", p.pid))
	}
	for _, mp := range mountsUnder(e.base) {
		errs = append(errs, fmt.Errorf("left mounted: %s (unmounted now)", mp))
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	for _, root := range cgroupRoots() {
		dir := filepath.Join(root, e.parent)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		removeEmptyTree(dir)
		if _, err := os.Stat(dir); err == nil {
			errs = append(errs, fmt.Errorf("cgroup left: %s", dir))
		}
	}
	if _, err := net.InterfaceByName(e.bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", e.bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %v: %s", e.bridge, err, out))
		}
	}
	if _, err := net.InterfaceByName(e.bridge); err == nil {
		errs = append(errs, fmt.Errorf("bridge %s left", e.bridge))
	}
	errs = append(errs, e.cleanupIptables()...)
	if saveLog == "" && len(errs) > 0 {
		saveLog = e.base + ".agentd.log"
	}
	if saveLog != "" {
		if b, err := os.ReadFile(e.logOut); err == nil && os.WriteFile(saveLog, b, 0o644) == nil {
			fmt.Printf("agentd's log (this run's clean-up included) saved to %s\n", saveLog)
		}
	}
	if mounts := mountsUnder(e.base); len(mounts) > 0 {
		errs = append(errs, fmt.Errorf("still mounted, %s kept: %v", e.base, mounts))
	} else if err := os.RemoveAll(e.base); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		fmt.Printf("clean-up: nothing left (no process, mount, cgroup under %s, bridge %s or nat rule for %s; %s removed)\n",
			e.parent, e.bridge, e.subnet, e.base)
	}
	return errors.Join(errs...)
}

// cleanupIptables removes nat POSTROUTING rules for sources in our subnet (the
// bridge plugin's masquerading, one per pod; agentd removes them at pod stop) and
// the chains they jump to. Each one found is an error: agentd should have.
func (e *env) cleanupIptables() []error {
	p, err := netip.ParsePrefix(e.subnet)
	if err != nil {
		return nil
	}
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return nil // no iptables: agentd could not have added rules either
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "-A" {
			continue
		}
		src, chain := "", ""
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "-s":
				src = f[i+1]
			case "-j":
				chain = f[i+1]
			}
		}
		sp, err := netip.ParsePrefix(src)
		if err != nil || !p.Overlaps(sp) {
			continue
		}
		errs = append(errs, fmt.Errorf("nat rule left (removed now): %s", line))
		_ = exec.Command("sh", "-c", "iptables -w -t nat -D"+strings.TrimPrefix(line, "-A")).Run()
		if strings.HasPrefix(chain, "CNI-") {
			_ = exec.Command("iptables", "-w", "-t", "nat", "-F", chain).Run()
			_ = exec.Command("iptables", "-w", "-t", "nat", "-X", chain).Run()
		}
	}
	return errs
}
