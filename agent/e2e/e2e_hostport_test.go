package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostPortPod is a pod whose busybox httpd serves "hello from <name>" on 8080,
// forwarded from hostPort.
func hostPortPod(name string, hostPort int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: web
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello from %s > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
    - {containerPort: 8080, hostPort: %d}
`, name, name, hostPort)
}

// httpGet fetches http://addr/ with a short timeout and no keep-alive.
func httpGet(addr, path string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// nodeAddress is an IPv4 address of the node other than loopback: the source
// of its default route, else the pod bridge's gateway.
func nodeAddress(t *testing.T, subnet string) string {
	out, err := exec.Command("ip", "-4", "-o", "route", "get", "1.0.0.1").Output()
	if err == nil {
		f := strings.Fields(string(out))
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "src" {
				return f[i+1]
			}
		}
	}
	t.Logf("no default route (%v): using the pod bridge's address", err)
	return strings.TrimSuffix(subnet, "0/24") + "1"
}

// freeTCPPort is a TCP port nothing listens on now.
func freeTCPPort(t *testing.T, from int) int {
	for p := from; p < from+400; p++ {
		l, err := net.Listen("tcp4", ":"+strconv.Itoa(p))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatalf("no free TCP port from %d", from)
	return 0
}

// hostPortNATRules lists the nat rules that forward to the subnet or name
// one of its pods' portmap chains.
func hostPortNATRules(subnet string) []string {
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	if err != nil {
		return nil
	}
	prefix := strings.TrimSuffix(subnet, "0/24")
	var found []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "--to-destination "+prefix) || strings.Contains(l, "dnat name:") && strings.HasPrefix(l, "-A CNI-HOSTPORT-DNAT") && strings.Contains(l, "-j CNI-DN-") {
			found = append(found, l)
		}
	}
	return found
}

// removeLocalnetGuard removes the INPUT rule agentd adds for the bridge when
// a pod has host ports (it drops pod packets to the host's 127.0.0.0/8).
func removeLocalnetGuard(t *testing.T, bridge string) {
	guards := func() []string {
		out, _ := exec.Command("iptables", "-w", "-t", "filter", "-S", "INPUT").Output()
		var found []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "-i "+bridge+" ") && strings.Contains(l, "-d 127.0.0.0/8") {
				found = append(found, l)
			}
		}
		return found
	}
	for _, l := range guards() {
		_ = exec.Command("sh", "-c", "iptables -w -t filter "+strings.Replace(l, "-A ", "-D ", 1)).Run()
	}
	if left := guards(); len(left) > 0 {
		t.Errorf("could not remove %v", left)
	}
}

// hostPortNetwork is the bridge and subnet in agentd's configuration.
func hostPortNetwork(t *testing.T, a *agent) (bridge, subnet string) {
	var cfg struct {
		Network struct{ Bridge, Subnet string } `json:"network"`
	}
	data, err := os.ReadFile(a.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Network.Bridge, cfg.Network.Subnet
}

func TestE2EHostPort(t *testing.T) {
	hp := freeTCPPort(t, 18080+os.Getpid()%300)
	metricsPort := freeTCPPort(t, hp+1)
	a := newAgent(t, map[string]any{"live-restore": true, "metrics-address": "127.0.0.1:" + strconv.Itoa(metricsPort)})
	bridge, subnet := hostPortNetwork(t, a)
	t.Cleanup(func() { removeLocalnetGuard(t, bridge) }) // the harness does not know this rule
	node := nodeAddress(t, subnet)
	a.start()

	a.write("web.yaml", hostPortPod("web", hp))
	a.waitStatus("web", "Running", 60*time.Second)
	web := a.pod("web")
	for _, host := range []string{"127.0.0.1", node} {
		addr := net.JoinHostPort(host, strconv.Itoa(hp))
		a.eventually(60*time.Second, "httpd at "+addr, func() (bool, string) {
			got, err := httpGet(addr, "/")
			return err == nil && got == "hello from web", fmt.Sprintf("%q %v", got, err)
		})
	}
	if rules := hostPortNATRules(subnet); len(rules) == 0 {
		t.Errorf("no DNAT rules to the pod subnet %s", subnet)
	}
	// route_localnet is on for the bridge (127.0.0.1:hostPort works), so
	// agentd keeps pods off the host's loopback services.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + bridge + "/route_localnet"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("route_localnet on %s: %q %v", bridge, b, err)
	}
	if out, _ := exec.Command("iptables", "-w", "-t", "filter", "-S", "INPUT").Output(); !strings.Contains(string(out), "-d 127.0.0.0/8 -i "+bridge+" ") {
		t.Errorf("no rule keeps pods on %s off the host's loopback:\n%s", bridge, out)
	}

	// A second pod asking for the same host port waits, with an event; the
	// first keeps the port.
	a.write("web2.yaml", hostPortPod("web2", hp))
	a.eventually(60*time.Second, "FailedCreatePodSandBox for web2", func() (bool, string) {
		out := a.ctl("get", "events")
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "web2") && strings.Contains(l, "FailedCreatePodSandBox") && strings.Contains(l, "host port is in use") {
				return true, out
			}
		}
		return false, out
	})
	if got, err := httpGet(net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)), "/"); err != nil || got != "hello from web" {
		t.Errorf("the first pod lost its host port to the second: %q %v", got, err)
	}
	if p := a.pod("web2"); p != nil && p.Status.PodIP != "" {
		t.Errorf("the second pod got an address: %+v", p.Status)
	}
	if err := os.Remove(a.manifest + "/web2.yaml"); err != nil {
		t.Fatal(err)
	}
	a.waitGone("web2", 60*time.Second)

	// agentd's etcd port: refused at the manifest, naming the field; nothing
	// forwards the host's port.
	a.write("etcd.yaml", hostPortPod("etcd", 2379))
	a.eventually(60*time.Second, "InvalidManifest event for etcd.yaml", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Contains(out, "InvalidManifest") && strings.Contains(out, "etcd.yaml") &&
			strings.Contains(out, "spec.containers[0].ports[0].hostPort") && strings.Contains(out, "2379 is one of agentd's own ports"), out
	})
	// agentd's metrics port: the manifest is valid, the sandbox is refused
	// naming the field, and agentd's endpoint still answers.
	a.write("metrics.yaml", hostPortPod("metrics", metricsPort))
	a.eventually(60*time.Second, "FailedCreatePodSandBox for the metrics port", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Contains(out, "spec.containers[0].ports[0].hostPort: Forbidden: "+strconv.Itoa(metricsPort)), out
	})
	nat, _ := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	for _, port := range []int{2379, metricsPort} {
		if strings.Contains(string(nat), "--dport "+strconv.Itoa(port)+" ") || strings.Contains(string(nat), "--dports "+strconv.Itoa(port)+" ") {
			t.Errorf("a rule forwards host port %d:\n%s", port, nat)
		}
	}
	if out, err := httpGet(net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)), "/metrics"); err != nil || !strings.Contains(out, "# HELP") {
		t.Errorf("agentd's metrics endpoint: %v %.200s", err, out)
	}
	for _, f := range []string{"etcd.yaml", "metrics.yaml"} {
		if err := os.Remove(a.manifest + "/" + f); err != nil {
			t.Fatal(err)
		}
	}
	a.waitGone("metrics", 60*time.Second)

	// Live restore: the port keeps working while agentd is down and after.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
	a.stop(unix.SIGTERM, 60*time.Second)
	if got, err := httpGet(addr, "/"); err != nil || got != "hello from web" {
		t.Errorf("with agentd stopped: %q %v", got, err)
	}
	a.start()
	a.waitStatus("web", "Running", 60*time.Second)
	if p := a.pod("web"); p == nil || p.UID != web.UID {
		t.Fatalf("the pod was not restored: %+v", p)
	}
	if got, err := httpGet(addr, "/"); err != nil || got != "hello from web" {
		t.Errorf("after the restart: %q %v", got, err)
	}

	// Deleting the pod closes the port and removes its rules.
	if err := os.Remove(a.manifest + "/web.yaml"); err != nil {
		t.Fatal(err)
	}
	a.waitGone("web", 60*time.Second)
	a.eventually(60*time.Second, "no DNAT rules of the pod", func() (bool, string) {
		rules := hostPortNATRules(subnet)
		return len(rules) == 0, strings.Join(rules, "\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after the pod was deleted", addr)
	}
}
