package store

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Ping makes one quorum read of what every user may read (as Connect's check)
// and returns how long it took: the cluster's etcd is healthy for this node
// when it answers. It waits at most the client's request timeout.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	start := time.Now()
	if _, err := c.cli.Get(ctx, keyPrefix, clientv3.WithCountOnly()); err != nil {
		return time.Since(start), fmt.Errorf("read from the cluster's etcd: %w", c.classify(err))
	}
	return time.Since(start), nil
}
