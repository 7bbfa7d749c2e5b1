package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TestHealthAndCertificates: outside a cluster, no health and no certificates; after `cluster init`, etcd answers
// (healthy, with a latency) and the node holds the CA, node, peer, join and admin certificates, none expired, the
// CA outliving the node's.
func TestHealthAndCertificates(t *testing.T) {
	n := newNode(t, "n1", &host{ready: map[types.UID]bool{}}, nil)
	ctx := context.Background()
	if h := n.EtcdHealth(ctx); h != (EtcdHealth{}) {
		t.Errorf("EtcdHealth outside a cluster = %+v, want nothing", h)
	}
	if c := n.Certificates(); len(c) != 0 {
		t.Errorf("Certificates outside a cluster = %v, want none", c)
	}
	initNode(t, n, InitRequest{})

	eventually(t, 30*time.Second, "a healthy etcd", func() (bool, string) {
		h := n.EtcdHealth(ctx)
		return h.InCluster && h.Healthy && h.Latency > 0, ""
	})
	got := map[string]time.Time{}
	for _, c := range n.Certificates() {
		got[c.Name] = c.NotAfter
	}
	var names []string
	for name, at := range got {
		names = append(names, name)
		if !at.After(time.Now()) {
			t.Errorf("certificate %s expired at %v", name, at)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"admin", "ca", "join", "node", "peer"}) {
		t.Fatalf("certificates %v, want admin, ca, join, node and peer", names)
	}
	if !got["ca"].After(got["node"]) {
		t.Errorf("the CA expires at %v, before the node's certificate (%v)", got["ca"], got["node"])
	}
}
