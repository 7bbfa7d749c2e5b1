package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-project/agentd/agent/cluster/internal/zaplog"
)

// Errors callers classify with errors.Is.
var (
	// ErrNotFound: the object (node, DaemonSet) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object changed since the resourceVersion the caller sent.
	ErrConflict = errors.New("the object has been modified; apply your changes to the latest version and try again")
	// ErrUnreachable: etcd did not answer in time (down, partitioned, or without quorum).
	ErrUnreachable = errors.New("cannot reach the cluster's etcd")
)

// DefaultRequestTimeout bounds each request the Client makes, so that an unreachable etcd is an error rather than
// a hang.
const DefaultRequestTimeout = 5 * time.Second

// Client is typed access to the cluster's state under /agentd/ in etcd. It is safe for concurrent use. Close ends
// the node registrations made through it without revoking their leases (as a crash would).
type Client struct {
	cli            *clientv3.Client
	log            logr.Logger
	requestTimeout time.Duration

	mu   sync.Mutex               // guards regs
	regs map[string]*registration // guarded by mu; by node name
}

// Connect opens a client of the etcd cluster at endpoints over mutual TLS (tlsCfg: the cluster's CA and this
// client's certificate, whose common name is its etcd user) and checks that the cluster answers (a quorum read of
// what every user may read), so that a wrong address or a cluster without quorum fails here, with ErrUnreachable.
// The check waits at most DefaultRequestTimeout, or until ctx ends. The client follows membership changes (it
// re-reads the member list every 30 s), so it keeps working when the member it first talked to leaves.
func Connect(ctx context.Context, endpoints []string, tlsCfg *tls.Config, log logr.Logger) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("connect to the cluster's etcd: no endpoints")
	}
	if tlsCfg == nil {
		return nil, errors.New("connect to the cluster's etcd: no TLS credentials")
	}
	for _, e := range endpoints {
		if !strings.HasPrefix(e, "https://") {
			return nil, fmt.Errorf("connect to the cluster's etcd: endpoint %q: cluster traffic is mutual TLS; want https://HOST:PORT", e)
		}
	}
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          DefaultRequestTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		AutoSyncInterval:     30 * time.Second,
		TLS:                  tlsCfg,
		Logger:               zaplog.New(log, "etcd-client", zaplog.ClientLevels),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster's etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	c := &Client{cli: cli, log: log, requestTimeout: DefaultRequestTimeout, regs: map[string]*registration{}}
	gctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := cli.Get(gctx, keyPrefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, c.classify(err)
	}
	return c, nil
}

// Close stops the client's node registrations (their leases expire after their TTL) and watches, and closes its
// connections.
func (c *Client) Close() error {
	c.mu.Lock()
	regs := c.regs
	c.regs = map[string]*registration{}
	c.mu.Unlock()
	for _, r := range regs {
		r.cancel()
	}
	err := c.cli.Close()
	for _, r := range regs {
		<-r.done
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Endpoints are the client URLs the client currently uses.
func (c *Client) Endpoints() []string { return c.cli.Endpoints() }

// ClusterMember is one etcd member as the cluster sees it.
type ClusterMember struct {
	ID         uint64
	Name       string // empty for a member that was added but has not started yet
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
}

// Members lists the cluster's etcd members.
func (c *Client) Members(ctx context.Context) ([]ClusterMember, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", c.classify(err))
	}
	out := make([]ClusterMember, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, ClusterMember{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	return out, nil
}

// ClusterID is the etcd cluster's ID in hex.
func (c *Client) ClusterID(ctx context.Context) (string, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("list etcd members: %w", c.classify(err))
	}
	return fmt.Sprintf("%x", resp.Header.ClusterId), nil
}

// opCtx bounds one request by the client's request timeout.
func (c *Client) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.requestTimeout)
}

// classify marks errors that mean "etcd did not answer" with ErrUnreachable and the endpoints tried, and leaves
// the others (a conflict, a bad request, the caller's cancellation) as they are.
func (c *Client) classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) || errors.Is(err, ErrPermissionDenied) {
		return err
	}
	if IsPermissionDenied(err) {
		return fmt.Errorf("%w: the cluster's etcd refused it to this credential: %w", ErrPermissionDenied, err)
	}
	if !isUnreachable(err) {
		return err
	}
	return fmt.Errorf("%w at %s: %w", ErrUnreachable, strings.Join(c.cli.Endpoints(), ","), err)
}

func isUnreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, e := range []error{rpctypes.ErrNoLeader, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrStopped,
		rpctypes.ErrLeaderChanged} {
		if errors.Is(err, e) {
			return true
		}
	}
	if s, ok := status.FromError(err); ok {
		return s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded
	}
	return false
}
