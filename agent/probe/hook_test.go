package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func httpGetHook(port intstr.IntOrString, path string, headers ...corev1.HTTPHeader) *corev1.LifecycleHandler {
	return &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: path, Port: port, Scheme: corev1.URISchemeHTTP, HTTPHeaders: headers,
	}}
}

func TestRunHandlerHTTPGet(t *testing.T) {
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		otherHits.Add(1)
		fmt.Fprint(w, "other")
	}))
	t.Cleanup(other.Close)
	_, otherPort := hostPort(t, other.Listener.Addr().String())

	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "drained") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "cannot drain", http.StatusInternalServerError)
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/to-ok", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/to-other-host", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+strconv.Itoa(otherPort)+"/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/big-fail", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, strings.Repeat("x", 20<<10))
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	web := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	target := Target{ContainerID: "c1", PodIP: host, Container: web}

	for _, tc := range []struct {
		name    string
		h       *corev1.LifecycleHandler
		target  Target
		wantMsg string // exactly
		wantErr string // a substring; "" for success
		sent    bool   // whether the request reached the server
	}{
		{"2xx", httpGetHook(intstr.FromInt32(int32(port)), "/ok"), target, "drained", "", true},
		{"named port", httpGetHook(intstr.FromString("http"), "/ok"), target, "drained", "", true},
		{"5xx returns the body", httpGetHook(intstr.FromInt32(int32(port)), "/fail"), target, "cannot drain\n", "/fail: 500 Internal Server Error", true},
		{"404", httpGetHook(intstr.FromInt32(int32(port)), "/missing"), target, "404 page not found\n", "404 Not Found", true},
		{"same-host redirect is followed", httpGetHook(intstr.FromInt32(int32(port)), "/to-ok"), target, "drained", "", true},
		{"redirect to another host is not followed", httpGetHook(intstr.FromInt32(int32(port)), "/to-other-host"), target,
			"<a href=\"http://localhost:" + strconv.Itoa(otherPort) + "/\">Moved Permanently</a>.\n\n", "", true},
		{"body cut at 10 KiB", httpGetHook(intstr.FromInt32(int32(port)), "/big-fail"), target, strings.Repeat("x", 10<<10), "503", true},
		// The bug of issue 13: a hook sent this to port 0.
		{"unknown port name", httpGetHook(intstr.FromString("admin"), "/ok"), target, "", `port "admin" is not a port number nor the name of one of the container's ports (named: "http")`, false},
		{"no pod IP", httpGetHook(intstr.FromInt32(int32(port)), "/ok"), Target{Container: web}, "", "no IP yet", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			msg, err := RunHandler(context.Background(), tc.target, tc.h)
			if msg != tc.wantMsg {
				t.Errorf("message %q, want %q", msg, tc.wantMsg)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one with %q", err, tc.wantErr)
			}
			if sent := hits.Load() != before; sent != tc.sent {
				t.Errorf("request sent: %v, want %v", sent, tc.sent)
			}
		})
	}
	if n := otherHits.Load(); n != 0 {
		t.Errorf("the redirect to another host was followed (%d requests)", n)
	}
}

func TestRunHandlerHTTPGetRequest(t *testing.T) {
	type seen struct{ host, userAgent, accept, uri string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.UserAgent(), r.Header.Get("Accept"), r.URL.RequestURI()}
	}))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	addr := srv.Listener.Addr().String()

	var dials atomic.Int32
	target := Target{PodIP: "192.0.2.1", Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr) // the pod's network namespace, as it were
	}}
	for _, tc := range []struct {
		name string
		h    *corev1.LifecycleHandler
		want seen
	}{
		{"defaults", httpGetHook(intstr.FromInt32(int32(port)), "/shutdown?now=1"),
			seen{net.JoinHostPort("192.0.2.1", strconv.Itoa(port)), HookUserAgent, "*/*", "/shutdown?now=1"}},
		{"headers", httpGetHook(intstr.FromInt32(int32(port)), "",
			corev1.HTTPHeader{Name: "Host", Value: "app.example"}, corev1.HTTPHeader{Name: "User-Agent", Value: "mine/2"}),
			seen{"app.example", "mine/2", "*/*", "/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg, err := RunHandler(context.Background(), target, tc.h); err != nil {
				t.Fatalf("%v %q", err, msg)
			}
			if s := <-got; s != tc.want {
				t.Errorf("the server saw %+v, want %+v", s, tc.want)
			}
		})
	}
	if dials.Load() != 2 {
		t.Errorf("Target.Dial was used %d times, want 2", dials.Load())
	}

	t.Run("the hook's host wins over the pod IP", func(t *testing.T) {
		h := httpGetHook(intstr.FromInt32(int32(port)), "/")
		h.HTTPGet.Host = host
		if msg, err := RunHandler(context.Background(), Target{PodIP: "192.0.2.1"}, h); err != nil {
			t.Fatalf("%v %q", err, msg)
		}
		<-got
	})
}

func TestRunHandlerHTTPSWithoutVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "secure") }))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	h := httpGetHook(intstr.FromInt32(int32(port)), "/")
	h.HTTPGet.Scheme = corev1.URISchemeHTTPS
	if msg, err := RunHandler(context.Background(), Target{PodIP: host}, h); err != nil || msg != "secure" {
		t.Errorf("got %v %q, want success from a self-signed server", err, msg)
	}
}

func TestRunHandlerHTTPGetConnectionRefused(t *testing.T) {
	host, port := closedPort(t)
	if msg, err := RunHandler(context.Background(), Target{PodIP: host}, httpGetHook(intstr.FromInt32(int32(port)), "/")); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("got %v %q, want connection refused", err, msg)
	}
}

// TestRunHandlerHTTPGetStopsWithContext: a preStop hook gets the rest of the grace
// period through ctx and nothing else bounds it.
func TestRunHandlerHTTPGetStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		cancel() // the grace period ends while the hook runs
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	if msg, err := RunHandler(ctx, Target{PodIP: host}, httpGetHook(intstr.FromInt32(int32(port)), "/")); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v %q, want context.Canceled", err, msg)
	}
}

func TestRunHandlerExec(t *testing.T) {
	exitWith := func(code int, stdout, stderr string) Execer {
		return execFunc(func(_ context.Context, _ string, _ []string, o, e io.Writer) (int, error) {
			io.WriteString(o, stdout)
			io.WriteString(e, stderr)
			return code, nil
		})
	}
	notRunning := errors.New("container c1 is not running")
	for _, tc := range []struct {
		name    string
		exec    Execer
		wantMsg string
		wantErr string // a substring; "" for success
		errIs   error
	}{
		{"exit 0", exitWith(0, "flushed\n", ""), "flushed\n", "", nil},
		{"exit 1", exitWith(1, "", "cannot flush\n"), "cannot flush\n", `command "drain --all" exited with code 1`, nil},
		{"output cut at 10 KiB", exitWith(3, strings.Repeat("o", 8<<10), strings.Repeat("e", 8<<10)), strings.Repeat("o", 8<<10) + strings.Repeat("e", 2<<10), "code 3", nil},
		{"runtime error", execFunc(func(context.Context, string, []string, io.Writer, io.Writer) (int, error) { return -1, notRunning }),
			"", `running command "drain --all": container c1 is not running`, notRunning},
		{"no runtime", nil, "", "no runtime", errNoRuntime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"drain", "--all"}}}
			msg, err := RunHandler(context.Background(), Target{ContainerID: "c1", Exec: tc.exec}, h)
			if msg != tc.wantMsg {
				t.Errorf("message of %d bytes %.40q, want %d bytes %.40q", len(msg), msg, len(tc.wantMsg), tc.wantMsg)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one with %q", err, tc.wantErr)
			case tc.errIs != nil && !errors.Is(err, tc.errIs):
				t.Errorf("error %v does not wrap %v", err, tc.errIs)
			}
		})
	}

	t.Run("runs the hook's command in the target container and stops with ctx", func(t *testing.T) {
		var gotID string
		var gotCmd []string
		ctx, cancel := context.WithCancel(context.Background())
		ex := execFunc(func(ctx context.Context, id string, cmd []string, _, _ io.Writer) (int, error) {
			gotID, gotCmd = id, cmd
			cancel()
			<-ctx.Done()
			return -1, ctx.Err()
		})
		h := &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 60"}}}
		_, err := RunHandler(ctx, Target{ContainerID: "abc", Exec: ex}, h)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if gotID != "abc" || strings.Join(gotCmd, "|") != "sh|-c|sleep 60" {
			t.Errorf("Exec(%q, %q), want Exec(\"abc\", [sh -c sleep 60])", gotID, gotCmd)
		}
	})
}

func TestRunHandlerSleep(t *testing.T) {
	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	sleep := func(seconds int64) *corev1.LifecycleHandler {
		return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}
	}
	run := func(ctx context.Context, clock Clock, h *corev1.LifecycleHandler) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := runHandler(ctx, Target{}, h, clock)
			done <- err
		}()
		return done
	}
	deadline := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("waits the whole time", func(t *testing.T) {
		clock := NewFakeClock(start)
		done := run(context.Background(), clock, sleep(5))
		if err := clock.BlockUntil(deadline(t), 1); err != nil {
			t.Fatal("the hook did not wait on the clock")
		}
		if w := clock.Waiters(); w[0] != start.Add(5*time.Second) {
			t.Errorf("it waits until %v, want %v", w[0], start.Add(5*time.Second))
		}
		clock.Step(5*time.Second - 1)
		if n := len(clock.Waiters()); n != 1 {
			t.Fatalf("%d timers pending 1 ns before the 5 s were up, want the hook's", n)
		}
		clock.Step(1)
		if err := <-done; err != nil {
			t.Errorf("error %v, want none", err)
		}
	})
	t.Run("interrupted by ctx", func(t *testing.T) {
		clock := NewFakeClock(start)
		ctx, cancel := context.WithCancel(context.Background())
		done := run(ctx, clock, sleep(30))
		if err := clock.BlockUntil(deadline(t), 1); err != nil {
			t.Fatal("the hook did not wait on the clock")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "sleep of 30s interrupted") {
			t.Errorf("error %v, want the interrupted sleep with context.Canceled", err)
		}
		if err := clock.BlockUntil(deadline(t), 0); err != nil {
			t.Error("the hook left its timer behind")
		}
	})
	t.Run("zero seconds", func(t *testing.T) {
		if _, err := runHandler(context.Background(), Target{}, sleep(0), NewFakeClock(start)); err != nil {
			t.Errorf("error %v, want none", err)
		}
	})
}

func TestRunHandlerWithoutAction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       *corev1.LifecycleHandler
		wantErr string
	}{
		{"nil", nil, "not set"},
		{"no action", &corev1.LifecycleHandler{}, "no exec, httpGet or sleep action"},
		{"tcpSocket", &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, "tcpSocket is not supported"},
	} {
		if _, err := RunHandler(context.Background(), Target{PodIP: "127.0.0.1"}, tc.h); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.wantErr)
		}
	}
}
