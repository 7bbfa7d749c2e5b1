package server

import (
	"context"
	"encoding/json"
	"fmt"
)

// InfoBackend is what verbose status requests add to a status.
type InfoBackend interface {
	// ContainerInfo is what ContainerStatus with verbose adds of container id;
	// unknown: ErrNotFound.
	ContainerInfo(ctx context.Context, id string) (ContainerInfo, error)
}

// ContainerInfo is the verbose part of a container's status, under the
// names containerd and CRI-O use, so that what is written for them (crictl
// inspect --template '{{.info.pid}}') reads it too.
type ContainerInfo struct {
	SandboxID string `json:"sandboxID"`
	// Pid is the container's init process as the host sees it, while it
	// runs; 0 when it does not.
	Pid int `json:"pid"`
}

// verboseInfo is a status response's Info map: the one key "info", a JSON
// object, as containerd and CRI-O answer.
func verboseInfo(v any) (map[string]string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("verbose info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}
