package api_test

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
)

var joined = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func TestClusterStatus(t *testing.T) {
	ts := newTestServer(t)
	ts.f.ClusterStatusValue = api.ClusterStatus{
		InCluster: true, ClusterID: "c1", NodeName: "node-1", EtcdMember: true, Endpoints: []string{"https://10.0.0.1:2379"},
		JoinedAt: joined, Connected: true, Registered: true, DaemonSets: 2, NodeLabels: map[string]string{"zone": "a"},
		PodSecurity: "baseline", JoinURL: "https://10.0.0.1:7443", ServesJoins: true, AdminCredential: true,
	}
	st, err := ts.c.ClusterStatus(testCtx(t))
	if err != nil || !reflect.DeepEqual(*st, ts.f.ClusterStatusValue) {
		t.Errorf("ClusterStatus = %+v, %v; want %+v", st, err, ts.f.ClusterStatusValue)
	}
}

// TestClusterMembership: init and join pass their request to the backend, with a deadline, and answer the status;
// leave passes force and answers the status after it.
func TestClusterMembership(t *testing.T) {
	ts := newTestServer(t)
	ts.f.ClusterStatusValue = api.ClusterStatus{InCluster: true, ClusterID: "c1", JoinedAt: joined}
	ctx := testCtx(t)
	initReq := api.ClusterInitRequest{PeerURL: "https://10.0.0.1:2380", ClientURL: "https://10.0.0.1:2379",
		JoinURL: "https://10.0.0.1:7443", PodSecurity: "restricted", CertValidity: "8760h"}
	st, err := ts.c.ClusterInit(ctx, initReq)
	if err != nil || !reflect.DeepEqual(*st, ts.f.ClusterStatusValue) {
		t.Errorf("ClusterInit = %+v, %v; want the backend's status", st, err)
	}
	joinReq := api.ClusterJoinRequest{URL: "https://10.0.0.1:7443", Token: "abcdef.0123456789abcdef",
		CACertHash: "sha256:00", PeerURL: "https://10.0.0.2:2380", ClientURL: "https://10.0.0.2:2379", ControlPlane: true}
	st, err = ts.c.ClusterJoin(ctx, joinReq)
	if err != nil || !reflect.DeepEqual(*st, ts.f.ClusterStatusValue) {
		t.Errorf("ClusterJoin = %+v, %v; want the backend's status", st, err)
	}
	if err := ts.c.ClusterLeave(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.ClusterLeave(ctx, true); err != nil {
		t.Fatal(err)
	}
	code, body := ts.do(t, http.MethodPost, api.PathCluster+"/leave", "", "")
	if got := decode[api.ClusterStatus](t, "POST leave", code, body); !reflect.DeepEqual(got, ts.f.ClusterStatusValue) {
		t.Errorf("POST leave answered %+v, want the status after it", got)
	}
	wantCalls(t, ts.f, []apitest.Call{
		call("ClusterInit", initReq), call("ClusterJoin", joinReq),
		call("ClusterLeave", false), call("ClusterStatus"), call("ClusterLeave", true), call("ClusterStatus"),
		call("ClusterLeave", false), call("ClusterStatus"),
	})
	// They wait for etcd members, but not for ever: each has a deadline.
	ts.f.Lock()
	defer ts.f.Unlock()
	for _, m := range []string{"ClusterInit", "ClusterJoin", "ClusterLeave"} {
		for _, c := range ts.f.Contexts[m] {
			if d, ok := c.Deadline(); !ok || time.Until(d) > 2*time.Minute {
				t.Errorf("%s's context has deadline %v (%v), want one within 2 minutes", m, d, ok)
			}
		}
	}
}

func TestNodes(t *testing.T) {
	ts := newTestServer(t)
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2", Labels: map[string]string{"zone": "b"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	ts.f.NodeList = []corev1.Node{node}
	ctx := testCtx(t)
	nodes, err := ts.c.Nodes(ctx)
	if err != nil || !reflect.DeepEqual(nodes, []corev1.Node{node}) {
		t.Errorf("Nodes = %v, %v; want node-2", nodes, err)
	}
	code, body := ts.do(t, http.MethodGet, api.PathNodes, "", "")
	if l := decode[corev1.NodeList](t, "GET nodes", code, body); l.Kind != "NodeList" || l.APIVersion != "v1" {
		t.Errorf("GET nodes = %+v, want a v1 NodeList", l)
	}
	if err := ts.c.DeleteNode(ctx, "node-2", false); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.DeleteNode(ctx, "node 3/x", true); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.f, []apitest.Call{call("DeleteNode", "node-2", false), call("DeleteNode", "node 3/x", true)}, "DeleteNode")
}

func TestDaemonSets(t *testing.T) {
	ts := newTestServer(t)
	ds := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "logger", Generation: 2},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, NumberReady: 2}}
	ts.f.DaemonSetList = []appsv1.DaemonSet{ds}
	ts.f.ApplyResultValue = &api.ApplyResult{Result: "configured", DaemonSet: &ds}
	ctx := testCtx(t)

	list, err := ts.c.DaemonSets(ctx)
	if err != nil || !reflect.DeepEqual(list, []appsv1.DaemonSet{ds}) {
		t.Errorf("DaemonSets = %v, %v; want logger", list, err)
	}
	code, body := ts.do(t, http.MethodGet, api.PathDaemonSets, "", "")
	if l := decode[appsv1.DaemonSetList](t, "GET daemonsets", code, body); l.Kind != "DaemonSetList" || l.APIVersion != "apps/v1" {
		t.Errorf("GET daemonsets = %+v, want an apps/v1 DaemonSetList", l)
	}

	// The manifest reaches the backend as it was sent, YAML included: decoding it is the backend's job.
	manifest := "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: logger\n"
	res, err := ts.c.ApplyDaemonSet(ctx, []byte(manifest))
	if err != nil || !reflect.DeepEqual(res, ts.f.ApplyResultValue) {
		t.Errorf("ApplyDaemonSet = %+v, %v; want configured", res, err)
	}
	// Up to 1 MiB.
	big := manifest + "#" + strings.Repeat("x", 1<<20-len(manifest)-2) + "\n"
	if _, err := ts.c.ApplyDaemonSet(ctx, []byte(big)); err != nil {
		t.Errorf("ApplyDaemonSet of 1 MiB: %v", err)
	}
	_, err = ts.c.ApplyDaemonSet(ctx, []byte(big+"x"))
	if !errors.Is(err, api.ErrBadRequest) || api.CleanMessage(err) != "manifest larger than 1048576 bytes" {
		t.Errorf("ApplyDaemonSet of 1 MiB + 1: %v, want ErrBadRequest: manifest larger than 1048576 bytes", err)
	}
	wantCalls(t, ts.f, []apitest.Call{call("ApplyDaemonSet", manifest), call("ApplyDaemonSet", big)}, "ApplyDaemonSet")

	if err := ts.c.DeleteDaemonSet(ctx, "kube-system", "logger"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.f, []apitest.Call{call("DeleteDaemonSet", "kube-system", "logger")}, "DeleteDaemonSet")
}

func TestTokens(t *testing.T) {
	ts := newTestServer(t)
	ts.f.TokenCreatedValue = &api.TokenCreated{Token: "abcdef.0123456789abcdef", Expires: joined.Add(24 * time.Hour),
		JoinURL: "https://10.0.0.1:7443", CACertHash: "sha256:00", JoinCommand: "agentctl cluster join ..."}
	ts.f.TokenList = []api.TokenInfo{{ID: "abcdef", Expires: joined.Add(24 * time.Hour), Description: "for node-3", Created: joined}}
	ctx := testCtx(t)

	req := api.TokenRequest{TTL: "24h", Once: true, ControlPlane: true, Description: "for node-3"}
	created, err := ts.c.CreateToken(ctx, req)
	if err != nil || !reflect.DeepEqual(created, ts.f.TokenCreatedValue) {
		t.Errorf("CreateToken = %+v, %v; want the backend's token", created, err)
	}
	list, err := ts.c.Tokens(ctx)
	if err != nil || !reflect.DeepEqual(list, ts.f.TokenList) {
		t.Errorf("Tokens = %+v, %v; want the backend's list", list, err)
	}
	if err := ts.c.DeleteToken(ctx, "abcdef"); err != nil {
		t.Fatal(err)
	}
	// An empty body asks for the defaults.
	code, body := ts.do(t, http.MethodPost, api.PathCluster+"/tokens", "application/json", "")
	decode[api.TokenCreated](t, "POST tokens without a body", code, body)
	wantCalls(t, ts.f, []apitest.Call{call("CreateToken", req), call("Tokens"), call("DeleteToken", "abcdef"),
		call("CreateToken", api.TokenRequest{})})
}

func TestCerts(t *testing.T) {
	ts := newTestServer(t)
	ts.f.CertList = []api.CertInfo{
		{Name: "ca", Subject: "CN=agentd-ca", Issuer: "CN=agentd-ca", NotBefore: joined, NotAfter: joined.Add(10 * 365 * 24 * time.Hour)},
		{Name: "node", Subject: "CN=node-1", Issuer: "CN=agentd-ca", NotBefore: joined, NotAfter: joined.Add(365 * 24 * time.Hour),
			RenewAt: joined.Add(300 * 24 * time.Hour)},
	}
	certs, err := ts.c.Certs(testCtx(t))
	if err != nil || !reflect.DeepEqual(certs, ts.f.CertList) {
		t.Errorf("Certs = %+v, %v; want the backend's", certs, err)
	}
}

// TestClusterRequestDecoding: a request body that is not the request is refused with 400 and a message that says
// what is wrong, and the backend is not called.
func TestClusterRequestDecoding(t *testing.T) {
	ts := newTestServer(t)
	for path, field := range map[string]string{"/init": "peerURL", "/join": "peerURL", "/tokens": "ttl"} {
		for _, tc := range []struct{ name, body, msg string }{
			{"not JSON", "ttl: 24h", "invalid character"},
			{"a JSON array", `["24h"]`, "cannot unmarshal array"},
			{"a wrong type", `{"` + field + `": 1}`, "cannot unmarshal number into Go struct field"},
			{"cut short", `{"ttl": "24h"`, "unexpected EOF"},
			// A field this agentd does not know (a typo, or a newer agentctl's option) is not silently dropped:
			// `cluster join --control-plane` to an agentd that ignored it would join as a worker.
			{"an unknown field", `{"controlPlain": true}`, `unknown field "controlPlain"`},
			{"two requests", `{} {}`, "request body: more than one JSON value"},
			{"over 64 KiB", `{"description": "` + strings.Repeat("x", 64<<10) + `"}`, "request body: http: request body too large"},
		} {
			code, body := ts.do(t, http.MethodPost, api.PathCluster+path, "application/json", tc.body)
			wantFailure(t, "POST "+path+" with "+tc.name, code, body, http.StatusBadRequest, "BadRequest", tc.msg)
		}
	}
	wantCalls(t, ts.f, nil)
}
