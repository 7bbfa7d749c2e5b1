package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// tokenGrace is how long an expired or used token's record stays, so that presenting it again is refused as
// "expired" or "already used" rather than "invalid"; then its lease deletes it.
const tokenGrace = time.Hour

// TokenState is a bootstrap token's record as the cluster keeps it: never the secret, only its hash.
type TokenState struct {
	pki.TokenRecord
	// ControlPlane lets the token join a node as an etcd member. A member holds the cluster's data and a peer
	// certificate, with which it can write anything: members are the control plane, and only a token made for
	// them (`token create --control-plane`) makes one.
	ControlPlane bool `json:"controlPlane,omitempty"`
	// UsedBy and UsedAt record the join that consumed a one-use token.
	UsedBy string    `json:"usedBy,omitempty"`
	UsedAt time.Time `json:"usedAt,omitzero"`
}

// ErrTokenUsed: a one-use bootstrap token was presented again.
var ErrTokenUsed = errors.New("bootstrap token already used")

// ErrTokenScope: a worker token was presented for a member (control-plane) join.
var ErrTokenScope = errors.New("bootstrap token does not join control-plane nodes")

// CreateToken stores a new bootstrap token's record. A token that expires carries a lease that deletes the record
// tokenGrace after its expiry. c must be the admin's client.
func (c *Client) CreateToken(ctx context.Context, rec pki.TokenRecord, controlPlane bool) error {
	b, err := json.Marshal(TokenState{TokenRecord: rec, ControlPlane: controlPlane})
	if err != nil {
		return err
	}
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	var opts []clientv3.OpOption
	if !rec.Expires.IsZero() {
		ttl := int64(math.Ceil(time.Until(rec.Expires.Add(tokenGrace)).Seconds()))
		lease, err := c.cli.Grant(ctx, max(ttl, 1))
		if err != nil {
			return fmt.Errorf("create bootstrap token: %w", c.classify(err))
		}
		opts = append(opts, clientv3.WithLease(lease.ID))
	}
	key := tokensPrefix + rec.ID
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b), opts...)).Commit()
	if err != nil {
		return fmt.Errorf("create bootstrap token: %w", c.classify(err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("create bootstrap token: a token with id %s exists", rec.ID)
	}
	return nil
}

// Tokens lists the bootstrap tokens the cluster still holds, by id. c must be the admin's client.
func (c *Client) Tokens(ctx context.Context) ([]TokenState, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, tokensPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list bootstrap tokens: %w", c.classify(err))
	}
	var out []TokenState
	for _, kv := range resp.Kvs {
		var st TokenState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			c.log.Error(err, "Skipping a bootstrap token record that does not decode", "key", string(kv.Key))
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteToken removes a bootstrap token, or returns ErrNotFound. c must be the admin's client.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Delete(ctx, tokensPrefix+id)
	if err != nil {
		return fmt.Errorf("delete bootstrap token %s: %w", id, c.classify(err))
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("bootstrap token %s: %w", id, ErrNotFound)
	}
	return nil
}

// UseToken checks a presented token for a join by node (as an etcd member when member) and, for a one-use token,
// consumes it in the same transaction, so two joins racing with one token cannot both pass. An unknown id and a
// wrong secret give the same error (pki.ErrTokenInvalid), so that the answer does not tell which ids exist. c must
// be the admin's client.
func (c *Client) UseToken(ctx context.Context, t pki.Token, node string, now time.Time, member bool) error {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	key := tokensPrefix + t.ID
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("check bootstrap token: %w", c.classify(err))
	}
	if len(resp.Kvs) == 0 {
		return pki.ErrTokenInvalid
	}
	kv := resp.Kvs[0]
	var st TokenState
	if err := json.Unmarshal(kv.Value, &st); err != nil {
		return fmt.Errorf("bootstrap token %s: its record does not decode: %w", t.ID, err)
	}
	if err := st.Check(t, now); err != nil {
		return err
	}
	if member && !st.ControlPlane {
		return fmt.Errorf("%w: token %s joins worker nodes (etcd clients) only; a control-plane node (an etcd member, which can write anything in the cluster) needs a token from `agentctl cluster token create --control-plane`", ErrTokenScope, t.ID)
	}
	if !st.Once {
		return nil
	}
	if st.UsedBy != "" {
		return fmt.Errorf("%w: token %s was used by node %q at %s", ErrTokenUsed, t.ID, st.UsedBy, st.UsedAt.Format(time.RFC3339))
	}
	st.UsedBy, st.UsedAt = node, now.UTC()
	b, _ := json.Marshal(st)
	txn, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, string(b), clientv3.WithIgnoreLease())).Commit()
	if err != nil {
		return fmt.Errorf("consume bootstrap token: %w", c.classify(err))
	}
	if !txn.Succeeded {
		return fmt.Errorf("%w: token %s was used by another join at the same time", ErrTokenUsed, t.ID)
	}
	return nil
}
