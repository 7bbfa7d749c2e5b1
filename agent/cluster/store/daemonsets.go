package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// DaemonSets live at /agentd/daemonsets/<namespace>/<name> (keys.go) as apps/v1 JSON without resourceVersion,
// which is the key's etcd ModRevision.

// putRetries bounds how often PutDaemonSet retries when another writer changed the object between its read and
// its write.
const putRetries = 5

// PutDaemonSet creates or replaces a DaemonSet (`agentctl apply`). An empty namespace means "default". On create
// it sets uid, creationTimestamp and generation 1; on replace it keeps uid, creationTimestamp and status, and bumps
// generation only when the spec changed (Kubernetes' rule, which is what rollouts key on). A non-empty
// resourceVersion must match the stored one, or ErrConflict. It returns the object as stored.
func (c *Client) PutDaemonSet(ctx context.Context, ds *appsv1.DaemonSet) (*appsv1.DaemonSet, error) {
	in := ds.DeepCopy()
	in.Namespace = nsOrDefault(in.Namespace)
	if err := validateNamespace(in.Namespace); err != nil {
		return nil, fmt.Errorf("put daemonset: %w", err)
	}
	if err := validateName("daemonset", in.Name); err != nil {
		return nil, fmt.Errorf("put daemonset: %w", err)
	}
	id := in.Namespace + "/" + in.Name
	key := daemonSetKey(in.Namespace, in.Name)
	in.APIVersion, in.Kind = "apps/v1", "DaemonSet"

	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	for range putRetries {
		got, err := c.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("put daemonset %s: %w", id, c.classify(err))
		}
		obj := in.DeepCopy()
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(got.Kvs) == 0 {
			if obj.ResourceVersion != "" {
				return nil, fmt.Errorf("daemonset %s: %w", id, ErrNotFound)
			}
			obj.UID = uuid.NewUUID()
			obj.CreationTimestamp = metav1.NewTime(time.Now().UTC().Truncate(time.Second))
			obj.Generation = 1
			obj.Status = appsv1.DaemonSetStatus{}
		} else {
			kv := got.Kvs[0]
			var old appsv1.DaemonSet
			if err := json.Unmarshal(kv.Value, &old); err != nil {
				c.log.Error(err, "Replacing a stored daemonset that does not decode", "daemonset", id)
				old = appsv1.DaemonSet{}
			}
			if obj.ResourceVersion != "" && obj.ResourceVersion != strconv.FormatInt(kv.ModRevision, 10) {
				return nil, fmt.Errorf("daemonset %s (resourceVersion %s, stored %d): %w", id, obj.ResourceVersion, kv.ModRevision, ErrConflict)
			}
			obj.UID = old.UID
			if obj.UID == "" {
				obj.UID = uuid.NewUUID()
			}
			obj.CreationTimestamp = old.CreationTimestamp
			obj.Status = old.Status
			obj.Generation = max(old.Generation, 1)
			if !apiequality.Semantic.DeepEqual(old.Spec, obj.Spec) {
				obj.Generation++
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
		}
		obj.ResourceVersion = ""
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("put daemonset %s: encode: %w", id, err)
		}
		resp, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return nil, fmt.Errorf("put daemonset %s: %w", id, c.classify(err))
		}
		if resp.Succeeded {
			obj.ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
			return obj, nil
		}
		if in.ResourceVersion != "" {
			return nil, fmt.Errorf("daemonset %s (resourceVersion %s): %w", id, in.ResourceVersion, ErrConflict)
		}
	}
	return nil, fmt.Errorf("put daemonset %s: changed concurrently %d times in a row: %w", id, putRetries, ErrConflict)
}

// GetDaemonSet returns the stored DaemonSet, or an error wrapping ErrNotFound. An empty namespace means "default".
func (c *Client) GetDaemonSet(ctx context.Context, namespace, name string) (*appsv1.DaemonSet, error) {
	namespace = nsOrDefault(namespace)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, daemonSetKey(namespace, name))
	if err != nil {
		return nil, fmt.Errorf("get daemonset %s/%s: %w", namespace, name, c.classify(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("daemonset %s/%s: %w", namespace, name, ErrNotFound)
	}
	return decodeDaemonSet(resp.Kvs[0])
}

// ListDaemonSets returns every DaemonSet, sorted by namespace and name, and the etcd revision of the list: pass
// revision+1 to WatchDaemonSets to miss nothing. A stored object that does not decode is logged and skipped.
func (c *Client) ListDaemonSets(ctx context.Context) ([]appsv1.DaemonSet, int64, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, daemonSetsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list daemonsets: %w", c.classify(err))
	}
	out := make([]appsv1.DaemonSet, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ds, err := decodeDaemonSet(kv)
		if err != nil {
			c.log.Error(err, "Skipping a stored daemonset")
			continue
		}
		out = append(out, *ds)
	}
	return out, resp.Header.Revision, nil
}

// DeleteDaemonSet deletes a DaemonSet with its nodes' pod reports and update slots, or returns ErrNotFound. An empty
// namespace means "default".
func (c *Client) DeleteDaemonSet(ctx context.Context, namespace, name string) error {
	namespace = nsOrDefault(namespace)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	// The nodes' reports and slot claims go too (the nodes withdraw them as they stop the pods, but a node that is
	// down would leave them until its lease ends).
	keys, err := c.cli.Get(ctx, nodesRoot, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("delete daemonset %s/%s: %w", namespace, name, c.classify(err))
	}
	ops := []clientv3.Op{clientv3.OpDelete(daemonSetKey(namespace, name))}
	for _, rest := range []string{nodeDSPods + namespace + "/" + name, nodeSlotClaim + namespace + "/" + name} {
		for _, kv := range keysOf(keys.Kvs, rest) {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	resp, err := c.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("delete daemonset %s/%s: %w", namespace, name, c.classify(err))
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return fmt.Errorf("daemonset %s/%s: %w", namespace, name, ErrNotFound)
	}
	return nil
}

func nsOrDefault(ns string) string {
	if ns == "" {
		return metav1.NamespaceDefault
	}
	return ns
}

func decodeDaemonSet(kv *mvccpb.KeyValue) (*appsv1.DaemonSet, error) {
	var ds appsv1.DaemonSet
	if err := json.Unmarshal(kv.Value, &ds); err != nil {
		return nil, fmt.Errorf("decode daemonset at %s: %w", kv.Key, err)
	}
	ds.ResourceVersion = strconv.FormatInt(kv.ModRevision, 10)
	return &ds, nil
}

// EventType says what a DaemonSetEvent is.
type EventType string

const (
	EventPut    EventType = "Put"    // DaemonSet created or changed
	EventDelete EventType = "Delete" // DaemonSet deleted; DaemonSet is its last stored state
	// EventResync replaces everything the watcher knew with All: etcd compacted away the revisions the watch
	// needed to resume (it was disconnected for long), so the changes in between are summed up as a new list.
	EventResync EventType = "Resync"
)

// DaemonSetEvent is one change seen by WatchDaemonSets.
type DaemonSetEvent struct {
	Type      EventType
	DaemonSet *appsv1.DaemonSet  // Put, Delete
	All       []appsv1.DaemonSet // Resync
	Revision  int64
}

// WatchDaemonSets sends every DaemonSet change from fromRevision on (0: from now) until ctx ends or the Client is
// closed, then closes the channel. It survives etcd outages: it reconnects (to another member when its own lost the leader) and resumes
// where it left off, or sends an EventResync when that history has been compacted away. The channel is
// unbuffered; a slow reader slows the watch, it never loses events.
func (c *Client) WatchDaemonSets(ctx context.Context, fromRevision int64) <-chan DaemonSetEvent {
	out := make(chan DaemonSetEvent)
	go c.watchDaemonSets(ctx, fromRevision, out)
	return out
}

func (c *Client) watchDaemonSets(ctx context.Context, rev int64, out chan<- DaemonSetEvent) {
	defer close(out)
	send := func(ev DaemonSetEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		var werr error
		for wr := range c.cli.Watch(wctx, daemonSetsPrefix, opts...) {
			if werr = wr.Err(); werr != nil {
				break
			}
			if wr.Created && rev == 0 {
				rev = wr.Header.Revision + 1
			}
			backoff = 100 * time.Millisecond
			for _, ev := range wr.Events {
				rev = ev.Kv.ModRevision + 1
				de, ok := c.daemonSetEvent(ev)
				if ok && !send(de) {
					cancel()
					return
				}
			}
		}
		cancel()
		if ctx.Err() != nil || c.cli.Ctx().Err() != nil { // caller done, or Client closed
			return
		}
		if errors.Is(werr, rpctypes.ErrCompacted) {
			all, listRev, err := c.ListDaemonSets(ctx)
			if err == nil {
				c.log.Info("Daemonset watch fell behind etcd's compaction; relisted", "fromRevision", rev, "revision", listRev)
				if !send(DaemonSetEvent{Type: EventResync, All: all, Revision: listRev}) {
					return
				}
				rev = listRev + 1
				continue
			}
			werr = err
		}
		c.log.V(1).Info("Daemonset watch ended; reconnecting", "fromRevision", rev, "err", werr, "retryIn", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Client) daemonSetEvent(ev *clientv3.Event) (DaemonSetEvent, bool) {
	if ev.Type == clientv3.EventTypePut {
		ds, err := decodeDaemonSet(ev.Kv)
		if err != nil {
			c.log.Error(err, "Skipping a daemonset change that does not decode")
			return DaemonSetEvent{}, false
		}
		return DaemonSetEvent{Type: EventPut, DaemonSet: ds, Revision: ev.Kv.ModRevision}, true
	}
	var ds *appsv1.DaemonSet
	if ev.PrevKv != nil {
		ds, _ = decodeDaemonSet(ev.PrevKv)
	}
	if ds == nil { // no previous value: say at least which one went away
		ns, name, _ := strings.Cut(strings.TrimPrefix(string(ev.Kv.Key), daemonSetsPrefix), "/")
		ds = &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	ds.ResourceVersion = strconv.FormatInt(ev.Kv.ModRevision, 10)
	return DaemonSetEvent{Type: EventDelete, DaemonSet: ds, Revision: ev.Kv.ModRevision}, true
}
