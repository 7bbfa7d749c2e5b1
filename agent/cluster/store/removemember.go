package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// RemoveMember removes the etcd member named name from the cluster, for a node that is gone for good (it left with
// --force, or its host is lost): the cluster stops counting it towards its quorum. It returns ErrNotFound when no
// member has that name. Removing a running member stops it, so callers check that its node is down first.
func (c *Client) RemoveMember(ctx context.Context, name string) error {
	members, err := c.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Name != name {
			continue
		}
		err := c.changeMembers(ctx, "remove member "+name, func(ctx context.Context) error {
			_, err := c.cli.MemberRemove(ctx, m.ID)
			return err
		})
		switch {
		case err == nil || errors.Is(err, rpctypes.ErrMemberNotFound):
			c.log.Info("Removed an etcd member from the cluster", "member", name, "id", fmt.Sprintf("%x", m.ID))
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotEnoughStarted):
			return fmt.Errorf("remove member %q: the cluster would be left without a quorum of running members; start the stopped members first: %w", name, err)
		}
		return fmt.Errorf("remove member %q: %w", name, err)
	}
	return fmt.Errorf("etcd member %q: %w", name, ErrNotFound)
}

// RemoveMemberID removes the etcd member with id, which may be a learner that never started (it has no name yet):
// what a failed join leaves. It returns ErrNotFound when there is none.
func (c *Client) RemoveMemberID(ctx context.Context, id uint64) error {
	err := c.changeMembers(ctx, fmt.Sprintf("remove member %x", id), func(ctx context.Context) error {
		_, err := c.cli.MemberRemove(ctx, id)
		return err
	})
	if errors.Is(err, rpctypes.ErrMemberNotFound) {
		return fmt.Errorf("etcd member %x: %w", id, ErrNotFound)
	}
	return err
}
