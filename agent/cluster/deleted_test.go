package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
)

// TestDeletedNodeComesBack: a member node deleted from the cluster while it was down says so when it starts again,
// and can leave with --force.
func TestDeletedNodeComesBack(t *testing.T) {
	ctx := context.Background()
	h1, h2 := &host{ready: map[types.UID]bool{}}, &host{ready: map[types.UID]bool{}}
	n1 := newNode(t, "node-1", h1, nil)
	initNode(t, n1, InitRequest{})
	join := func(name string, h *host) *Node {
		n := newNode(t, name, h, nil)
		if err := n.Join(ctx, joinReq(t, n1, true)); err != nil {
			t.Fatal(err)
		}
		return n
	}
	join("node-3", &host{ready: map[types.UID]bool{}})
	n2 := join("node-2", h2)
	root2 := n2.cfg.Root
	n2.Stop()
	eventually(t, 20*time.Second, "node-2 deleted", func() (bool, string) {
		err := n1.DeleteNode(ctx, "node-2", false)
		return err == nil, fmt.Sprint(err)
	})

	again := New(Config{Root: root2, NodeName: "node-2", NodeTTL: 2 * time.Second, Host: h2, Log: logr.Discard(),
		MemberOptions: n2.cfg.MemberOptions})
	t.Cleanup(again.Stop)
	if on, err := again.Start(ctx); !on || err != nil {
		t.Fatalf("start: %v %v", on, err)
	}
	eventually(t, 30*time.Second, "an error that says why", func() (bool, string) {
		st := again.Status()
		return strings.Contains(st.LastError, "was removed from cluster") && strings.Contains(st.LastError, "leave --force"), st.LastError
	})
	if err := again.Leave(ctx, false); err == nil || !strings.Contains(err.Error(), "was removed from cluster") {
		t.Fatalf("leave of a deleted member without --force: %v", err)
	}
	if err := again.Leave(ctx, true); err != nil {
		t.Fatal(err)
	}
	if again.InCluster() {
		t.Error("still in the cluster after leave --force")
	}
}
