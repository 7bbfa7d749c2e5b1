package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// evilDaemonSet is what an attacker who could write to etcd would run as root on every node.
const evilDaemonSet = `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"evil","namespace":"default"},
"spec":{"selector":{"matchLabels":{"app":"evil"}},"template":{"metadata":{"labels":{"app":"evil"}},
"spec":{"containers":[{"name":"main","image":"localhost/busybox:latest","imagePullPolicy":"Never",
"command":["sh","-c","touch /host/pwned; sleep 3600"],"securityContext":{"privileged":true},
"volumeMounts":[{"name":"root","mountPath":"/host"}]}],"volumes":[{"name":"root","hostPath":{"path":"/"}}]}}}}`

// dotDotDaemonSet names a DaemonSet, its container, image and volume "../x".
const dotDotDaemonSet = `{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"../x","namespace":"default"},
"spec":{"selector":{"matchLabels":{"app":"dotdot"}},"template":{"metadata":{"labels":{"app":"dotdot"}},
"spec":{"containers":[{"name":"../x","image":"../x","imagePullPolicy":"Never","command":["sh","-c","sleep 3600"]}],
"volumes":[{"name":"../x","emptyDir":{}}]}}}}`

// adminCredential is the cluster admin credential n holds (admin.conf): CA, client certificate and key, as PEM.
func adminCredential(t *testing.T, n *clusterNode) (ca, cert, key string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.dir, "root", "cluster", "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var cred struct {
		CA   string `json:"certificateAuthority"`
		Cert string `json:"clientCertificate"`
		Key  string `json:"clientKey"`
	}
	if err := json.Unmarshal(data, &cred); err != nil || cred.CA == "" || cred.Cert == "" || cred.Key == "" {
		t.Fatalf("admin.conf: %v\n%s", err, data)
	}
	return cred.CA, cred.Cert, cred.Key
}

// adminTLS is the TLS client configuration of the cluster admin credential n holds (admin.conf), as an operator
// who uses it past agentctl would have it.
func adminTLS(t *testing.T, n *clusterNode) *tls.Config {
	t.Helper()
	ca, certPEM, keyPEM := adminCredential(t, n)
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatalf("admin.conf: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca)) {
		t.Fatal("admin.conf: no CA certificate")
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// dirNames lists the entries of each of dirs, sorted, as "dir/name".
func dirNames(t *testing.T, dirs ...string) []string {
	t.Helper()
	var names []string
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, filepath.Join(d, e.Name()))
		}
	}
	return names
}

// etcdAs is an etcd client of endpoint with cfg (nil: plain HTTP), as an attacker would make one.
func etcdAs(t *testing.T, endpoint string, cfg *tls.Config) *clientv3.Client {
	t.Helper()
	if cfg == nil {
		endpoint = strings.Replace(endpoint, "https://", "http://", 1)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: cfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// putEvil tries to write the evil DaemonSet and a node record of another node; it returns the errors.
func putEvil(c *clientv3.Client) (dsErr, nodeErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, dsErr = c.Put(ctx, "/agentd/daemonsets/default/evil", evilDaemonSet)
	_, nodeErr = c.Delete(ctx, "/agentd/node/node-1/", clientv3.WithPrefix())
	return dsErr, nodeErr
}

// nodeTLS is the TLS client configuration of n's node certificate, as one who stole n's files would have it.
func nodeTLS(t *testing.T, n *clusterNode, certFile, keyFile string) *tls.Config {
	t.Helper()
	dir := filepath.Join(n.dir, "root", "cluster", "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// TestE2EClusterSecurity runs the attacks on cluster mode against three real agents and shows each refused:
// clients of etcd without a certificate, over plain HTTP, or with another CA's; a client-only node's stolen
// certificate writing a DaemonSet or another node's record, or posing as an etcd peer; joins with a wrong CA hash
// (stopped before the token is sent), a wrong secret, an expired token, a one-use token used again; a node without
// the admin credential applying or deleting; a baseline cluster applying a privileged hostPath DaemonSet; a
// DaemonSet whose name, container name, image and volume name are "../x", applied or written into etcd with the
// admin credential (every node refuses it, naming the fields, and runs nothing). Last,
// the filter rule that keeps pods off the cluster's ports is in place while the node is in the cluster and gone
// after it left.
func TestE2EClusterSecurity(t *testing.T) {
	n1, n2, n3 := newClusterNode(t, "node-1", nil), newClusterNode(t, "node-2", nil), newClusterNode(t, "node-3", nil)
	for _, n := range []*clusterNode{n1, n2, n3} {
		n.start()
	}
	n1.initCluster()
	if out := n1.ctl("cluster", "status"); !strings.Contains(out, "Pod Security: baseline") || !strings.Contains(out, "Admin Credential: yes") ||
		!strings.Contains(out, n1.joinURL+" (served by this node)") {
		t.Errorf("cluster status of the first node:\n%s", out)
	}
	n2.joinMember(n1)

	// Joins that must fail. The wrong CA hash is refused in the TLS handshake: the one-use token it carried is
	// still unused afterwards, so it was never sent.
	once := n1.token("--once", "--description", "for node-3")
	hashAt := indexOf(once, "--ca-cert-hash") + 1
	wrongHash := append([]string(nil), once...)
	wrongHash[hashAt] = "sha256:" + strings.Repeat("0", 64)
	join3 := func(args []string) (string, error) {
		return n3.try(append([]string{"cluster", "join"}, args...)...)
	}
	if out, err := join3(wrongHash); err == nil || !strings.Contains(out, "does not match --ca-cert-hash") || !strings.Contains(out, "token was not sent") {
		t.Fatalf("join with a wrong CA hash: %v\n%s", err, out)
	}
	if out := n1.ctl("cluster", "token", "list"); !regexp.MustCompile(`(?m)^` + once[2][:6] + `\.\*+\s.*join once\s+for node-3`).MatchString(out) {
		t.Fatalf("the one-use token after a join with a wrong CA hash (it must be unused):\n%s", out)
	}
	wrongSecret := append([]string(nil), once...)
	wrongSecret[2] = once[2][:7] + strings.Repeat("x", 16)
	if out, err := join3(wrongSecret); err == nil || !strings.Contains(out, "invalid bootstrap token") {
		t.Fatalf("join with a wrong secret: %v\n%s", err, out)
	}
	expiring := n1.token("--ttl", "1s")
	n1.eventually(10*time.Second, "the token expired", func() (bool, string) {
		out := n1.ctl("cluster", "token", "list")
		return regexp.MustCompile(`(?m)^` + expiring[2][:6] + `\.\*+\s+<expired>`).MatchString(out), out
	})
	if out, err := join3(expiring); err == nil || !strings.Contains(out, "expired") {
		t.Fatalf("join with an expired token: %v\n%s", err, out)
	}
	// A worker token cannot make an etcd member (which could write anything), and is not spent trying.
	if out, err := join3(append(append([]string(nil), once...), "--control-plane", "--peer-url", n3.peerURL, "--client-url", n3.clientURL)); err == nil ||
		!strings.Contains(out, "joins worker nodes (etcd clients) only") {
		t.Fatalf("a control-plane join with a worker token: %v\n%s", err, out)
	}
	if out := n3.ctl("cluster", "status"); !strings.Contains(out, "Cluster: none") {
		t.Fatalf("node-3 after refused joins:\n%s", out)
	}
	if out, err := join3(once); err != nil || !strings.Contains(out, "as a client of its etcd") {
		t.Fatalf("join with the one-use token: %v\n%s", err, out)
	}
	if out := n1.ctl("cluster", "token", "list"); !strings.Contains(out, "used by node-3") {
		t.Errorf("token list after the one-use token joined node-3:\n%s", out)
	}
	late := newClusterNode(t, "node-4", nil)
	late.start()
	if out, err := late.try(append([]string{"cluster", "join"}, once...)...); err == nil || !strings.Contains(out, "already used") {
		t.Fatalf("a second join with a one-use token: %v\n%s", err, out)
	}
	n1.waitNodes(map[string]string{"node-1": "Ready", "node-2": "Ready", "node-3": "Ready"}, 30*time.Second)
	for _, n := range []*clusterNode{n1, n2, n3} {
		if out := n.ctl("cluster", "certs"); !strings.Contains(out, "node:"+n.name) {
			t.Errorf("%s: cluster certs:\n%s", n.name, out)
		}
	}

	// Clients of etcd without the cluster's certificates get nothing.
	otherCA := newForeignTLS(t)
	for what, c := range map[string]*clientv3.Client{
		"plain HTTP":            etcdAs(t, n1.clientURL, nil),
		"TLS without a cert":    etcdAs(t, n1.clientURL, &tls.Config{InsecureSkipVerify: true}), //nolint:gosec // the attacker's choice
		"another CA's cert":     etcdAs(t, n1.clientURL, otherCA),
		"node-3's stolen cert":  etcdAs(t, n1.clientURL, nodeTLS(t, n3, "node.pem", "node.pem")),
		"node-3's cert, node-2": etcdAs(t, n2.clientURL, nodeTLS(t, n3, "node.pem", "node.pem")),
	} {
		dsErr, nodeErr := putEvil(c)
		if dsErr == nil || nodeErr == nil {
			t.Errorf("%s: writing a DaemonSet: %v; removing node-1's record: %v; want both refused", what, dsErr, nodeErr)
		} else {
			t.Logf("%s: refused: %v", what, dsErr)
		}
	}
	// node-3's certificate cannot make it an etcd peer either: the peer listener takes only peer certificates.
	if err := tlsHandshake(n1.peerURL, nodeTLS(t, n3, "node.pem", "node.pem")); err == nil {
		t.Error("node-3's node certificate was accepted by node-1's peer listener")
	}
	if err := tlsHandshake(n1.peerURL, nodeTLS(t, n2, "peer.pem", "peer.pem")); err != nil {
		t.Errorf("node-2's peer certificate at node-1's peer listener (the control): %v", err)
	}

	// Nodes without the admin credential cannot change the cluster through their agentd either.
	for _, args := range [][]string{{"apply", "-f", writeTemp(t, evilDaemonSet)}, {"delete", "node", "node-2"}, {"cluster", "token", "create"}} {
		if out, err := n3.try(args...); err == nil || !strings.Contains(out, "no cluster admin credential") && !strings.Contains(out, "does not serve the cluster's join service") {
			t.Errorf("node-3: agentctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// And the admin is held to the cluster's Pod Security level.
	out, err := n1.try("apply", "-f", writeTemp(t, evilDaemonSet))
	if err == nil || !strings.Contains(out, `violates PodSecurity "baseline:latest"`) ||
		!strings.Contains(out, "spec.template.spec.containers[0].securityContext.privileged") ||
		!strings.Contains(out, "spec.template.spec.volumes[0].hostPath") {
		t.Errorf("apply of a privileged hostPath DaemonSet in a baseline cluster: %v\n%s", err, out)
	}
	if out, err := n1.try("get", "daemonsets", "evil"); err == nil {
		t.Errorf("the evil DaemonSet exists:\n%s", out)
	}
	if _, err := os.Stat("/pwned"); err == nil {
		t.Error("/pwned exists on the host")
	}

	// Names that would lead out of a node's directories (pod names, log and run directories come from them) are
	// refused by apply, naming every field, and by each node when written straight into etcd with the admin
	// credential, past apply: no pod runs and nothing appears beside the nodes' directories.
	nodes := []*clusterNode{n1, n2, n3}
	before := map[string][]string{}
	for _, n := range nodes {
		before[n.name] = dirNames(t, n.dir, filepath.Join(n.dir, "logs"))
	}
	wantFields := []string{`metadata.name: Invalid value: "../x"`, `spec.template.spec.containers[0].name: Invalid value: "../x"`,
		`spec.template.spec.containers[0].image: Invalid value: "../x"`, `spec.template.spec.volumes[0].name: Invalid value: "../x"`}
	out, err = n1.try("apply", "-f", writeTemp(t, dotDotDaemonSet))
	for _, f := range wantFields {
		if err == nil || !strings.Contains(out, f) {
			t.Errorf("apply of a DaemonSet named ../x: %v, want an error naming %s:\n%s", err, f, out)
		}
	}
	admin := etcdAs(t, n1.clientURL, adminTLS(t, n1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const dotDotKey = "/agentd/daemonsets/default/../x"
	if _, err := admin.Put(ctx, dotDotKey, dotDotDaemonSet); err != nil {
		t.Fatalf("writing a DaemonSet into etcd with the admin credential: %v", err)
	}
	for _, n := range nodes {
		n.eventually(30*time.Second, n.name+" refuses the ../x DaemonSet, naming its fields", func() (bool, string) {
			for _, line := range strings.Split(n.stderr.String(), "\n") {
				if !strings.Contains(line, "Refusing to run this node's pod of an invalid daemonset") {
					continue
				}
				for _, f := range []string{"metadata.name", "spec.template.spec.containers[0].name", "spec.template.spec.containers[0].image", "spec.template.spec.volumes[0].name"} {
					if !strings.Contains(line, f+": Invalid value") {
						return false, line
					}
				}
				return true, line
			}
			return false, ""
		})
		// The sync that logged the refusal is the one that would have started the pod.
		for _, p := range n.pods() {
			t.Errorf("%s runs pod %s/%s", n.name, p.Namespace, p.Name)
		}
		if got := dirNames(t, n.dir, filepath.Join(n.dir, "logs")); strings.Join(got, " ") != strings.Join(before[n.name], " ") {
			t.Errorf("%s: its directory and log-dir changed from %v to %v", n.name, before[n.name], got)
		}
	}
	if _, err := admin.Delete(ctx, dotDotKey); err != nil {
		t.Errorf("deleting the ../x DaemonSet: %v", err)
	}

	// Pods cannot reach the cluster's ports: node-1 rejects them from its bridge while in the cluster.
	if _, err := exec.LookPath("iptables"); err == nil {
		rules, _ := exec.Command("iptables", "-S").CombinedOutput()
		for _, u := range []string{n1.clientURL, n1.peerURL, n1.joinURL} {
			port := u[strings.LastIndex(u, ":")+1:]
			if !regexp.MustCompile(`(?m)^-A AGENTD-HOST-\S+ .*--dports \S*\b` + port + `\b.* -j REJECT`).Match(rules) {
				t.Errorf("no rule keeps pods off node-1's port %s:\n%s", port, rules)
			}
		}
		n2.ctl("cluster", "leave")
		n2.stop(unix.SIGTERM, 60*time.Second)
		rules, _ = exec.Command("iptables", "-S").CombinedOutput()
		for _, u := range []string{n2.clientURL, n2.peerURL} {
			port := u[strings.LastIndex(u, ":")+1:]
			if regexp.MustCompile(`--dports \S*\b` + port + `\b`).Match(rules) {
				t.Errorf("node-2 left the cluster, yet a rule for its port %s remains:\n%s", port, rules)
			}
		}
	}
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// tlsHandshake completes a TLS handshake with the server of u and reads from it, so that a client certificate the
// server refuses (TLS 1.3 refuses it after the client's side of the handshake) shows as an error.
func tlsHandshake(u string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.InsecureSkipVerify = true //nolint:gosec // only the server's verdict on our certificate matters here
	conn, err := tls.Dial("tcp", strings.TrimPrefix(u, "https://"), cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	// An HTTP request the peer listener answers (etcd's /version) once the certificate passed.
	if _, err := fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		return errors.New("answered " + string(buf[:n]))
	}
	return nil
}

// newForeignTLS is a client configuration with a root certificate of a CA the cluster does not know.
func newForeignTLS(t *testing.T) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	key, crt := filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=root").CombinedOutput()
	if err != nil {
		t.Skipf("openssl: %v\n%s", err, out)
	}
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(crt)
	if blk, _ := pem.Decode(b); blk == nil {
		t.Fatal("openssl wrote no certificate")
	}
	return &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}} //nolint:gosec // the attacker's choice
}

// certExpiry is when n's certificate named name expires, as `cluster certs` shows it.
func (n *clusterNode) certExpiry(name string) time.Time {
	n.t.Helper()
	for _, line := range strings.Split(n.ctl("cluster", "certs"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == name {
			at, err := time.Parse(time.RFC3339, f[2])
			if err != nil {
				n.t.Fatalf("cluster certs: %q: %v", line, err)
			}
			return at
		}
	}
	n.t.Fatalf("cluster certs lists no %s certificate", name)
	return time.Time{}
}

// TestE2EClusterRenewalAndOfflineStart: a node restarted while the cluster's etcd has no quorum runs the DaemonSet
// pod it last ran, from its cache, and catches up when etcd is back; certificates valid for 45 s (the offline part
// ends before they are due, also on a busy machine) renew themselves (the node's through the join service, the
// signing node's and the admin credential locally) without disturbing the pods, and the cluster keeps working
// after the first certificates expired.
func TestE2EClusterRenewalAndOfflineStart(t *testing.T) {
	n1, n2 := newClusterNode(t, "node-1", nil), newClusterNode(t, "node-2", nil)
	n1.start()
	n2.start()
	n1.initCluster("--cert-validity", "45s")
	n2.joinMember(n1)
	first := map[string]time.Time{"node-1": n1.certExpiry("node"), "node-2": n2.certExpiry("node")}
	n1.apply(t, daemonSetYAML("hello", "v1", ""))
	n1.waitRolledOut("hello", 2, 60*time.Second)

	// Both down (node-2 stopped, its pods with it; node-1 killed); node-2 starts alone: no quorum, yet it runs its
	// pod of hello from its cache.
	n2.stop(unix.SIGTERM, 60*time.Second)
	n1.stop(unix.SIGKILL, 10*time.Second)
	restarted := time.Now()
	n2.start()
	offline := n2.runningPod("hello-node-2", 60*time.Second)
	t.Logf("node-2 started without a quorum and ran its cached pod, Ready, %v after it was started", time.Since(restarted).Round(10*time.Millisecond))
	if !strings.Contains(n2.stderr.String(), "Running the cluster pods this node last ran until the cluster's etcd answers") {
		t.Errorf("node-2 did not say it runs its cached cluster pods:\n%s", n2.stderr)
	}
	if out, err := n2.try("get", "nodes"); err == nil {
		t.Fatalf("get nodes without a quorum:\n%s", out)
	}
	n1.start()
	n1.waitNodes(map[string]string{"node-1": "Ready", "node-2": "Ready"}, 60*time.Second)
	n1.waitRolledOut("hello", 2, 60*time.Second)
	if p := n2.pod("hello-node-2"); p == nil || p.UID != offline.UID {
		t.Errorf("node-2 replaced the pod it ran from its cache when etcd came back: %+v", p)
	}

	// Renewals: each node's certificate is replaced before it expires; the pods are not touched.
	before := map[string]*clusterNode{"node-1": n1, "node-2": n2}
	pods := map[string]string{}
	for name, n := range before {
		pods[name] = string(n.runningPod("hello-"+name, 30*time.Second).UID)
	}
	for name, n := range before {
		n.eventually(60*time.Second, name+" renewed its certificates", func() (bool, string) {
			return n.certExpiry("node").After(first[name]), n.ctl("cluster", "certs")
		})
	}
	n1.eventually(60*time.Second, "node-1 renewed the admin credential", func() (bool, string) {
		return strings.Contains(n1.stderr.String(), "Renewed the cluster admin credential"), ""
	})
	// Past the first certificates' expiry, the cluster works on the renewed ones.
	latest := first["node-1"]
	if first["node-2"].After(latest) {
		latest = first["node-2"]
	}
	n1.eventually(time.Until(latest)+30*time.Second, "the first certificates expired", func() (bool, string) {
		return time.Now().After(latest.Add(time.Second)), ""
	})
	for name, n := range before {
		if p := n.pod("hello-" + name); p == nil || string(p.UID) != pods[name] || p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("%s: the renewals disturbed its pod: %+v", name, p)
		}
	}
	n1.apply(t, daemonSetYAML("hello", "v2", ""))
	n1.waitRolledOut("hello", 2, 60*time.Second)
	n2.waitNodes(map[string]string{"node-1": "Ready", "node-2": "Ready"}, 30*time.Second)
	for name, n := range before {
		if p := n.pod("hello-" + name); p == nil || string(p.UID) == pods[name] {
			t.Errorf("%s: the v2 pod replaced nothing: %+v", name, p)
		}
		if strings.Contains(n.stderr.String(), "Could not renew") {
			t.Errorf("%s logged a failed renewal:\n%s", name, n.stderr)
		}
	}
}
