package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// Access control. etcd names a client after the common name of its certificate (the client listeners require one
// from the cluster's CA): pki.AdminCN is etcd's root user, which alone may write DaemonSets, the cluster's settings,
// bootstrap tokens, users and members; pki.NodeCN(node) is a node's user, whose role (NodeRole) reads /agentd/ and
// writes only NodePrefix(node). A certificate whose name has no user gets nothing.

// NodeRole is the name of node's etcd user and role.
func NodeRole(node string) string { return pki.NodeCN(node) }

// EnableAuth turns on etcd's access control (`cluster init`): the root user for the admin credential, then
// authentication. It is idempotent. c must be the admin's client.
func (c *Client) EnableAuth(ctx context.Context) error {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.cli.UserAddWithOptions(ctx, pki.AdminCN, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil &&
		!errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("enable etcd access control: add user %s: %w", pki.AdminCN, c.classify(err))
	}
	if _, err := c.cli.UserGrantRole(ctx, pki.AdminCN, "root"); err != nil {
		return fmt.Errorf("enable etcd access control: grant role root: %w", c.classify(err))
	}
	if _, err := c.cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enable etcd access control: %w", c.classify(err))
	}
	return nil
}

// AddNodeUser creates (or completes) node's etcd user and role: read everything under /agentd/, write only the
// node's own prefix. It is idempotent. c must be the admin's client.
func (c *Client) AddNodeUser(ctx context.Context, node string) error {
	if err := validateName("node", node); err != nil {
		return err
	}
	name := NodeRole(node)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.cli.RoleAdd(ctx, name); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("add etcd role %s: %w", name, c.classify(err))
	}
	grants := []struct {
		prefix string
		perm   clientv3.PermissionType
	}{
		{keyPrefix, clientv3.PermissionType(clientv3.PermRead)},
		{NodePrefix(node), clientv3.PermissionType(clientv3.PermReadWrite)},
	}
	for _, g := range grants {
		if _, err := c.cli.RoleGrantPermission(ctx, name, g.prefix, clientv3.GetPrefixRangeEnd(g.prefix), g.perm); err != nil {
			return fmt.Errorf("grant etcd role %s access to %s: %w", name, g.prefix, c.classify(err))
		}
	}
	if _, err := c.cli.UserAddWithOptions(ctx, name, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil &&
		!errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add etcd user %s: %w", name, c.classify(err))
	}
	if _, err := c.cli.UserGrantRole(ctx, name, name); err != nil {
		return fmt.Errorf("grant etcd user %s its role: %w", name, c.classify(err))
	}
	return nil
}

// RemoveNodeUser deletes node's etcd user and role: its certificate, still valid until it expires, then grants
// nothing. Missing ones are not an error. c must be the admin's client.
func (c *Client) RemoveNodeUser(ctx context.Context, node string) error {
	name := NodeRole(node)
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.cli.UserDelete(ctx, name); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete etcd user %s: %w", name, c.classify(err))
	}
	if _, err := c.cli.RoleDelete(ctx, name); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("delete etcd role %s: %w", name, c.classify(err))
	}
	return nil
}

// NodeUserExists says whether node still has its etcd user: false after `delete node` or a leave. c must be the
// admin's client.
func (c *Client) NodeUserExists(ctx context.Context, node string) (bool, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	_, err := c.cli.UserGet(ctx, NodeRole(node))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, rpctypes.ErrUserNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up etcd user %s: %w", NodeRole(node), c.classify(err))
}

// ErrPermissionDenied: etcd refused the request to this client's certificate (errors.Is).
var ErrPermissionDenied = errors.New("permission denied")

// IsPermissionDenied says whether etcd refused err's request for lack of rights.
func IsPermissionDenied(err error) bool {
	return errors.Is(err, ErrPermissionDenied) || errors.Is(err, rpctypes.ErrPermissionDenied) ||
		errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrUserNotFound) ||
		errors.Is(err, rpctypes.ErrPermissionNotGranted)
}
