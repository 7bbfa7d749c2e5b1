package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// crictlRun is one crictl run: its output streams and exit code.
type crictlRun struct {
	stdout, stderr string
	code           int
}

// crictlCLI runs cri-tools' crictl against one agentd's CRI socket.
type crictlCLI struct {
	t   *testing.T
	a   *agent
	bin string
	// config is the crictl.yaml naming the socket, as crictl's docs set it up (without one crictl warns on stderr).
	config string
}

// mustCrictl is crictl, or the test fails: this test exists to drive crictl, and a skip would let `make test` pass
// without it (the Makefile builds it before the tests; hack/build-cri-tools.sh).
func mustCrictl(t *testing.T, a *agent) *crictlCLI {
	t.Helper()
	bin, why := crictlPath()
	if bin == "" {
		t.Fatalf("%s: run `make cri-tools`", why)
	}
	sock := "unix://" + filepath.Join(a.dir, "run", "cri.sock")
	config := filepath.Join(t.TempDir(), "crictl.yaml")
	if err := os.WriteFile(config, []byte("runtime-endpoint: "+sock+"\nimage-endpoint: "+sock+"\ntimeout: 30\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &crictlCLI{t: t, a: a, bin: bin, config: config}
}

func (c *crictlCLI) try(args ...string) crictlRun {
	c.t.Helper()
	return c.tryIn(nil, args...)
}

// tryIn runs crictl with stdin from in (nil: none).
func (c *crictlCLI) tryIn(in io.Reader, args ...string) crictlRun {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--config", c.config}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &stdout, &stderr
	err := cmd.Run()
	r := crictlRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// run runs crictl, fails the test unless it succeeds, and returns its standard output.
func (c *crictlCLI) run(args ...string) string {
	c.t.Helper()
	r := c.try(args...)
	if r.code != 0 {
		c.t.Fatalf("crictl %s: exit code %d\nstdout:\n%s\nstderr:\n%s\nagentd log:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr, c.a.stderr)
	}
	return r.stdout
}

// json runs crictl's command with `-o json` (flags go before the arguments) and decodes its output into v.
func (c *crictlCLI) json(v any, command string, args ...string) {
	c.t.Helper()
	out := c.run(append([]string{command, "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("crictl %s -o json %s: %v\n%s", command, strings.Join(args, " "), err, out)
	}
}

// crictlInspect is what crictl inspect/inspectp print (-o json): the status as protojson, and the verbose info.
type crictlInspect struct {
	Status struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		LogPath string `json:"logPath"`
		Network struct {
			IP string `json:"ip"`
		} `json:"network"`
		ExitCode int `json:"exitCode"`
	} `json:"status"`
	Info struct {
		Pid       int    `json:"pid"`
		SandboxID string `json:"sandboxID"`
	} `json:"info"`
}

// crictlList is what crictl pods, ps and stats print (-o json).
type crictlList struct {
	Items      []struct{ ID, State string } `json:"items"`
	Containers []struct {
		ID           string `json:"id"`
		PodSandboxID string `json:"podSandboxId"`
		State        string `json:"state"`
		Metadata     struct{ Name string }
	} `json:"containers"`
	Stats []struct {
		Attributes struct{ ID string } `json:"attributes"`
		CPU        struct {
			UsageCoreNanoSeconds struct{ Value string } `json:"usageCoreNanoSeconds"`
		} `json:"cpu"`
		Memory struct {
			WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
		} `json:"memory"`
	} `json:"stats"`
}

// TestE2ECrictl: the smoke test of cri-tools' crictl against a real agentd, as a user follows crictl's docs: runp,
// create and start from JSON configs; ps lists the container RUNNING; logs shows exactly what it printed, stdout and
// stderr apart; exec (sync and streaming) returns the command's exact output and its exit code; stats lists the
// container with its memory; inspect and inspectp show its state, pid and the pod's address in the pod subnet;
// port-forward reaches a server on the pod's loopback; attach -i reaches a container's stdin and shows its output; stopp and rmp leave no sandbox, container, process, cgroup,
// mount, network namespace or veth.
func TestE2ECrictl(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	newCRIEnv(t, a) // waits for NetworkReady; removes what a failing test leaves
	c := mustCrictl(t, a)

	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	podJSON := filepath.Join(dir, "pod.json")
	ctrJSON := filepath.Join(dir, "container.json")
	writeJSON := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// As cri-tools' docs/crictl.md writes them (snake_case, the protobuf's JSON names).
	writeJSON(podJSON, `{
  "metadata": {"name": "crictl-sandbox", "namespace": "default", "attempt": 1, "uid": "crictl-smoke-uid"},
  "hostname": "crictl-host",
  "log_directory": "`+logDir+`",
  "linux": {}
}`)
	writeJSON(ctrJSON, `{
  "metadata": {"name": "busybox"},
  "image": {"image": "`+criTestImage+`"},
  "command": ["sh", "-c", "echo hello-crictl; echo to-stderr >&2; mkdir -p /www && echo -n served-by-the-pod >/www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"],
  "log_path": "busybox.0.log",
  "linux": {}
}`)

	// runp, create, start.
	pod := strings.TrimSpace(c.run("runp", podJSON))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(pod) {
		t.Fatalf("crictl runp printed %q, want a sandbox ID", pod)
	}
	ctr := strings.TrimSpace(c.run("create", pod, ctrJSON, podJSON))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ctr) {
		t.Fatalf("crictl create printed %q, want a container ID", ctr)
	}
	var list crictlList
	c.json(&list, "ps", "-a")
	if len(list.Containers) != 1 || list.Containers[0].ID != ctr || list.Containers[0].State != "CONTAINER_CREATED" || list.Containers[0].PodSandboxID != pod {
		t.Errorf("crictl ps -a after create = %+v, want the container CREATED in its pod", list.Containers)
	}
	if out := strings.TrimSpace(c.run("start", ctr)); out != ctr {
		t.Errorf("crictl start printed %q, want the container ID", out)
	}

	// ps: RUNNING, in the table and in JSON.
	a.eventually(60*time.Second, "crictl ps to list the container RUNNING", func() (bool, string) {
		var l crictlList
		c.json(&l, "ps")
		return len(l.Containers) == 1 && l.Containers[0].ID == ctr && l.Containers[0].State == "CONTAINER_RUNNING" &&
			l.Containers[0].Metadata.Name == "busybox", c.run("ps", "-a")
	})
	if out := c.run("ps"); !strings.Contains(out, ctr[:13]) || !strings.Contains(out, "Running") || !strings.Contains(out, "busybox") || !strings.Contains(out, pod[:13]) {
		t.Errorf("crictl ps:\n%s", out)
	}
	if out := c.run("ps", "-q", "--pod", pod); strings.TrimSpace(out) != ctr {
		t.Errorf("crictl ps -q --pod = %q, want %s", out, ctr)
	}
	if out := c.run("pods"); !strings.Contains(out, pod[:13]) || !strings.Contains(out, "Ready") || !strings.Contains(out, "crictl-sandbox") {
		t.Errorf("crictl pods:\n%s", out)
	}

	// logs: exactly what the container printed, each stream to its own.
	a.eventually(60*time.Second, "crictl logs to show the container's output", func() (bool, string) {
		r := c.try("logs", ctr)
		return r.code == 0 && r.stdout == "hello-crictl\n" && r.stderr == "to-stderr\n", r.stdout + "\n--- stderr:\n" + r.stderr
	})
	// --tail 1: the file's last line (the two streams reach the log in either order).
	logLines := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(logDir, "busybox.0.log"))), "\n")
	lastLine := logLines[len(logLines)-1]
	if r := c.try("logs", "--tail", "1", ctr); r.code != 0 || r.stdout+r.stderr != lastLine[strings.LastIndex(lastLine, " ")+1:]+"\n" {
		t.Errorf("crictl logs --tail 1 = %q + %q (exit %d), want the last line only: %q", r.stdout, r.stderr, r.code, lastLine)
	}

	// inspect and inspectp.
	var ci crictlInspect
	c.json(&ci, "inspect", ctr)
	if ci.Status.ID != ctr || ci.Status.State != "CONTAINER_RUNNING" || ci.Status.LogPath != filepath.Join(logDir, "busybox.0.log") {
		t.Errorf("crictl inspect status = %+v, want the container RUNNING with its log path", ci.Status)
	}
	if ci.Info.Pid <= 0 || ci.Info.SandboxID != pod {
		t.Errorf("crictl inspect info = %+v, want the container's pid and its sandbox (as containerd and CRI-O give)", ci.Info)
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(ci.Info.Pid) + "/cmdline"); ci.Info.Pid > 0 && (err != nil || !strings.HasPrefix(string(b), "httpd\x00")) {
		t.Errorf("pid %d of crictl inspect runs %q (%v), want the container's httpd", ci.Info.Pid, b, err)
	}
	var pi crictlInspect
	c.json(&pi, "inspectp", pod)
	_, subnet, _ := net.ParseCIDR(a.subnet())
	if ip := net.ParseIP(pi.Status.Network.IP); pi.Status.ID != pod || pi.Status.State != "SANDBOX_READY" || ip == nil || !subnet.Contains(ip) {
		t.Errorf("crictl inspectp status = %+v, want READY with an address in %s", pi.Status, subnet)
	}
	if tmpl := c.run("inspect", "-o", "go-template", "--template", "{{.status.state}} {{.info.pid}}", ctr); strings.TrimSpace(tmpl) != "CONTAINER_RUNNING "+strconv.Itoa(ci.Info.Pid) {
		t.Errorf("crictl inspect --template = %q", tmpl)
	}

	// exec -s (ExecSync): the exact output, stdout then stderr, each printed with a newline by crictl.
	if r := c.try("exec", "-s", ctr, "sh", "-c", "echo -n out; echo -n err >&2"); r.code != 0 || r.stdout != "out\nerr\n" {
		t.Errorf("crictl exec -s = %q (stderr %q, exit %d), want %q", r.stdout, r.stderr, r.code, "out\nerr\n")
	}
	if out := c.run("exec", "-s", ctr, "hostname"); out != "crictl-host\n\n\n" {
		t.Errorf("crictl exec -s hostname = %q, want the sandbox's hostname", out)
	}
	// A non-zero exit: crictl exits 1 (the CRI client turns the code into an error) and names the command's code.
	if r := c.try("exec", "-s", ctr, "sh", "-c", "exit 3"); r.code != 1 || !strings.Contains(r.stderr, "exited with 3") {
		t.Errorf("crictl exec -s of exit 3: exit %d, stderr %q; want 1 and the command's code 3", r.code, r.stderr)
	}
	// exec (streaming, through the URL agentd hands out): the streams apart, exactly.
	if r := c.try("exec", ctr, "sh", "-c", "echo -n out; echo -n err >&2"); r.code != 0 || r.stdout != "out" || r.stderr != "err" {
		t.Errorf("crictl exec = %q / %q (exit %d), want %q / %q", r.stdout, r.stderr, r.code, "out", "err")
	}
	if r := c.try("exec", ctr, "sh", "-c", "echo -n partial; exit 3"); r.code != 1 || r.stdout != "partial" || !strings.Contains(r.stderr, "exit code 3") {
		t.Errorf("crictl exec of exit 3: exit %d, stdout %q, stderr %q; want 1, the output, and the command's code 3", r.code, r.stdout, r.stderr)
	}
	if r := c.try("exec", ctr, "/no/such/binary"); r.code == 0 {
		t.Errorf("crictl exec of a missing binary succeeded: %q / %q", r.stdout, r.stderr)
	}

	// stats: the container with its memory and CPU time.
	a.eventually(60*time.Second, "crictl stats to list the container with memory", func() (bool, string) {
		var l crictlList
		c.json(&l, "stats")
		for _, s := range l.Stats {
			if s.Attributes.ID == ctr {
				mem, _ := strconv.ParseUint(s.Memory.WorkingSetBytes.Value, 10, 64)
				cpu, _ := strconv.ParseUint(s.CPU.UsageCoreNanoSeconds.Value, 10, 64)
				return mem > 0 && cpu > 0, c.run("stats", "-o", "json")
			}
		}
		return false, c.run("stats", "-o", "json")
	})
	if out := c.run("stats"); !strings.Contains(out, "busybox") || !regexp.MustCompile(`busybox\s+\S+\s+[1-9][0-9.]*[kMG]?B`).MatchString(out) {
		t.Errorf("crictl stats table lacks the container's memory:\n%s", out)
	}
	if out := c.run("statsp"); !strings.Contains(out, "crictl-sandbox") {
		t.Errorf("crictl statsp:\n%s", out)
	}

	// port-forward: to the server on the pod's loopback, through a local port crictl picks.
	crictlPortForward(t, c, pod, "served-by-the-pod")

	// attach -i: to a container created with stdin (stdin_once): its input, then its output until it exits.
	catJSON := filepath.Join(dir, "cat.json")
	writeJSON(catJSON, `{
  "metadata": {"name": "cat"},
  "image": {"image": "`+criTestImage+`"},
  "command": ["sh", "-c", "while read -r line; do echo \"got-$line\"; done; echo stdin-closed"],
  "stdin": true,
  "stdin_once": true,
  "log_path": "cat.0.log"
}`)
	cat := strings.TrimSpace(c.run("create", pod, catJSON, podJSON))
	c.run("start", cat)
	a.eventually(60*time.Second, "the cat container running", func() (bool, string) {
		var st crictlInspect
		c.json(&st, "inspect", cat)
		return st.Status.State == "CONTAINER_RUNNING", st.Status.State
	})
	if r := c.tryIn(strings.NewReader("hello\nagain\n"), "attach", "-i", cat); r.code != 0 || r.stdout != "got-hello\ngot-again\nstdin-closed\n" {
		t.Errorf("crictl attach -i = %q (stderr %q, exit %d), want the container's answers to its input and its end", r.stdout, r.stderr, r.code)
	}
	var catSt crictlInspect
	c.json(&catSt, "inspect", cat)
	if catSt.Status.State != "CONTAINER_EXITED" || catSt.Status.ExitCode != 0 {
		t.Errorf("the attached container after its stdin closed: %+v, want EXITED 0", catSt.Status)
	}

	// What the pod holds on the host, to see it gone after rmp.
	cgroups := processCgroups(t, ci.Info.Pid, a.cgroupPrefix)
	if len(cgroups) == 0 {
		t.Errorf("no cgroup of the container's process under %s", a.cgroupPrefix)
	}
	netns, err := os.Readlink("/proc/" + strconv.Itoa(ci.Info.Pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if own, _ := os.Readlink("/proc/self/ns/net"); netns == own {
		t.Fatalf("the container is in the host's network namespace")
	}
	bridge := bridgeName(t, a)
	if ports := bridgePorts(t, bridge); len(ports) != 1 {
		t.Errorf("bridge %s has ports %v, want the pod's veth", bridge, ports)
	}

	// stopp: NOTREADY, the container EXITED; rmp: nothing left.
	if out := c.run("stopp", pod); !strings.Contains(out, "Stopped sandbox "+pod) {
		t.Errorf("crictl stopp printed %q", out)
	}
	c.json(&pi, "inspectp", pod)
	if pi.Status.State != "SANDBOX_NOTREADY" {
		t.Errorf("crictl inspectp after stopp: %+v, want NOTREADY", pi.Status)
	}
	var stopped crictlInspect
	c.json(&stopped, "inspect", ctr)
	if stopped.Status.State != "CONTAINER_EXITED" || stopped.Info.Pid != 0 {
		t.Errorf("crictl inspect after stopp: %+v, want EXITED and no pid", stopped)
	}
	if out := c.run("ps", "-q"); out != "" {
		t.Errorf("crictl ps after stopp lists running containers: %q", out)
	}
	if out := c.run("rmp", pod); !strings.Contains(out, "Removed sandbox "+pod) {
		t.Errorf("crictl rmp printed %q", out)
	}
	if out := c.run("pods", "-q"); out != "" {
		t.Errorf("crictl pods after rmp: %q, want none", out)
	}
	if out := c.run("ps", "-a", "-q"); out != "" {
		t.Errorf("crictl ps -a after rmp: %q, want none", out)
	}
	if r := c.try("inspect", ctr); r.code == 0 {
		t.Errorf("crictl inspect of a removed container succeeded:\n%s", r.stdout)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(ci.Info.Pid)); err == nil {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(ci.Info.Pid) + "/cmdline"); strings.HasPrefix(string(b), "httpd\x00") {
			t.Errorf("the container's process %d still runs after rmp", ci.Info.Pid)
		}
	}
	for _, cg := range cgroups {
		if _, err := os.Stat(cg); !os.IsNotExist(err) {
			t.Errorf("cgroup %s after rmp: %v, want it removed", cg, err)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (strings.Contains(f[4], pod) || strings.Contains(f[4], ctr) || f[3] == netns) {
			t.Errorf("left mounted after rmp: %s", line)
		}
	}
	if ports := bridgePorts(t, bridge); len(ports) != 0 {
		t.Errorf("bridge %s has ports %v after rmp, want none", bridge, ports)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "run", "pods", pod)); !os.IsNotExist(err) {
		t.Errorf("the sandbox's directory after rmp: %v", err)
	}
	// The log directory is the client's: crictl rmp leaves it, as kubelet's GC removes it.
	if b, err := os.ReadFile(filepath.Join(logDir, "busybox.0.log")); err != nil || !bytes.Contains(b, []byte(" stdout F hello-crictl\n")) {
		t.Errorf("the container's log after rmp: %q, %v", b, err)
	}
}

// crictlPortForward runs `crictl port-forward POD :8080` until a GET through the local port it reports answers
// want, then interrupts it.
func crictlPortForward(t *testing.T, c *crictlCLI, pod, want string) {
	t.Helper()
	cmd := exec.Command(c.bin, "--config", c.config, "port-forward", pod, ":8080")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ports := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ports <- m[1]:
				default:
				}
			}
		}
		done <- cmd.Wait()
	}()
	defer func() {
		_ = cmd.Process.Signal(unix.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("crictl port-forward did not stop on SIGINT")
		}
	}()
	var port string
	select {
	case port = <-ports:
	case err := <-done:
		done <- err
		t.Fatalf("crictl port-forward exited: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("crictl port-forward printed no local port in 60s\n%s", stderr.String())
	}
	client := &http.Client{Timeout: 20 * time.Second}
	c.a.eventually(60*time.Second, "a GET through crictl port-forward", func() (bool, string) {
		resp, err := client.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == want, resp.Status + " " + string(b)
	})
}

// processCgroups is the cgroup directories of pid under parent (cgroup v1 hierarchies and v2).
func processCgroups(t *testing.T, pid int, parent string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], parent+"/") {
			continue
		}
		var cands []string
		if f[1] == "" {
			cands = []string{"/sys/fs/cgroup" + f[2], "/sys/fs/cgroup/unified" + f[2]}
		} else {
			for _, ctl := range strings.Split(strings.TrimPrefix(f[1], "name="), ",") {
				cands = append(cands, "/sys/fs/cgroup/"+ctl+f[2])
			}
		}
		for _, d := range cands {
			if _, err := os.Stat(d); err == nil && !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// bridgeName is the pod network's bridge in agentd's configuration.
func bridgeName(t *testing.T, a *agent) string {
	t.Helper()
	cfg := map[string]any{}
	data, _ := os.ReadFile(a.config)
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg["network"].(map[string]any)["bridge"].(string)
}

// bridgePorts lists the interfaces enslaved to bridge.
func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show master %s: %v\n%s", bridge, err, out)
	}
	var ports []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			ports = append(ports, strings.TrimSuffix(f[1], ":"))
		}
	}
	return ports
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
