package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultNodeTTL is the production node lease TTL: a node that stops renewing its lease shows NotReady after at
// most this long, and its update slot and pod reports are freed.
const DefaultNodeTTL = 10 * time.Second

// Node is a node's record in the cluster.
type Node struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	Version   string            `json:"version"`
	Addresses []string          `json:"addresses,omitempty"`
	// Registered is when the node first registered; a restart of its agent keeps it.
	Registered time.Time `json:"registered"`
	// Heartbeat is the last time the node wrote its record (every lease TTL while it is up).
	Heartbeat time.Time `json:"heartbeat"`
	// Ready is not stored: Nodes computes it from whether the node's lease is alive.
	Ready bool `json:"-"`
}

// registration is one node's lease and what hangs on it, kept alive by a goroutine of the Client.
type registration struct {
	node   Node // Name, Labels, Version, Addresses; owned by the keepalive goroutine after start
	ttl    time.Duration
	cancel context.CancelFunc
	done   chan struct{} // closed when the keepalive goroutine returned

	lease   clientv3.LeaseID  // guarded by Client.mu; 0 once RemoveNode revoked it
	reports map[string]string // guarded by Client.mu; this node's pod reports (key → value), put again on re-registration
}

// RegisterNode writes n's record and keeps n alive with a lease of the given TTL (DefaultNodeTTL in production)
// until stop is called or ctx ends. After etcd was unreachable for longer than the TTL, it registers again when
// etcd answers, with the same Registered time and the pod reports made since, and logs both events.
//
// stop deregisters gracefully: it revokes the lease, so the node shows NotReady at once and frees its update slots
// and pod reports. When ctx ends instead (or the Client is closed), the lease is left to expire, as after a crash.
// The first registration's error is returned; one node name can be registered once per Client at a time.
func (c *Client) RegisterNode(ctx context.Context, n Node, ttl time.Duration) (stop func(), err error) {
	if err := validateName("node", n.Name); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultNodeTTL
	}
	lctx, cancel := context.WithCancel(ctx)
	r := &registration{node: n, ttl: ttl, cancel: cancel, done: make(chan struct{}), reports: map[string]string{}}
	c.mu.Lock()
	if _, dup := c.regs[n.Name]; dup {
		c.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("register node %q: already registered through this client", n.Name)
	}
	c.regs[n.Name] = r
	c.mu.Unlock()

	ka, err := c.register(lctx, r)
	if err != nil {
		cancel()
		c.unregister(r)
		return nil, err
	}
	go c.keepAlive(lctx, r, ka)

	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-r.done
			c.mu.Lock()
			lease := r.lease
			c.mu.Unlock()
			if lease == 0 { // RemoveNode revoked it already
				return
			}
			rctx, rcancel := c.opCtx(context.Background())
			defer rcancel()
			if _, err := c.cli.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				c.log.Error(c.classify(err), "Could not revoke the node's lease; it shows NotReady when the lease expires",
					"node", n.Name, "ttl", ttl)
			}
		})
	}, nil
}

// leaseRenewal is etcd's client renewing one lease: its answers, and how to make it stop.
type leaseRenewal struct {
	answers <-chan *clientv3.LeaseKeepAliveResponse
	stop    context.CancelFunc
}

// register grants a lease and writes the node's record, its liveness key and its pod reports in one transaction.
func (c *Client) register(ctx context.Context, r *registration) (*leaseRenewal, error) {
	name := r.node.Name
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	grant, err := c.cli.Grant(octx, int64(math.Ceil(r.ttl.Seconds())))
	if err != nil {
		return nil, fmt.Errorf("register node %q: grant lease: %w", name, c.classify(err))
	}
	now := time.Now().UTC()
	rec := r.node
	rec.Registered, rec.Heartbeat = now, now
	got, err := c.cli.Get(octx, nodeRecordKey(name))
	if err != nil {
		c.revoke(grant.ID)
		return nil, fmt.Errorf("register node %q: %w", name, c.classify(err))
	}
	if len(got.Kvs) == 1 {
		var old Node
		if json.Unmarshal(got.Kvs[0].Value, &old) == nil && !old.Registered.IsZero() {
			rec.Registered = old.Registered
		}
	}
	r.node.Registered = rec.Registered
	b, _ := json.Marshal(rec)
	ops := []clientv3.Op{
		clientv3.OpPut(nodeRecordKey(name), string(b)),
		clientv3.OpPut(nodeAliveKey(name), now.Format(time.RFC3339Nano), clientv3.WithLease(grant.ID)),
	}
	c.mu.Lock()
	for k, v := range r.reports {
		ops = append(ops, clientv3.OpPut(k, v, clientv3.WithLease(grant.ID)))
	}
	c.mu.Unlock()
	if _, err := c.cli.Txn(octx).Then(ops...).Commit(); err != nil {
		c.revoke(grant.ID)
		return nil, fmt.Errorf("register node %q: %w", name, c.classify(err))
	}
	kctx, stop := context.WithCancel(ctx)
	ka, err := c.cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		stop()
		c.revoke(grant.ID)
		return nil, fmt.Errorf("register node %q: keep lease alive: %w", name, c.classify(err))
	}
	c.mu.Lock()
	r.lease = grant.ID
	c.mu.Unlock()
	return &leaseRenewal{answers: ka, stop: stop}, nil
}

// probe is what one check of a registration found.
type probe int

const (
	probeConfirmed probe = iota // a quorum of etcd answered, and the node's liveness key exists
	probeGone                   // a quorum of etcd answered: the liveness key is gone (its lease expired or was revoked)
	probeFailed                 // no answer from a quorum in time
)

// leaseLost decides, after a check of the registration, whether the node has lost its lease, and why. A lease
// whose renewals etcd answers is not proof enough: a member cut off from the others, or whose raft loop is stuck,
// can answer them while the cluster cannot serve anything, and etcd's client then never gives up on the lease.
// What counts is a quorum confirming that the liveness key still exists; once none has for longer than the TTL,
// the other nodes may see this one NotReady, and it says so too.
func leaseLost(p probe, unconfirmed, ttl time.Duration) (reason string, lost bool) {
	switch {
	case p == probeGone:
		return "its liveness key is gone: the lease expired or was revoked", true
	case p == probeFailed && unconfirmed > ttl:
		return "no quorum of the cluster's etcd confirmed it within its TTL (etcd unreachable or without quorum)", true
	}
	return "", false
}

// keepAlive drains the lease's keepalive answers, checks every third of the TTL that a quorum still holds the
// node's liveness key (rewriting the record's heartbeat every TTL), and registers again when the lease is lost:
// its renewals ended, its liveness key is gone, or no quorum confirmed it for longer than the TTL. So a node finds
// out it lost the cluster within about twice its TTL, however etcd's members fail.
func (c *Client) keepAlive(ctx context.Context, r *registration, ka *leaseRenewal) {
	defer close(r.done)
	defer c.unregister(r)
	defer func() { ka.stop() }()
	name := r.node.Name
	every := r.ttl / 3
	check := time.NewTicker(every)
	defer check.Stop()
	confirmed, checks := time.Now(), 0
	for {
		var reason string
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ka.answers:
			if ok {
				continue
			}
			reason = "no renewal answered within its TTL, or it was revoked"
		case <-check.C:
			var p probe
			if checks++; checks%3 == 0 {
				p = c.writeHeartbeat(ctx, r, min(c.requestTimeout, r.ttl))
			} else {
				p = c.checkLiveness(ctx, r, every)
			}
			if p == probeConfirmed {
				confirmed = time.Now()
			}
			var lost bool
			if reason, lost = leaseLost(p, time.Since(confirmed), r.ttl); !lost {
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		ka.stop()
		c.log.Info("Lost the node's lease in the cluster's etcd; the node shows NotReady until it registers again",
			"node", name, "ttl", r.ttl, "reason", reason)
		next := c.reregister(ctx, r)
		if next == nil {
			return
		}
		ka, confirmed = next, time.Now()
	}
}

// checkLiveness reads the node's liveness key with a linearizable read, which only a quorum can answer, within
// timeout.
func (c *Client) checkLiveness(ctx context.Context, r *registration, timeout time.Duration) probe {
	pctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), timeout)
	defer cancel()
	resp, err := c.cli.Get(pctx, nodeAliveKey(r.node.Name), clientv3.WithKeysOnly())
	switch {
	case err != nil:
		if ctx.Err() == nil {
			c.log.V(1).Info("Could not confirm the node's lease", "node", r.node.Name, "err", c.classify(err))
		}
		return probeFailed
	case len(resp.Kvs) == 0:
		return probeGone
	}
	return probeConfirmed
}

// writeHeartbeat rewrites the node's record with the current time, only while its liveness key exists (a removed
// node's record is not written back by a late heartbeat), within timeout.
func (c *Client) writeHeartbeat(ctx context.Context, r *registration, timeout time.Duration) probe {
	rec := r.node
	rec.Heartbeat = time.Now().UTC()
	b, _ := json.Marshal(rec)
	octx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), timeout)
	defer cancel()
	resp, err := c.cli.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(nodeAliveKey(r.node.Name)), ">", 0)).
		Then(clientv3.OpPut(nodeRecordKey(r.node.Name), string(b))).Commit()
	switch {
	case err != nil:
		if ctx.Err() == nil {
			c.log.V(1).Info("Could not write the node's heartbeat", "node", r.node.Name, "err", c.classify(err))
		}
		return probeFailed
	case !resp.Succeeded:
		return probeGone
	}
	return probeConfirmed
}

// reregister retries register with backoff until it succeeds (returning the new lease's renewal) or ctx ends
// (returning nil).
func (c *Client) reregister(ctx context.Context, r *registration) *leaseRenewal {
	backoff := 250 * time.Millisecond
	for {
		ka, err := c.register(ctx, r)
		if err == nil {
			c.log.Info("Registered the node in the cluster again", "node", r.node.Name)
			return ka
		}
		if ctx.Err() != nil {
			return nil
		}
		c.log.Error(err, "Could not register the node in the cluster again; retrying", "node", r.node.Name, "retryIn", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second) // each failed try already waited a request timeout
	}
}

func (c *Client) unregister(r *registration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.regs[r.node.Name] == r {
		delete(c.regs, r.node.Name)
	}
}

func (c *Client) revoke(id clientv3.LeaseID) {
	ctx, cancel := c.opCtx(context.Background())
	defer cancel()
	_, _ = c.cli.Revoke(ctx, id)
}

// leaseOf returns the lease of a node registered through this client, for keys that must vanish with the node.
func (c *Client) leaseOf(node string) (*registration, clientv3.LeaseID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.regs[node]
	if !ok || r.lease == 0 {
		return nil, 0, fmt.Errorf("node %q is not registered through this client (RegisterNode first)", node)
	}
	return r, r.lease, nil
}

// Nodes lists every node record, sorted by name. Ready is true when the node's lease is alive.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, nodesRoot, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", c.classify(err))
	}
	alive := keysOf(resp.Kvs, nodeAlive)
	var nodes []Node
	for name, kv := range keysOf(resp.Kvs, nodeRecord) {
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil || n.Name != name {
			c.log.Error(err, "Skipping a node record that does not decode or names another node", "key", string(kv.Key))
			continue
		}
		n.Ready = alive[name] != nil
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

// RemoveNode deletes everything under the node's prefix (record, liveness key, pod reports, update slot claims)
// and revokes its lease. A registration of that node through this client is stopped first; one through another
// client registers it again.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	if err := validateName("node", name); err != nil {
		return err
	}
	c.mu.Lock()
	r := c.regs[name]
	c.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Delete(ctx, NodePrefix(name), clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		return fmt.Errorf("remove node %q: %w", name, c.classify(err))
	}
	if kv := keysOf(resp.PrevKvs, nodeAlive)[name]; kv != nil && kv.Lease != 0 {
		if _, err := c.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("remove node %q: revoke its lease: %w", name, c.classify(err))
		}
	}
	if r != nil {
		c.mu.Lock()
		r.lease = 0
		c.mu.Unlock()
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	return nil
}

// validateName keeps names usable as one key segment: DNS-1123 subdomains, as Kubernetes requires of node and
// object names.
func validateName(kind, name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%s name %q: %s", kind, name, strings.Join(msgs, "; "))
	}
	return nil
}

// validateNamespace: namespaces are DNS-1123 labels.
func validateNamespace(ns string) error {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return fmt.Errorf("namespace %q: %s", ns, strings.Join(msgs, "; "))
	}
	return nil
}
