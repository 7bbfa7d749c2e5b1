package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Error classes a Backend or a handler wraps (errors.Is); toStatus maps them,
// and the sentinels of the packages below, to gRPC codes.
var (
	// ErrNotFound: no sandbox, container or image of that ID.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the request is malformed (no metadata, a bad name or path, an unsupported mode).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAlreadyExists: the name is reserved by another sandbox or container.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition: the object is not in a state that allows the request (an image in use, a sandbox not ready).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnimplemented: agentd does not serve this (yet).
	ErrUnimplemented = errors.New("not implemented")
)

// toStatus is the one place an error becomes a gRPC status, so that every RPC
// reports a class of failure with the same code (docs/cri-design.md's table).
// The message is the error's; nil stays nil, and a status error passes as it
// is.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(code(err), err.Error())
}

// code classifies err; the first class that matches wins.
func code(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, ErrUnimplemented), errors.Is(err, protocol.ErrUnsupported):
		return codes.Unimplemented
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, image.ErrInvalidReference):
		return codes.InvalidArgument
	case errors.Is(err, ErrNotFound), errors.Is(err, image.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, ErrFailedPrecondition), errors.Is(err, protocol.ErrNotRunning):
		return codes.FailedPrecondition
	case errors.Is(err, image.ErrTooLarge):
		return codes.ResourceExhausted
	}
	return codes.Internal
}
