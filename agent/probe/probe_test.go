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

// hostPort splits a test server's address.
func hostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

func httpGetProbe(port intstr.IntOrString, path string, headers ...corev1.HTTPHeader) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: port, Scheme: corev1.URISchemeHTTP, HTTPHeaders: headers,
		}},
		TimeoutSeconds: 5,
	}
}

func TestHTTPGet(t *testing.T) {
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		otherHits.Add(1)
		fmt.Fprint(w, "other")
	}))
	t.Cleanup(other.Close)
	_, otherPort := hostPort(t, other.Listener.Addr().String())

	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "fine") })
	mux.HandleFunc("/created", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/to-ok", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/to-fail", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/to-other-host", func(w http.ResponseWriter, r *http.Request) {
		// Same machine, another host name: kubelet does not follow it.
		http.Redirect(w, r, "http://localhost:"+strconv.Itoa(otherPort)+"/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, strings.Repeat("x", 20<<10)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	target := Target{ContainerID: "c1", PodIP: host, Container: &corev1.Container{Name: "web"}}

	for _, tc := range []struct {
		path    string
		want    Result
		wantMsg string // a substring
	}{
		{"/ok", Success, "fine"},
		{"/created", Success, ""},
		{"/fail", Failure, "HTTP probe failed with statuscode: 500"},
		{"/missing", Failure, "HTTP probe failed with statuscode: 404"},
		{"/to-ok", Success, "fine"},
		{"/to-fail", Failure, "HTTP probe failed with statuscode: 500"},
		{"/to-other-host", Success, "Probe terminated redirects"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, msg := Probe(context.Background(), Readiness, httpGetProbe(intstr.FromInt32(int32(port)), tc.path), target)
			if got != tc.want || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("GET %s = %v %q, want %v with %q", tc.path, got, msg, tc.want, tc.wantMsg)
			}
		})
	}
	if n := otherHits.Load(); n != 0 {
		t.Errorf("the redirect to another host was followed (%d requests)", n)
	}

	t.Run("body is cut at 10 KiB", func(t *testing.T) {
		got, msg := Probe(context.Background(), Liveness, httpGetProbe(intstr.FromInt32(int32(port)), "/big"), target)
		if got != Success || len(msg) != 10<<10 {
			t.Errorf("got %v with a %d-byte message, want Success with 10240 bytes", got, len(msg))
		}
	})
}

func TestHTTPGetTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close, which waits for handlers
	host, port := hostPort(t, srv.Listener.Addr().String())

	start := time.Now()
	got, msg := runProbe(context.Background(), Liveness, httpGetProbe(intstr.FromInt32(int32(port)), "/"),
		Target{PodIP: host}, 100*time.Millisecond)
	if got != Failure || !strings.Contains(msg, "timed out after 100ms") {
		t.Errorf("a server slower than the timeout: got %v %q, want Failure naming the timeout", got, msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the probe took %v with a 100ms timeout", d)
	}
}

func TestHTTPGetRequest(t *testing.T) {
	type seen struct {
		host, userAgent, accept, custom, path string
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.UserAgent(), r.Header.Get("Accept"), r.Header.Get("X-Custom"), r.URL.RequestURI()}
	}))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())

	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	container := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{
		{Name: "metrics", ContainerPort: 1}, {Name: "http", ContainerPort: int32(port)},
	}}
	target := Target{PodIP: host, Container: container, Dial: dial}

	t.Run("defaults", func(t *testing.T) {
		p := httpGetProbe(intstr.FromString("http"), "/healthz?full=1")
		if r, msg := Probe(context.Background(), Readiness, p, target); r != Success {
			t.Fatalf("got %v %q", r, msg)
		}
		want := seen{net.JoinHostPort(host, strconv.Itoa(port)), UserAgent, "*/*", "", "/healthz?full=1"}
		if s := <-got; s != want {
			t.Errorf("the server saw %+v, want %+v", s, want)
		}
		if dials.Load() != 1 {
			t.Errorf("Target.Dial was used %d times, want 1", dials.Load())
		}
	})
	t.Run("headers override", func(t *testing.T) {
		p := httpGetProbe(intstr.FromInt32(int32(port)), "",
			corev1.HTTPHeader{Name: "Host", Value: "app.example"},
			corev1.HTTPHeader{Name: "User-Agent", Value: "mine/2"},
			corev1.HTTPHeader{Name: "Accept", Value: ""},
			corev1.HTTPHeader{Name: "x-custom", Value: "yes"})
		if r, msg := Probe(context.Background(), Readiness, p, target); r != Success {
			t.Fatalf("got %v %q", r, msg)
		}
		want := seen{"app.example", "mine/2", "", "yes", "/"}
		if s := <-got; s != want {
			t.Errorf("the server saw %+v, want %+v", s, want)
		}
	})
	t.Run("the probe's host wins over the pod IP", func(t *testing.T) {
		p := httpGetProbe(intstr.FromInt32(int32(port)), "/")
		p.HTTPGet.Host = host
		if r, msg := Probe(context.Background(), Readiness, p, Target{PodIP: "192.0.2.1", Dial: dial}); r != Success {
			t.Fatalf("got %v %q", r, msg)
		}
		<-got
	})
	t.Run("unknown port name", func(t *testing.T) {
		p := httpGetProbe(intstr.FromString("admin"), "/")
		r, msg := Probe(context.Background(), Readiness, p, target)
		if r != Unknown || !strings.Contains(msg, `port "admin"`) || !strings.Contains(msg, `"http"`) {
			t.Errorf("got %v %q, want Unknown (kubelet: the probe errored) naming the port and the container's port names", r, msg)
		}
	})
	t.Run("no pod IP", func(t *testing.T) {
		p := httpGetProbe(intstr.FromInt32(int32(port)), "/")
		if r, msg := Probe(context.Background(), Readiness, p, Target{}); r != Unknown {
			t.Errorf("got %v %q, want Unknown: there is nothing to probe yet", r, msg)
		}
	})
}

func TestHTTPSWithoutVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "secure") }))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	p := httpGetProbe(intstr.FromInt32(int32(port)), "/")
	p.HTTPGet.Scheme = corev1.URISchemeHTTPS
	if r, msg := Probe(context.Background(), Liveness, p, Target{PodIP: host}); r != Success || msg != "secure" {
		t.Errorf("got %v %q, want Success from a self-signed server", r, msg)
	}
}

func TestHTTPGetConnectionRefused(t *testing.T) {
	host, port := closedPort(t)
	r, msg := Probe(context.Background(), Liveness, httpGetProbe(intstr.FromInt32(int32(port)), "/"), Target{PodIP: host})
	if r != Failure || !strings.Contains(msg, "refused") {
		t.Errorf("got %v %q, want Failure: connection refused", r, msg)
	}
}

// closedPort returns a loopback port nothing listens on (any more).
func closedPort(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, l.Addr().String())
	l.Close()
	return host, port
}

func tcpProbe(port intstr.IntOrString) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}, TimeoutSeconds: 5}
}

func TestTCPSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	host, port := hostPort(t, l.Addr().String())
	container := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "db", ContainerPort: int32(port)}}}

	if r, msg := Probe(context.Background(), Readiness, tcpProbe(intstr.FromInt32(int32(port))), Target{PodIP: host}); r != Success {
		t.Errorf("open port: got %v %q, want Success", r, msg)
	}
	if r, msg := Probe(context.Background(), Readiness, tcpProbe(intstr.FromString("db")), Target{PodIP: host, Container: container}); r != Success {
		t.Errorf("open named port: got %v %q, want Success", r, msg)
	}
	if r, msg := Probe(context.Background(), Readiness, tcpProbe(intstr.FromString("web")), Target{PodIP: host, Container: container}); r != Unknown || !strings.Contains(msg, `"web"`) {
		t.Errorf("unknown port name: got %v %q, want Unknown (kubelet: the probe errored) naming it", r, msg)
	}
	host, port = closedPort(t)
	if r, msg := Probe(context.Background(), Readiness, tcpProbe(intstr.FromInt32(int32(port))), Target{PodIP: host}); r != Failure || !strings.Contains(msg, "refused") {
		t.Errorf("closed port: got %v %q, want Failure: connection refused", r, msg)
	}
}

// execFunc is an Execer made of a function.
type execFunc func(ctx context.Context, containerID string, cmd []string, stdout, stderr io.Writer) (int, error)

func (f execFunc) Exec(ctx context.Context, containerID string, cmd []string, stdout, stderr io.Writer) (int, error) {
	return f(ctx, containerID, cmd, stdout, stderr)
}

func TestExec(t *testing.T) {
	exitWith := func(code int, stdout, stderr string) Execer {
		return execFunc(func(_ context.Context, _ string, _ []string, o, e io.Writer) (int, error) {
			io.WriteString(o, stdout)
			io.WriteString(e, stderr)
			return code, nil
		})
	}
	blocks := execFunc(func(ctx context.Context, _ string, _ []string, _, _ io.Writer) (int, error) {
		<-ctx.Done()
		return -1, ctx.Err()
	})
	cannotRun := execFunc(func(context.Context, string, []string, io.Writer, io.Writer) (int, error) {
		return -1, errors.New("container c1 is not running")
	})
	for _, tc := range []struct {
		name    string
		exec    Execer
		want    Result
		wantMsg string
	}{
		{"exit 0", exitWith(0, "all good\n", ""), Success, "all good\n"},
		{"exit 1", exitWith(1, "", "db unreachable\n"), Failure, "db unreachable\n"},
		{"exit 2 silently", exitWith(2, "", ""), Failure, `command "check --deep" exited with code 2`},
		{"output cut at 10 KiB", exitWith(1, strings.Repeat("o", 8<<10), strings.Repeat("e", 8<<10)), Failure, strings.Repeat("o", 8<<10) + strings.Repeat("e", 2<<10)},
		{"timeout", blocks, Failure, `command "check --deep" timed out after 50ms`},
		{"runtime error", cannotRun, Unknown, "container c1 is not running"},
		{"no runtime", nil, Unknown, "no runtime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check", "--deep"}}}}
			got, msg := runProbe(context.Background(), Liveness, p, Target{ContainerID: "c1", Exec: tc.exec}, 50*time.Millisecond)
			if got != tc.want || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("got %v %q, want %v with %q", got, msg, tc.want, tc.wantMsg)
			}
			if strings.HasPrefix(tc.name, "output cut") && len(msg) != 10<<10 {
				t.Errorf("message of %d bytes, want 10240", len(msg))
			}
		})
	}

	t.Run("runs the probe's command in the target container", func(t *testing.T) {
		var gotID string
		var gotCmd []string
		ex := execFunc(func(_ context.Context, id string, cmd []string, _, _ io.Writer) (int, error) {
			gotID, gotCmd = id, cmd
			return 0, nil
		})
		p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}}}
		if r, _ := Probe(context.Background(), Liveness, p, Target{ContainerID: "abc", Exec: ex}); r != Success {
			t.Fatalf("got %v", r)
		}
		if gotID != "abc" || strings.Join(gotCmd, " ") != "cat /tmp/healthy" {
			t.Errorf("Exec(%q, %q), want Exec(\"abc\", [cat /tmp/healthy])", gotID, gotCmd)
		}
	})
}

func TestCallerCancelIsUnknown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ex := execFunc(func(ctx context.Context, _ string, _ []string, _, _ io.Writer) (int, error) {
		cancel()
		<-ctx.Done()
		return -1, ctx.Err()
	})
	p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	if r, msg := Probe(ctx, Liveness, p, Target{Exec: ex}); r != Unknown {
		t.Errorf("got %v %q, want Unknown: the agent stopping says nothing about the container", r, msg)
	}
}

func TestProbeWithoutAction(t *testing.T) {
	for name, p := range map[string]*corev1.Probe{
		"nil":       nil,
		"no action": {},
	} {
		if r, msg := Probe(context.Background(), Startup, p, Target{}); r != Unknown || !strings.Contains(msg, "Startup probe") {
			t.Errorf("%s: got %v %q, want Unknown naming the probe", name, r, msg)
		}
	}
}

func TestTimeoutOf(t *testing.T) {
	for _, tc := range []struct {
		seconds int32
		want    time.Duration
	}{{0, time.Second}, {-1, time.Second}, {1, time.Second}, {7, 7 * time.Second}} {
		if got := timeoutOf(&corev1.Probe{TimeoutSeconds: tc.seconds}); got != tc.want {
			t.Errorf("timeoutSeconds %d: %v, want %v", tc.seconds, got, tc.want)
		}
	}
}

func TestResolvePort(t *testing.T) {
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9090}}}
	for _, tc := range []struct {
		name    string
		port    intstr.IntOrString
		c       *corev1.Container
		want    int
		wantErr string
	}{
		{"number", intstr.FromInt32(80), c, 80, ""},
		{"name", intstr.FromString("http"), c, 8080, ""},
		{"number as a string", intstr.FromString("9090"), c, 9090, ""},
		{"unknown name", intstr.FromString("grpc"), c, 0, `port "grpc" is not a port number nor the name of one of the container's ports (named: "http")`},
		{"name without a container", intstr.FromString("http"), nil, 0, "it names none"},
		{"zero", intstr.FromInt32(0), c, 0, "port 0 is not between 1 and 65535"},
		{"too big", intstr.FromInt32(70000), c, 0, "port 70000 is not between 1 and 65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolvePort(tc.port, tc.c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
