package store

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// TestNodeCredentialsReachOnlyTheNodesOwnRecords: etcd's access control lets a node's certificate read the
// cluster's desired state and write its own records, nothing else: not a DaemonSet, not another node's record,
// not the settings, not a token, not a member. One stolen node credential does not own the other nodes.
func TestNodeCredentialsReachOnlyTheNodesOwnRecords(t *testing.T) {
	t.Parallel()
	log := testLog(t)
	ctx := context.Background()
	n := initNode(t, log)
	admin := connect(t, log, n.m.ClientURL())
	if err := admin.AddNodeUser(ctx, "node-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.36")); err != nil {
		t.Fatal(err)
	}
	node2 := connectAs(t, issueTLS(pki.NodeCN("node-2"), pki.UsageClient), log, n.m.ClientURL())

	// What a node needs.
	if list, _, err := node2.ListDaemonSets(ctx); err != nil || len(list) != 1 {
		t.Fatalf("node-2 lists daemonsets: %v, %v", list, err)
	}
	stop, err := node2.RegisterNode(ctx, Node{Name: "node-2"}, testTTL)
	if err != nil {
		t.Fatalf("node-2 registers itself: %v", err)
	}
	defer stop()
	if err := node2.ReportDSPod(ctx, "default", "logs", DSPodStatus{Node: "node-2", TemplateHash: "h", Running: true}); err != nil {
		t.Fatalf("node-2 reports its pod: %v", err)
	}
	release, ok, err := node2.AcquireUpdateSlot(ctx, "default", "logs", 1, "node-2")
	if err != nil || !ok {
		t.Fatalf("node-2 takes an update slot: %v, %v", ok, err)
	}
	release()
	if _, err := node2.Nodes(ctx); err != nil {
		t.Fatalf("node-2 lists nodes: %v", err)
	}
	if _, err := node2.Members(ctx); err != nil {
		t.Fatalf("node-2 lists members: %v", err)
	}

	// What it must not do.
	denied := map[string]error{}
	_, denied["put a daemonset"] = node2.PutDaemonSet(ctx, daemonSet("evil", "busybox:1.36"))
	denied["delete a daemonset"] = node2.DeleteDaemonSet(ctx, "default", "logs")
	denied["write the settings"] = node2.PutClusterConfig(ctx, ClusterConfig{PodSecurity: "privileged"})
	denied["remove node-1's record"] = node2.RemoveNode(ctx, "node-1")
	_, denied["register as node-1"] = node2.RegisterNode(ctx, Node{Name: "node-1"}, testTTL)
	_, denied["read tokens"] = node2.Tokens(ctx)
	denied["create a token"] = node2.CreateToken(ctx, pki.TokenRecord{ID: "abcdef", SecretHash: pki.HashSecret("x"), Created: time.Now()}, true)
	denied["add a user"] = node2.AddNodeUser(ctx, "node-3")
	_, _, denied["add a member"] = node2.AddLearner(ctx, "node-3", "https://127.0.0.1:1")
	for what, err := range denied {
		if !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("node-2 could %s: %v, want ErrPermissionDenied", what, err)
		}
	}
	if ds, err := admin.GetDaemonSet(ctx, "default", "logs"); err != nil || ds == nil {
		t.Fatalf("the daemonset after node-2's attempts: %v, %v", ds, err)
	}

	// A certificate of the cluster's CA whose name has no user gets nothing; one of another CA, or none, does not
	// even connect.
	if c, err := Connect(ctx, []string{n.m.ClientURL()}, issueTLS(pki.NodeCN("ghost"), pki.UsageClient), log); !errors.Is(err, ErrPermissionDenied) {
		if c != nil {
			c.Close()
		}
		t.Errorf("a certificate without a user connects: %v, want ErrPermissionDenied", err)
	}
	otherCA, err := pki.NewCA("another CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	cert, err := otherCA.Issue(pki.Request{CommonName: pki.AdminCN, Usage: pki.UsageClient, PublicKey: key.Public()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign := pki.ClientTLS(testCA().Cert, func() (*tls.Certificate, error) { return pki.TLSCertificate(cert, key), nil })
	none := pki.ClientTLS(testCA().Cert, func() (*tls.Certificate, error) { return &tls.Certificate{}, nil })
	for what, cfg := range map[string]*tls.Config{"another CA's root certificate": foreign, "no certificate": none} {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := Connect(cctx, []string{n.m.ClientURL()}, cfg, log)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("a client with %s connected", what)
		}
	}
}

// TestBootstrapTokens: a token is checked by its secret's hash and expiry; a one-use token is consumed by its
// first join, and the second is told so.
func TestBootstrapTokens(t *testing.T) {
	t.Parallel()
	log := testLog(t)
	ctx := context.Background()
	n := initNode(t, log)
	admin := connect(t, log, n.m.ClientURL())
	now := time.Now()
	newTok := func(ttl time.Duration, once, controlPlane bool) pki.Token {
		tok, err := pki.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.CreateToken(ctx, pki.NewTokenRecord(tok, ttl, once, "test", now), controlPlane); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	multi, once := newTok(time.Hour, false, false), newTok(time.Hour, true, true)
	for i := range 2 {
		if err := admin.UseToken(ctx, multi, "node-2", now, false); err != nil {
			t.Fatalf("use %d of a multi-use token: %v", i, err)
		}
	}
	// A worker token does not make a member, and is not spent trying.
	if err := admin.UseToken(ctx, multi, "node-2", now, true); !errors.Is(err, ErrTokenScope) {
		t.Fatalf("a member join with a worker token: %v, want ErrTokenScope", err)
	}
	if err := admin.UseToken(ctx, once, "node-2", now, true); err != nil {
		t.Fatalf("first use of a one-use token: %v", err)
	}
	if err := admin.UseToken(ctx, once, "node-3", now, true); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("second use of a one-use token: %v, want ErrTokenUsed", err)
	}
	wrong := multi
	wrong.Secret = "0123456789abcdef"
	if err := admin.UseToken(ctx, wrong, "node-2", now, false); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("wrong secret: %v, want ErrTokenInvalid", err)
	}
	unknown, _ := pki.NewToken()
	if err := admin.UseToken(ctx, unknown, "node-2", now, false); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("unknown token: %v, want ErrTokenInvalid", err)
	}
	if err := admin.UseToken(ctx, multi, "node-2", now.Add(2*time.Hour), false); !errors.Is(err, pki.ErrTokenExpired) {
		t.Fatalf("expired token: %v, want ErrTokenExpired", err)
	}
	list, err := admin.Tokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("tokens: %+v, %v", list, err)
	}
	for _, st := range list {
		if st.SecretHash == multi.Secret || st.SecretHash == once.Secret {
			t.Fatal("a token's secret is stored in the clear")
		}
		if st.ID == once.ID && st.UsedBy != "node-2" {
			t.Errorf("one-use token's record: %+v, want used by node-2", st)
		}
	}
	if err := admin.DeleteToken(ctx, multi.ID); err != nil {
		t.Fatal(err)
	}
	if err := admin.UseToken(ctx, multi, "node-2", now, false); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("deleted token: %v, want ErrTokenInvalid", err)
	}
}
