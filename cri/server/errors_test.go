package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func TestToStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("container 0123abcd of sandbox 4567ef01: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"not found", wrap(ErrNotFound), codes.NotFound},
		{"image not found", fmt.Errorf("%w: busybox", image.ErrNotFound), codes.NotFound},
		{"invalid argument", wrap(ErrInvalidArgument), codes.InvalidArgument},
		{"unparsable image ref", fmt.Errorf("%w \"Bad\": uppercase", image.ErrInvalidReference), codes.InvalidArgument},
		{"name reserved", wrap(ErrAlreadyExists), codes.AlreadyExists},
		{"registry refused the credentials", wrap(ErrUnauthenticated), codes.Unauthenticated},
		{"image in use", fmt.Errorf("%w: image busybox is in use by container c of pod default/p", ErrFailedPrecondition), codes.FailedPrecondition},
		{"not running", wrap(protocol.ErrNotRunning), codes.FailedPrecondition},
		{"image limits", wrap(&image.LimitError{}), codes.ResourceExhausted},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{"cancelled", wrap(context.Canceled), codes.Canceled},
		{"unimplemented", wrap(ErrUnimplemented), codes.Unimplemented},
		{"monitor lacks the op", wrap(protocol.ErrUnsupported), codes.Unimplemented},
		{"anything else", errors.New("monitor socket: connection reset"), codes.Internal},
		{"a status passes", status.Error(codes.Unavailable, "later"), codes.Unavailable},
		{"a wrapped status passes", fmt.Errorf("call: %w", status.Error(codes.Aborted, "x")), codes.Aborted},
		{"deadline beats what it wraps", fmt.Errorf("%w: %w", ErrNotFound, context.DeadlineExceeded), codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toStatus(tc.err)
			if c := status.Code(got); c != tc.want {
				t.Errorf("toStatus(%v) has code %v, want %v", tc.err, c, tc.want)
			}
			if tc.err == nil {
				if got != nil {
					t.Errorf("toStatus(nil) = %v", got)
				}
				return
			}
			if s, _ := status.FromError(got); s.Message() == "" || (tc.want != codes.Unavailable && tc.want != codes.Aborted && s.Message() != tc.err.Error()) {
				t.Errorf("message %q, want the error's %q", s.Message(), tc.err.Error())
			}
		})
	}
}
