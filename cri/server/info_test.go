package server_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/cri/server"
)

func (lifecycleStub) ContainerInfo(_ context.Context, id string) (server.ContainerInfo, error) {
	return server.ContainerInfo{}, notFound("container", id)
}

// infoFake knows one running container, "c1".
type infoFake struct{ *fakeBackend }

func (infoFake) ContainerStatus(_ context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	if id != "c1" {
		return nil, notFound("container", id)
	}
	return &runtimeapi.ContainerStatus{Id: id, Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, CreatedAt: 1, Image: &runtimeapi.ImageSpec{Image: "i"}, ImageRef: "i", State: runtimeapi.ContainerState_CONTAINER_RUNNING}, nil
}

func (infoFake) ContainerInfo(_ context.Context, id string) (server.ContainerInfo, error) {
	if id != "c1" {
		return server.ContainerInfo{}, notFound("container", id)
	}
	return server.ContainerInfo{SandboxID: "sb1", Pid: 4242}, nil
}

// TestContainerStatusVerbose: verbose adds info["info"], a JSON object with the container's sandbox and pid under
// containerd's and CRI-O's names (what `crictl inspect` shows as .info.pid); without verbose there is no info.
func TestContainerStatusVerbose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := api.ListenUnix(sock, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(infoFake{newFake()}, "test", logr.Discard())
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() { s.Stop(5 * time.Second); <-served }()
	rt, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 10*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)

	resp, err := rt.ContainerStatus(ctx, "c1", true)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil || len(resp.GetInfo()) != 1 {
		t.Fatalf("verbose info = %v (%v), want one key, info, holding a JSON object", resp.GetInfo(), err)
	}
	if info["pid"] != float64(4242) || info["sandboxID"] != "sb1" {
		t.Errorf("verbose info = %v, want pid 4242 and sandboxID sb1", info)
	}
	if resp, err := rt.ContainerStatus(ctx, "c1", false); err != nil || resp.GetInfo() != nil {
		t.Errorf("ContainerStatus without verbose: info %v, %v; want none", resp.GetInfo(), err)
	}
	_, err = rt.ContainerStatus(ctx, "absent", true)
	wantCode(t, "verbose ContainerStatus of an unknown container", err, codes.NotFound)
}
