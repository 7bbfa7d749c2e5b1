package agent

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/agentd-project/agentd/agent/runtime/runtimetest"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// TestCRIStreamsServed: serveCRI starts the streaming server with the CRI (and
// its stop stops both); the streaming RPCs and ExecSync find no unknown object.
func TestCRIStreamsServed(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "cri.sock")
	a := newAgent(Options{RunDir: filepath.Join(dir, "run"), Root: filepath.Join(dir, "root"), CRISocket: sock,
		CRIStreamAddress: "127.0.0.1:0", Log: logr.Discard()}, runtimetest.New(filepath.Join(dir, "run")), &fakeImages{})
	stop, err := a.serveCRI()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 10*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	_, _, err = rt.ExecSync(ctx, id, []string{"true"}, time.Second)
	if status.Code(err) != codes.NotFound {
		t.Errorf("ExecSync in an unknown container: %v, want NotFound", err)
	}
	_, err = rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Stdout: true})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Exec in an unknown container: %v, want NotFound", err)
	}
	_, err = rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Attach to an unknown container: %v, want NotFound", err)
	}
	_, err = rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: id, Port: []int32{80}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("PortForward to an unknown sandbox: %v, want NotFound", err)
	}
	if _, err := (criBackend{a}).DialPort(ctx, id, 70000); !errors.Is(err, criserver.ErrInvalidArgument) {
		t.Errorf("DialPort to port 70000: %v, want ErrInvalidArgument", err)
	}
}
