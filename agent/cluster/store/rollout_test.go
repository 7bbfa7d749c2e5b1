package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestUpdateSlots(t *testing.T) {
	t.Parallel()
	log := testLog(t)
	n := initNode(t, log)
	ctx := context.Background()
	// Two agents, each with its own client, as on two hosts.
	ca, cb := connect(t, log, n.m.ClientURL()), connect(t, log, n.m.ClientURL())
	aCtx, crashA := context.WithCancel(ctx)
	stopA, err := ca.RegisterNode(aCtx, Node{Name: "node-a"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	stopB, err := cb.RegisterNode(ctx, Node{Name: "node-b"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()

	acquire := func(c *Client, node string, maxUnavailable int) (func(), bool) {
		t.Helper()
		release, ok, err := c.AcquireUpdateSlot(ctx, "default", "logs", maxUnavailable, node)
		if err != nil {
			t.Fatal(err)
		}
		return release, ok
	}

	// maxUnavailable 1: one node at a time.
	releaseA, ok := acquire(ca, "node-a", 1)
	if !ok {
		t.Fatal("node-a: no slot free in an idle rollout")
	}
	if _, ok := acquire(cb, "node-b", 1); ok {
		t.Fatal("node-b got a slot while node-a holds the only one")
	}
	if _, ok := acquire(ca, "node-a", 1); !ok {
		t.Fatal("node-a asking again for the slot it holds was refused")
	}
	releaseA()
	releaseA() // idempotent
	releaseB, ok := acquire(cb, "node-b", 1)
	if !ok {
		t.Fatal("node-b: no slot after node-a released its own")
	}
	// maxUnavailable 2: both at once.
	releaseA2, ok := acquire(ca, "node-a", 2)
	if !ok {
		t.Fatal("node-a: no second slot with maxUnavailable 2")
	}
	releaseA2()
	releaseB()

	// A node that dies holding a slot frees it when its lease expires, a TTL later; the deadline of four TTLs leaves
	// room for a busy machine.
	if _, ok := acquire(ca, "node-a", 1); !ok {
		t.Fatal("node-a: no slot")
	}
	crashA()
	took := eventually(t, 4*testTTL, func() error {
		if _, ok := acquire(cb, "node-b", 1); !ok {
			return errors.New("node-b still waits for the slot of dead node-a")
		}
		return nil
	})
	t.Logf("slot freed %s after node-a's crash (TTL %s)", took.Round(10*time.Millisecond), testTTL)

	// Many nodes asking at the same moment: exactly maxUnavailable of them win.
	var names []string
	for i := range 6 {
		name := fmt.Sprintf("racer-%d", i)
		stop, err := cb.RegisterNode(ctx, Node{Name: name}, testTTL)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		names = append(names, name)
	}
	for _, maxUnavailable := range []int{1, 2} {
		results := make(chan func(), len(names))
		for _, name := range names {
			go func() {
				release, ok, err := cb.AcquireUpdateSlot(ctx, "default", "race", maxUnavailable, name)
				if err != nil || !ok {
					release = nil
				}
				results <- release
			}()
		}
		var won []func()
		for range names {
			if r := <-results; r != nil {
				won = append(won, r)
			}
		}
		if len(won) != maxUnavailable {
			t.Fatalf("%d racing nodes, maxUnavailable %d: %d got a slot", len(names), maxUnavailable, len(won))
		}
		for _, r := range won {
			r()
		}
	}

	if _, _, err := cb.AcquireUpdateSlot(ctx, "default", "logs", 1, "node-z"); err == nil {
		t.Fatal("a node not registered through this client got a slot")
	}
}

func TestPodReportsLiveWithTheirNode(t *testing.T) {
	t.Parallel()
	log := testLog(t)
	n := initNode(t, log)
	ctx := context.Background()
	ca, cb := connect(t, log, n.m.ClientURL()), connect(t, log, n.m.ClientURL())
	aCtx, crashA := context.WithCancel(ctx)
	if _, err := ca.RegisterNode(aCtx, Node{Name: "node-a"}, testTTL); err != nil {
		t.Fatal(err)
	}
	stopB, err := cb.RegisterNode(ctx, Node{Name: "node-b"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()

	if err := ca.ReportDSPod(ctx, "default", "logs", DSPodStatus{Node: "node-a", TemplateHash: "v1", Running: true, Ready: true}); err != nil {
		t.Fatal(err)
	}
	if err := cb.ReportDSPod(ctx, "default", "logs", DSPodStatus{Node: "node-b", TemplateHash: "v2", Running: true}); err != nil {
		t.Fatal(err)
	}
	if err := cb.ReportDSPod(ctx, "default", "logs", DSPodStatus{Node: "node-a", TemplateHash: "v2"}); err == nil {
		t.Fatal("node-b's client reported for node-a")
	}
	pods, err := cb.DSPods(ctx, "default", "logs")
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 || pods[0].Node != "node-a" || pods[0].TemplateHash != "v1" || !pods[0].Ready ||
		pods[1].Node != "node-b" || pods[1].Ready || pods[1].UpdatedAt.IsZero() {
		t.Fatalf("reports: %+v", pods)
	}

	crashA()
	eventually(t, 4*testTTL, func() error {
		pods, err := cb.DSPods(ctx, "default", "logs")
		if err != nil {
			return err
		}
		if len(pods) != 1 || pods[0].Node != "node-b" {
			return fmt.Errorf("reports %+v, want only node-b's once node-a's lease expired", pods)
		}
		return nil
	})

	if err := cb.RemoveDSPod(ctx, "default", "logs", "node-b"); err != nil {
		t.Fatal(err)
	}
	if pods, _ := cb.DSPods(ctx, "default", "logs"); len(pods) != 0 {
		t.Fatalf("after RemoveDSPod: %+v", pods)
	}
}
