package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestHTTPGetURL(t *testing.T) {
	web := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	pod := Target{PodIP: "10.77.0.5", Container: web}
	for _, tc := range []struct {
		name    string
		action  corev1.HTTPGetAction
		target  Target
		want    string
		wantErr string
	}{
		{"pod IP and number", corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}, pod, "http://10.77.0.5:8080/healthz", ""},
		{"named port", corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}, pod, "http://10.77.0.5:8080/healthz", ""},
		{"number as a string", corev1.HTTPGetAction{Port: intstr.FromString("9090")}, pod, "http://10.77.0.5:9090", ""},
		{"no path", corev1.HTTPGetAction{Port: intstr.FromInt32(80)}, pod, "http://10.77.0.5:80", ""},
		{"query kept", corev1.HTTPGetAction{Path: "/a?b=c", Port: intstr.FromInt32(80)}, pod, "http://10.77.0.5:80/a?b=c", ""},
		{"https", corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(443), Scheme: corev1.URISchemeHTTPS}, pod, "https://10.77.0.5:443/", ""},
		{"scheme in lower case", corev1.HTTPGetAction{Port: intstr.FromInt32(443), Scheme: "https"}, pod, "https://10.77.0.5:443", ""},
		{"the action's host wins", corev1.HTTPGetAction{Host: "192.0.2.7", Port: intstr.FromInt32(80)}, pod, "http://192.0.2.7:80", ""},
		{"host without a pod IP", corev1.HTTPGetAction{Host: "192.0.2.7", Port: intstr.FromInt32(80)}, Target{}, "http://192.0.2.7:80", ""},
		{"IPv6", corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}, Target{PodIP: "fd00::5"}, "http://[fd00::5]:80/", ""},
		{"a path that does not parse is kept", corev1.HTTPGetAction{Path: "/%zz", Port: intstr.FromInt32(80)}, pod, "http://10.77.0.5:80/%25zz", ""},
		{"unknown port name", corev1.HTTPGetAction{Port: intstr.FromString("admin")}, pod, "", `port "admin" is not a port number nor the name of one of the container's ports (named: "http")`},
		{"port out of range", corev1.HTTPGetAction{Port: intstr.FromInt32(0)}, pod, "", "port 0 is not between 1 and 65535"},
		{"no pod IP", corev1.HTTPGetAction{Port: intstr.FromInt32(80)}, Target{Container: web}, "", errNoHost.Error()},
		{"a wrong port is reported before a missing IP", corev1.HTTPGetAction{Port: intstr.FromString("admin")}, Target{Container: web}, "", `port "admin"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := httpGetURL(&tc.action, tc.target)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, %v; want an error with %q", u, err, tc.wantErr)
				}
				return
			}
			if err != nil || u.String() != tc.want {
				t.Errorf("got %v, %v; want %s", u, err, tc.want)
			}
		})
	}
}

func TestRequestHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		list []corev1.HTTPHeader
		want http.Header
	}{
		{"defaults", nil, http.Header{"User-Agent": {"ua/1"}, "Accept": {"*/*"}}},
		{"own user agent and accept", []corev1.HTTPHeader{{Name: "user-agent", Value: "mine"}, {Name: "Accept", Value: "text/plain"}},
			http.Header{"User-Agent": {"mine"}, "Accept": {"text/plain"}}},
		{"empty accept removes it", []corev1.HTTPHeader{{Name: "Accept", Value: ""}}, http.Header{"User-Agent": {"ua/1"}}},
		{"repeated header", []corev1.HTTPHeader{{Name: "X-A", Value: "1"}, {Name: "x-a", Value: "2"}},
			http.Header{"User-Agent": {"ua/1"}, "Accept": {"*/*"}, "X-A": {"1", "2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := requestHeaders(tc.list, "ua/1"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("headers %v, want %v", got, tc.want)
			}
		})
	}
}

// TestProbeAndHookSendTheSameRequest: an httpGet probe and an httpGet hook with the
// same action reach the same address with the same request, but for the User-Agent.
func TestProbeAndHookSendTheSameRequest(t *testing.T) {
	type seen struct{ host, uri, accept, custom, userAgent string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.URL.RequestURI(), r.Header.Get("Accept"), r.Header.Get("X-Custom"), r.UserAgent()}
	}))
	t.Cleanup(srv.Close)
	host, port := hostPort(t, srv.Listener.Addr().String())
	c := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	target := Target{PodIP: host, Container: c}

	for _, a := range []corev1.HTTPGetAction{
		{Path: "/healthz?x=1", Port: intstr.FromString("http")},
		{Path: "/", Port: intstr.FromString(strconv.Itoa(port)), HTTPHeaders: []corev1.HTTPHeader{{Name: "Host", Value: "app.example"}, {Name: "X-Custom", Value: "y"}}},
	} {
		if r, msg := Probe(context.Background(), Readiness, &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &a}, TimeoutSeconds: 5}, target); r != Success {
			t.Fatalf("probe %s: %v %q", a.Path, r, msg)
		}
		fromProbe := <-got
		if msg, err := RunHandler(context.Background(), target, &corev1.LifecycleHandler{HTTPGet: &a}); err != nil {
			t.Fatalf("hook %s: %v %q", a.Path, err, msg)
		}
		fromHook := <-got
		if fromProbe.userAgent != UserAgent || fromHook.userAgent != HookUserAgent {
			t.Errorf("%s: user agents %q and %q, want %q and %q", a.Path, fromProbe.userAgent, fromHook.userAgent, UserAgent, HookUserAgent)
		}
		fromProbe.userAgent, fromHook.userAgent = "", ""
		if fromProbe != fromHook {
			t.Errorf("%s: the probe sent %+v, the hook %+v", a.Path, fromProbe, fromHook)
		}
	}
}
