package joinapi

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

var sentinels = []error{ErrUnauthorized, ErrConflict, ErrNotFound, ErrNoQuorum, ErrUnavailable, ErrBadRequest}

// TestErrorClassesCrossTheWire: the client classifies the Authority's errors as the Authority did, for a joiner and
// for a node, and the user reads the Authority's words once.
func TestErrorClassesCrossTheWire(t *testing.T) {
	ca, ts := clusterServer(t)
	joiner := pinnedClient(t, ts.url, pinOf(t, ca.Cert))
	leaf, key := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, time.Now())
	node := mtlsClient(t, ts.url, ca.Cert, pki.TLSCertificate(leaf, key))

	for _, want := range sentinels {
		t.Run(want.Error(), func(t *testing.T) {
			ts.auth.setErr(fmt.Errorf("%w: nope", want))
			_, joinErr := joiner.Join(t.Context(), JoinRequest{Token: "abcdef.0123456789abcdef", NodeName: "node-2"})
			for call, err := range map[string]error{
				"Join":    joinErr,
				"Promote": node.Promote(t.Context()),
			} {
				if !errors.Is(err, want) {
					t.Errorf("%s = %v; want %v", call, err, want)
				}
				for _, other := range sentinels {
					if other != want && errors.Is(err, other) {
						t.Errorf("%s = %v; it is also %v", call, err, other)
					}
				}
				if err == nil {
					continue
				}
				if !strings.Contains(err.Error(), "nope") {
					t.Errorf("%s = %q; want the Authority's message %q", call, err, "nope")
				}
				if n := strings.Count(err.Error(), want.Error()); n > 1 {
					t.Errorf("%s = %q; the class %q is said %d times", call, err, want, n)
				}
			}
		})
	}

	t.Run("unclassified", func(t *testing.T) {
		ts.auth.setErr(errors.New("the disk is full"))
		err := node.Promote(t.Context())
		if err == nil || !strings.Contains(err.Error(), "the disk is full") {
			t.Fatalf("Promote = %v; want the Authority's message", err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("Promote = %v; an unclassified error became %v", err, s)
			}
		}
	})
}

// TestBadRequestsNeverReachTheAuthority: a body the API does not define, or one over maxBody, is refused before
// the Authority sees it.
func TestBadRequestsNeverReachTheAuthority(t *testing.T) {
	ca, ts := clusterServer(t)
	joiner := pinnedClient(t, ts.url, pinOf(t, ca.Cert))
	leaf, key := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, time.Now())
	node := mtlsClient(t, ts.url, ca.Cert, pki.TLSCertificate(leaf, key))
	big := strings.Repeat("a", maxBody+1)

	tests := []struct {
		name string
		c    *Client
		path string
		body any
	}{
		{"join with an unknown field", joiner, PathJoin, map[string]any{"token": "abcdef.0123456789abcdef", "admin": true}},
		{"join over the limit", joiner, PathJoin, JoinRequest{Token: "abcdef.0123456789abcdef", NodeName: "node-2", NodeCSR: big}},
		{"join that is not an object", joiner, PathJoin, "join me"},
		{"renew with an unknown field", node, PathRenew, map[string]any{"nodeCSR": "csr", "commonName": "root"}},
		{"renew over the limit", node, PathRenew, RenewRequest{NodeCSR: big}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.hits.n.Load()
			err := tt.c.call(t.Context(), tt.path, tt.body, nil)
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("call = %v; want ErrBadRequest", err)
			}
			if calls := ts.auth.recorded(); len(calls) != 0 {
				t.Errorf("the Authority saw %+v; want no call", calls)
			}
			if n := ts.hits.n.Load() - before; n != 1 {
				t.Errorf("%d HTTP requests reached the join service; want the one refused", n)
			}
		})
	}

	// The limit is what refused the large bodies: one just under it reaches the Authority.
	t.Run("join just under the limit", func(t *testing.T) {
		csr := strings.Repeat("a", maxBody-1024)
		if _, err := joiner.Join(t.Context(), JoinRequest{Token: "abcdef.0123456789abcdef", NodeName: "node-2", NodeCSR: csr}); err != nil {
			t.Fatalf("Join with a body under %d bytes: %v", maxBody, err)
		}
		if calls := ts.auth.recorded(); len(calls) != 1 || calls[0].join.NodeCSR != csr {
			t.Errorf("the Authority saw %d calls; want the join with its whole CSR", len(calls))
		}
	})
}
