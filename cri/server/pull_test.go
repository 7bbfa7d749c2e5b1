package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/cri/server"
)

// PullImage of the fake calls its pull function (Unimplemented without one).
func (f *fakeBackend) PullImage(ctx context.Context, ref string, auth authn.Authenticator) (string, error) {
	f.mu.Lock()
	fn := f.pull
	f.mu.Unlock()
	if fn == nil {
		return "", server.ErrUnimplemented
	}
	return fn(ctx, ref, auth)
}

// pullCall is what the backend was asked to pull, with the credentials it got.
type pullCall struct {
	ref  string
	auth *authn.AuthConfig // nil: the node's
}

// recordPulls makes b's pulls succeed with id, recording them.
func recordPulls(b *fakeBackend, id string) func() []pullCall {
	var mu sync.Mutex
	var calls []pullCall
	b.pull = func(_ context.Context, ref string, auth authn.Authenticator) (string, error) {
		c := pullCall{ref: ref}
		if auth != nil {
			cfg, err := auth.Authorization()
			if err != nil {
				return "", err
			}
			c.auth = cfg
		}
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		return id, nil
	}
	return func() []pullCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]pullCall(nil), calls...)
	}
}

// TestPullImage: PullImage returns the backend's image ID as image_ref; the request's credentials reach the
// backend when they are for the image's registry, never when they name another; an empty AuthConfig leaves the
// node's.
func TestPullImage(t *testing.T) {
	b := newFake()
	calls := recordPulls(b, busyboxID)
	f := serve(t, b)

	ref, err := f.img.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox:1.36"}, nil, &runtimeapi.PodSandboxConfig{})
	if err != nil || ref != busyboxID {
		t.Fatalf("PullImage = %q, %v; want %s", ref, err, busyboxID)
	}
	for _, tc := range []struct {
		name  string
		image string
		auth  *runtimeapi.AuthConfig
		want  *authn.AuthConfig
	}{
		{"empty AuthConfig", "busybox", &runtimeapi.AuthConfig{}, nil},
		{"username and password", "registry.test:5000/team/app:v1", &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"},
			&authn.AuthConfig{Username: "alice", Password: "s3cret"}},
		{"auth", "registry.test:5000/app", &runtimeapi.AuthConfig{Auth: "YWxpY2U6czNjcmV0"}, &authn.AuthConfig{Auth: "YWxpY2U6czNjcmV0"}},
		{"identity token", "registry.test/app", &runtimeapi.AuthConfig{IdentityToken: "refresh"}, &authn.AuthConfig{IdentityToken: "refresh"}},
		{"registry token", "registry.test/app", &runtimeapi.AuthConfig{RegistryToken: "bearer"}, &authn.AuthConfig{RegistryToken: "bearer"}},
		{"server address of the registry", "registry.test:5000/app", &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "registry.test:5000"},
			&authn.AuthConfig{Username: "u", Password: "p"}},
		{"server address as a URL", "registry.test:5000/app", &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "https://registry.test:5000/v2/"},
			&authn.AuthConfig{Username: "u", Password: "p"}},
		{"Docker Hub's server address", "busybox", &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"},
			&authn.AuthConfig{Username: "u", Password: "p"}},
		{"another registry's credentials", "registry.test:5000/app", &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "other.test:5000"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(calls())
			if _, err := f.img.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: tc.image}, tc.auth, nil); err != nil {
				t.Fatal(err)
			}
			got := calls()
			if len(got) != before+1 {
				t.Fatalf("%d pulls, want %d", len(got), before+1)
			}
			c := got[len(got)-1]
			if c.ref != tc.image {
				t.Errorf("pulled %q, want %q", c.ref, tc.image)
			}
			switch {
			case tc.want == nil && c.auth != nil:
				t.Errorf("credentials %+v reached the backend, want the node's", *c.auth)
			case tc.want != nil && (c.auth == nil || *c.auth != *tc.want):
				t.Errorf("credentials %+v, want %+v", c.auth, *tc.want)
			}
		})
	}
}

// TestPullImageErrors: a pull's failure keeps its cause in the code; a bad reference never reaches the backend.
func TestPullImageErrors(t *testing.T) {
	b := newFake()
	var fail error
	b.pull = func(context.Context, string, authn.Authenticator) (string, error) { return "", fail }
	f := serve(t, b)
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"unauthorized", fmt.Errorf("pulling x: %w", &transport.Error{StatusCode: http.StatusUnauthorized,
			Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode, Message: "authentication required"}}}), codes.Unauthenticated},
		{"denied", fmt.Errorf("pulling x: %w", &transport.Error{StatusCode: http.StatusForbidden}), codes.Unauthenticated},
		{"unknown repository", fmt.Errorf("pulling x: %w", &transport.Error{StatusCode: http.StatusNotFound,
			Errors: []transport.Diagnostic{{Code: transport.NameUnknownErrorCode}}}), codes.NotFound},
		{"unknown tag", fmt.Errorf("pulling x: %w", &transport.Error{StatusCode: http.StatusNotFound,
			Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}), codes.NotFound},
		{"no progress", fmt.Errorf("pulling x: %w", pull.ErrNoProgress), codes.DeadlineExceeded},
		{"no platform", fmt.Errorf("pulling x: %w", pull.ErrNoPlatform), codes.Internal},
		{"anything else", errors.New("pulling x: connection refused"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.mu.Lock()
			fail = tc.err
			b.mu.Unlock()
			_, err := f.img.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, nil)
			wantCode(t, "PullImage", err, tc.want)
			if s, _ := status.FromError(err); !strings.Contains(s.Message(), tc.err.Error()) {
				t.Errorf("message %q lacks the pull's error %q", s.Message(), tc.err)
			}
		})
	}

	b.mu.Lock()
	b.pull = func(context.Context, string, authn.Authenticator) (string, error) {
		t.Error("the backend was asked to pull a bad reference")
		return "", nil
	}
	b.mu.Unlock()
	for _, ref := range []string{"", "Busybox", "busybox:no:pe", "-bad/name"} {
		_, err := f.img.PullImage(f.ctx, &runtimeapi.ImageSpec{Image: ref}, nil, nil)
		wantCode(t, "PullImage of "+ref, err, codes.InvalidArgument)
	}
}
