package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Per-node pod reports and rolling-update slot claims live under the node's own prefix and hang on its lease: a
// node that dies takes its reports and its slot with it after one TTL.

// DSPodStatus is what one node reports about its pod of a DaemonSet; the DaemonSet's status columns (DESIRED
// CURRENT READY UP-TO-DATE AVAILABLE) are computed from all nodes' reports.
type DSPodStatus struct {
	Node string `json:"node"`
	// TemplateHash is the hash of the pod template the node's pod runs; equal to the DaemonSet's means up to date.
	TemplateHash string    `json:"templateHash"`
	Running      bool      `json:"running"`
	Ready        bool      `json:"ready"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// ReportDSPod writes st for st.Node, which must be registered through this client: the report lives as long as
// the node's lease and is written again if the node has to register again.
func (c *Client) ReportDSPod(ctx context.Context, namespace, ds string, st DSPodStatus) error {
	id := namespace + "/" + ds
	r, lease, err := c.leaseOf(st.Node)
	if err != nil {
		return fmt.Errorf("report pod of daemonset %s: %w", id, err)
	}
	if err := validateNamespace(namespace); err != nil {
		return fmt.Errorf("report pod of daemonset %s: %w", id, err)
	}
	if err := validateName("daemonset", ds); err != nil {
		return fmt.Errorf("report pod of daemonset %s: %w", id, err)
	}
	if st.UpdatedAt.IsZero() {
		st.UpdatedAt = time.Now().UTC()
	}
	b, _ := json.Marshal(st)
	key := dsPodKey(st.Node, namespace, ds)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.cli.Put(ctx, key, string(b), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("report pod of daemonset %s on node %q: %w", id, st.Node, c.classify(err))
	}
	c.mu.Lock()
	r.reports[key] = string(b)
	c.mu.Unlock()
	return nil
}

// RemoveDSPod withdraws st.Node's report for a DaemonSet (the node no longer runs its pod).
func (c *Client) RemoveDSPod(ctx context.Context, namespace, ds, node string) error {
	key := dsPodKey(node, namespace, ds)
	c.mu.Lock()
	if r := c.regs[node]; r != nil {
		delete(r.reports, key)
	}
	c.mu.Unlock()
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("remove pod report of daemonset %s/%s on node %q: %w", namespace, ds, node, c.classify(err))
	}
	return nil
}

// DSPods returns the live nodes' reports for a DaemonSet, sorted by node.
func (c *Client) DSPods(ctx context.Context, namespace, ds string) ([]DSPodStatus, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, nodesRoot, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list pods of daemonset %s/%s: %w", namespace, ds, c.classify(err))
	}
	reports := keysOf(resp.Kvs, nodeDSPods+namespace+"/"+ds)
	out := make([]DSPodStatus, 0, len(reports))
	for node, kv := range reports {
		var st DSPodStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			c.log.Error(err, "Skipping a pod report that does not decode", "key", string(kv.Key))
			continue
		}
		st.Node = node // a node writes only its own prefix: the key, not the value, says whose report it is
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// slotHolder is the value of an update slot key.
type slotHolder struct {
	Node       string    `json:"node"`
	AcquiredAt time.Time `json:"acquiredAt"`
}

// AcquireUpdateSlot lets node replace its pod of a DaemonSet during a rolling update, at most maxUnavailable nodes
// at a time (less than 1 counts as 1). Each node claims a slot under its own prefix, attached to its lease (the node
// must be registered through this client), so a node that dies frees its slot after one TTL and no node writes
// another's keys. The claims of one DaemonSet, ordered by creation revision, form a queue whose first
// maxUnavailable hold the slots: a claim only ever moves forward (claims ahead of it go away, new ones come
// behind), so a claim that was among the first maxUnavailable stays there, and at most maxUnavailable nodes hold a
// slot at any time. A node whose claim is not among them withdraws it, and ok is false with no error: ask again
// later. A node that already holds a slot gets it again.
//
// release frees the slot; call it when the new pod is Ready. It is idempotent and best effort: when etcd is
// unreachable it logs, and the slot stays until the node's lease ends or the node acquires and releases it again.
// Lowering maxUnavailable does not take slots from nodes already holding one.
func (c *Client) AcquireUpdateSlot(ctx context.Context, namespace, ds string, maxUnavailable int, node string) (release func(), ok bool, err error) {
	id := namespace + "/" + ds
	_, lease, err := c.leaseOf(node)
	if err != nil {
		return nil, false, fmt.Errorf("acquire update slot of daemonset %s: %w", id, err)
	}
	if err := validateNamespace(namespace); err != nil {
		return nil, false, fmt.Errorf("acquire update slot of daemonset %s: %w", id, err)
	}
	if err := validateName("daemonset", ds); err != nil {
		return nil, false, fmt.Errorf("acquire update slot of daemonset %s: %w", id, err)
	}
	key := slotClaimKey(node, namespace, ds)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()

	// A put keeps the key's creation revision, so a node that holds the slot (under this lease or, after it
	// registered again, its previous one) keeps its place.
	b, _ := json.Marshal(slotHolder{Node: node, AcquiredAt: time.Now().UTC()})
	if _, err := c.cli.Put(ctx, key, string(b), clientv3.WithLease(lease)); err != nil {
		return nil, false, fmt.Errorf("acquire update slot of daemonset %s: %w", id, c.classify(err))
	}
	claims, err := c.cli.Get(ctx, nodesRoot, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, false, fmt.Errorf("acquire update slot of daemonset %s: %w", id, c.classify(err))
	}
	queue := keysOf(claims.Kvs, nodeSlotClaim+namespace+"/"+ds)
	mine := queue[node]
	if mine == nil { // released or removed meanwhile: not holding
		return nil, false, nil
	}
	ahead := 0
	for _, kv := range queue {
		if kv.CreateRevision < mine.CreateRevision {
			ahead++
		}
	}
	if ahead < max(maxUnavailable, 1) {
		c.log.V(1).Info("Acquired a rolling-update slot", "daemonset", id, "node", node, "ahead", ahead)
		return c.releaser(key, mine.CreateRevision, node), true, nil
	}
	_, _ = c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", mine.CreateRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	return nil, false, nil
}

// releaser deletes the slot claim only while it is still the one this node created.
func (c *Client) releaser(key string, createRev int64, node string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := c.opCtx(context.Background())
			defer cancel()
			_, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", createRev)).
				Then(clientv3.OpDelete(key)).Commit()
			if err != nil {
				c.log.Error(c.classify(err), "Could not release a rolling-update slot; it stays taken until the node's lease ends",
					"key", key, "node", node)
			}
		})
	}
}
