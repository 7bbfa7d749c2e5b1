package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLeaseLost(t *testing.T) {
	ttl := 3 * time.Second
	for _, tc := range []struct {
		name        string
		p           probe
		unconfirmed time.Duration
		lost        bool
	}{
		{"confirmed", probeConfirmed, 0, false},
		{"confirmed after a long gap", probeConfirmed, 10 * ttl, false},
		{"one failed check", probeFailed, ttl / 3, false},
		{"failed checks for exactly the TTL", probeFailed, ttl, false},
		{"failed checks for longer than the TTL", probeFailed, ttl + time.Millisecond, true},
		{"liveness key gone", probeGone, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, lost := leaseLost(tc.p, tc.unconfirmed, ttl)
			if lost != tc.lost || lost != (reason != "") {
				t.Fatalf("leaseLost(%v, %v, %v) = (%q, %v), want lost=%v with a reason when lost", tc.p, tc.unconfirmed, ttl, reason, lost, tc.lost)
			}
		})
	}
}

// TestNodeSeesQuorumLossWithinItsTTL: two of three members stop while the third member's node is registered through
// it. The stopped leader keeps its listeners open (its raft loop stopped, as a member stuck on its disk would be;
// the member refuses requests once etcd is stopping, whose database closes under them): the node must find out
// from its own checks, within a few TTLs, and say so.
func TestNodeSeesQuorumLossWithinItsTTL(t *testing.T) {
	log, logged := testLogSearch(t)
	n1 := initNode(t, log)
	n2 := joinNode(t, "node-2", n1.m.ClientURL(), log)
	n3 := joinNode(t, "node-3", n1.m.ClientURL(), log)
	c := connect(t, log, n3.m.ClientURL(), n1.m.ClientURL(), n2.m.ClientURL()) // as a session connects
	// Leadership on node-1, so that the member left running is a follower whose leader never answers again.
	eventually(t, 20*time.Second, func() error {
		if n1.m.IsLeader() {
			return nil
		}
		for _, m := range []*Member{n2.m, n3.m} {
			if m.IsLeader() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := connect(t, log, m.ClientURL()).cli.MoveLeader(ctx, n1.m.ID()) // the leader must be asked
				return err
			}
		}
		return errors.New("no leader")
	})
	stop, err := c.RegisterNode(context.Background(), Node{Name: "node-3"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	lost := time.Now()
	n1.m.kill()
	n2.m.kill()
	// About twice the TTL; the bound is generous for a busy machine. Before the node checked for itself, etcd's
	// renewals kept it from ever noticing here.
	eventually(t, 5*testTTL, func() error {
		if !logged("Lost the node's lease in the cluster's etcd") {
			return errors.New("node-3 did not say that it lost its lease after the cluster lost its quorum")
		}
		return nil
	})
	t.Logf("quorum lost → the node says it lost its lease: %v (TTL %v)", time.Since(lost).Round(10*time.Millisecond), testTTL)
}
