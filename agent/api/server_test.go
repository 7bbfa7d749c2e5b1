package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
)

func pod(namespace, name, uid string, phase corev1.PodPhase) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid)},
		Status:     corev1.PodStatus{Phase: phase, PodIP: "10.77.0.5"},
	}
}

func TestPods(t *testing.T) {
	ts := newTestServer(t)
	web, db := pod("default", "web", "uid-web", corev1.PodRunning), pod("kube-system", "db", "uid-db", corev1.PodPending)
	ts.f.SetPods(web, db)
	ctx := testCtx(t)

	code, body := ts.do(t, http.MethodGet, api.PathPods, "", "")
	list := decode[corev1.PodList](t, "GET pods", code, body)
	if list.Kind != "PodList" || list.APIVersion != "v1" || !reflect.DeepEqual(list.Items, []corev1.Pod{web, db}) {
		t.Errorf("GET pods = %+v, want a v1 PodList of web and db", list)
	}
	pods, err := ts.c.Pods(ctx)
	if err != nil || !reflect.DeepEqual(pods, []corev1.Pod{web, db}) {
		t.Errorf("client Pods = %v, %v; want web and db", pods, err)
	}

	got, err := ts.c.Pod(ctx, "kube-system", "db")
	if err != nil || !reflect.DeepEqual(*got, db) {
		t.Errorf("client Pod(kube-system/db) = %v, %v; want db", got, err)
	}
	// A pod's name is looked up in its namespace only.
	_, err = ts.c.Pod(ctx, "default", "db")
	if !errors.Is(err, api.ErrNotFound) || api.CleanMessage(err) != `pods "db" not found` {
		t.Errorf("client Pod(default/db) error %v, want ErrNotFound saying pods \"db\" not found", err)
	}
	code, body = ts.do(t, http.MethodGet, "/api/v1/namespaces/default/pods/db", "", "")
	wantFailure(t, "GET default/db", code, body, http.StatusNotFound, "NotFound", `pods "db" not found`)
}

func TestEvents(t *testing.T) {
	ts := newTestServer(t)
	ev := corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web.1", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web", UID: "uid-web"},
		Reason:         "Started", Message: "Started container app", Type: corev1.EventTypeNormal, Count: 1,
	}
	ts.f.EventList = []corev1.Event{ev}
	ctx := testCtx(t)

	evs, err := ts.c.Events(ctx, "")
	if err != nil || !reflect.DeepEqual(evs, []corev1.Event{ev}) {
		t.Errorf("client Events = %v, %v; want the event", evs, err)
	}
	if _, err := ts.c.Events(ctx, "uid-web"); err != nil {
		t.Fatal(err)
	}
	code, body := ts.do(t, http.MethodGet, api.PathEvents+"?uid=uid-db", "", "")
	if list := decode[corev1.EventList](t, "GET events", code, body); list.Kind != "EventList" || list.APIVersion != "v1" {
		t.Errorf("GET events = %+v, want a v1 EventList", list)
	}
	// Without ?uid every event; with it those of one object, which the backend selects.
	wantCalls(t, ts.f, []apitest.Call{call("Events", types.UID("")), call("Events", types.UID("uid-web")), call("Events", types.UID("uid-db"))})
}

func TestInfoAndVersion(t *testing.T) {
	ts := newTestServer(t)
	ts.f.InfoValue = api.Info{
		ServerVersion: "v1.2.3", NodeName: "node-1", MonitorProtocol: "agentd-monitor/2.1", LiveRestoreEnabled: false,
		LiveRestoreDisabledReason: "cluster mode is on", Pods: 3, Warnings: []string{"storage-driver changed"},
		Cluster: api.ClusterStatus{InCluster: true, ClusterID: "c1"},
	}
	ctx := testCtx(t)
	info, err := ts.c.Info(ctx)
	if err != nil || !reflect.DeepEqual(*info, ts.f.InfoValue) {
		t.Errorf("client Info = %+v, %v; want %+v", info, err, ts.f.InfoValue)
	}
	v, err := ts.c.Version(ctx)
	want := api.Version{Version: "v1.2.3", MonitorProtocol: "agentd-monitor/2.1", GoVersion: runtime.Version()}
	if err != nil || *v != want {
		t.Errorf("client Version = %+v, %v; want %+v", v, err, want)
	}
	// The version alone does not gather the rest of Info (agentd reads its image store for it).
	wantCalls(t, ts.f, []apitest.Call{call("Info"), call("ServerVersion")})
}

func TestImages(t *testing.T) {
	ts := newTestServer(t)
	img := api.Image{ID: "sha256:abc", Names: []string{"busybox:latest"}, Size: 4 << 20}
	ts.f.ImageList = []api.Image{img}
	ctx := testCtx(t)

	imgs, err := ts.c.Images(ctx)
	if err != nil || !reflect.DeepEqual(imgs, []api.Image{img}) {
		t.Errorf("client Images = %v, %v; want busybox", imgs, err)
	}
	imgs, err = ts.c.ImportImage(ctx, "/srv/busybox.tar")
	if err != nil || !reflect.DeepEqual(imgs, []api.Image{img}) {
		t.Errorf("client ImportImage = %v, %v; want busybox", imgs, err)
	}
	wantCalls(t, ts.f, []apitest.Call{call("Images"), call("ImportImage", "/srv/busybox.tar")})

	// The path is one on agentd's host: a relative one would be resolved against agentd's directory.
	for _, q := range []string{"", "?path=", "?path=busybox.tar", "?path=./busybox.tar"} {
		code, body := ts.do(t, http.MethodPost, api.PathImages+"/import"+q, "", "")
		wantFailure(t, "import "+q, code, body, http.StatusBadRequest, "BadRequest", "import needs an absolute path")
	}
	if _, err := ts.c.ImportImage(ctx, "busybox.tar"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("client ImportImage(relative) error %v, want ErrBadRequest", err)
	}
	wantCalls(t, ts.f, []apitest.Call{call("ImportImage", "/srv/busybox.tar")}, "ImportImage")

	// An import fails because of its archive: every failure is the request's, whatever its class.
	ts.f.Lock()
	ts.f.Err["ImportImage"] = errors.New("open /srv/busybox.tar: no such file or directory")
	ts.f.Unlock()
	_, err = ts.c.ImportImage(ctx, "/srv/busybox.tar")
	if !errors.Is(err, api.ErrBadRequest) || api.CleanMessage(err) != "open /srv/busybox.tar: no such file or directory" {
		t.Errorf("client ImportImage of a missing file: %v, want ErrBadRequest with the backend's message", err)
	}
}

func TestDeleteUnmanaged(t *testing.T) {
	ts := newTestServer(t)
	ctx := testCtx(t)
	if err := ts.c.DeleteUnmanaged(ctx, "default", "old"); err != nil {
		t.Fatal(err)
	}
	code, body := ts.do(t, http.MethodDelete, "/api/v1/namespaces/kube-system/pods/old2?unmanaged=true", "", "")
	if st := decode[api.Status](t, "DELETE unmanaged", code, body); st.Status != "Success" || st.Message != "pod old2 deleted" {
		t.Errorf("DELETE unmanaged = %+v, want Success", st)
	}
	// Static pods go with their manifest files: the API deletes only unmanaged ones, and says so.
	for _, q := range []string{"", "?unmanaged=false"} {
		code, body := ts.do(t, http.MethodDelete, "/api/v1/namespaces/default/pods/web"+q, "", "")
		wantFailure(t, "DELETE "+q, code, body, http.StatusBadRequest, "BadRequest", "delete a pod by removing its manifest file")
	}
	wantCalls(t, ts.f, []apitest.Call{call("DeleteUnmanaged", "default", "old"), call("DeleteUnmanaged", "kube-system", "old2")})

	ts.f.Lock()
	ts.f.Err["DeleteUnmanaged"] = fmt.Errorf("%w: pod %q is not unmanaged", api.ErrConflict, "web")
	ts.f.Unlock()
	if err := ts.c.DeleteUnmanaged(ctx, "default", "web"); !errors.Is(err, api.ErrConflict) ||
		api.CleanMessage(err) != `pod "web" is not unmanaged` {
		t.Errorf("DeleteUnmanaged of a managed pod: %v, want ErrConflict with the backend's message", err)
	}
}

// TestErrorClasses: each class of backend error becomes its HTTP status on every route that can fail, and the
// client turns the status back into the class with the backend's message; any other error is a 500 with its message.
func TestErrorClasses(t *testing.T) {
	ctx := testCtx(t)
	routes := []struct {
		method string
		call   func(c *api.Client) error
	}{
		{"Images", func(c *api.Client) error { _, err := c.Images(ctx); return err }},
		{"LogFile", func(c *api.Client) error {
			return c.Logs(ctx, "default", "web", api.LogOptions{TailLines: -1}, io.Discard)
		}},
		{"DeleteUnmanaged", func(c *api.Client) error { return c.DeleteUnmanaged(ctx, "default", "web") }},
		{"ClusterInit", func(c *api.Client) error { _, err := c.ClusterInit(ctx, api.ClusterInitRequest{}); return err }},
		{"ClusterJoin", func(c *api.Client) error { _, err := c.ClusterJoin(ctx, api.ClusterJoinRequest{}); return err }},
		{"ClusterLeave", func(c *api.Client) error { return c.ClusterLeave(ctx, false) }},
		{"Nodes", func(c *api.Client) error { _, err := c.Nodes(ctx); return err }},
		{"DeleteNode", func(c *api.Client) error { return c.DeleteNode(ctx, "node-2", false) }},
		{"ApplyDaemonSet", func(c *api.Client) error { _, err := c.ApplyDaemonSet(ctx, []byte("kind: DaemonSet")); return err }},
		{"DaemonSets", func(c *api.Client) error { _, err := c.DaemonSets(ctx); return err }},
		{"DeleteDaemonSet", func(c *api.Client) error { return c.DeleteDaemonSet(ctx, "default", "ds") }},
		{"CreateToken", func(c *api.Client) error { _, err := c.CreateToken(ctx, api.TokenRequest{}); return err }},
		{"Tokens", func(c *api.Client) error { _, err := c.Tokens(ctx); return err }},
		{"DeleteToken", func(c *api.Client) error { return c.DeleteToken(ctx, "abcdef") }},
		{"Certs", func(c *api.Client) error { _, err := c.Certs(ctx); return err }},
	}
	classes := []struct {
		class  error // nil: an unclassified error
		code   int
		reason string
	}{
		{api.ErrNotFound, http.StatusNotFound, "NotFound"},
		{api.ErrBadRequest, http.StatusBadRequest, "BadRequest"},
		{api.ErrConflict, http.StatusConflict, "Conflict"},
		{api.ErrForbidden, http.StatusForbidden, "Forbidden"},
		{api.ErrUnavailable, http.StatusServiceUnavailable, "ServiceUnavailable"},
		{nil, http.StatusInternalServerError, "InternalError"},
	}
	allClasses := []error{api.ErrNotFound, api.ErrBadRequest, api.ErrConflict, api.ErrForbidden, api.ErrUnavailable}
	ts := newTestServer(t)
	for _, r := range routes {
		for _, cl := range classes {
			name := "unclassified"
			backendErr := fmt.Errorf("%s failed in the backend", r.method)
			if cl.class != nil {
				name = cl.reason
				// Wrapped further, as a backend does: the class is found with errors.Is.
				backendErr = fmt.Errorf("node-1: %w", fmt.Errorf("%w: %s failed in the backend", cl.class, r.method))
			}
			ts.f.Lock()
			ts.f.Err = map[string]error{r.method: backendErr}
			ts.f.Unlock()
			err := r.call(ts.c)
			for _, other := range allClasses {
				if is := errors.Is(err, other); is != (other == cl.class) {
					t.Errorf("%s, %s error: client error %v: errors.Is(%v) = %v", r.method, name, err, other, is)
				}
			}
			if err == nil || !strings.Contains(err.Error(), r.method+" failed in the backend") {
				t.Errorf("%s, %s error: client error %v, want the backend's message", r.method, name, err)
			}
		}
	}

	// The answer itself: a Kubernetes Status with the code, a reason and the message without its class prefix.
	for _, cl := range classes {
		backendErr := errors.New("nodes are unknown here")
		if cl.class != nil {
			backendErr = fmt.Errorf("%w: nodes are unknown here", cl.class)
		}
		ts.f.Lock()
		ts.f.Err = map[string]error{"Nodes": backendErr}
		ts.f.Unlock()
		code, body := ts.do(t, http.MethodGet, api.PathNodes, "", "")
		wantFailure(t, "GET nodes, "+cl.reason, code, body, cl.code, cl.reason, "nodes are unknown here")
		if st := decodeStatus(t, body); st.Message != "nodes are unknown here" {
			t.Errorf("GET nodes, %s: message %q, want it without its class prefix", cl.reason, st.Message)
		}
	}
}

func TestCleanMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: pod %q not found", api.ErrNotFound, "web"), `pod "web" not found`},
		{fmt.Errorf("%w: bad ttl", api.ErrBadRequest), "bad ttl"},
		{fmt.Errorf("%w: etcd is down", api.ErrUnavailable), "etcd is down"},
		{fmt.Errorf("%w: no admin credential", api.ErrForbidden), "no admin credential"},
		{fmt.Errorf("%w: exists", api.ErrConflict), "exists"},
		// Only a leading class is taken off; one inside the message is part of it.
		{fmt.Errorf("join: %w: token", api.ErrForbidden), "join: forbidden: token"},
		{api.ErrNotFound, "not found"},
		{errors.New("disk full"), "disk full"},
	} {
		if got := api.CleanMessage(tc.err); got != tc.want {
			t.Errorf("CleanMessage(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestUnknownRoute: a path or method the server does not serve reaches no backend method.
func TestUnknownRoute(t *testing.T) {
	ts := newTestServer(t)
	code, _ := ts.do(t, http.MethodGet, "/api/v1/nothing", "", "")
	if code != http.StatusNotFound {
		t.Errorf("GET /api/v1/nothing: %d, want 404", code)
	}
	code, _ = ts.do(t, http.MethodPut, api.PathPods, "", "")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("PUT pods: %d, want 405", code)
	}
	if len(ts.f.Calls()) != 0 {
		t.Errorf("the backend was called: %v", ts.f.Calls())
	}
}

// A pull answers with a stream: one JSON object per line, the progress first
// (a layer's repeated byte counts thinned out, every status change kept), then
// the result, or an error with its class.
func TestPullImageStream(t *testing.T) {
	ts := newTestServer(t)
	ctx := testCtx(t)
	layer := "sha256:" + strings.Repeat("1", 64)
	ts.f.Lock()
	ts.f.PullProgressList = []api.PullProgress{
		{Status: "Resolving"},
		{Layer: layer, Status: "Downloading", Done: 0, Total: 300},
		{Layer: layer, Status: "Downloading", Done: 100, Total: 300}, // within 100ms of the last: dropped
		{Layer: layer, Status: "Pull complete", Done: 300, Total: 300},
	}
	res := &api.PullResult{Image: api.Image{ID: "sha256:abc", Names: []string{"registry.example/app:1", "registry.example/app@sha256:def"}, Size: 300}, Digest: "sha256:def"}
	ts.f.PullResultValue = res
	ts.f.Unlock()

	code, body := ts.do(t, http.MethodPost, api.PathImages+"/pull?ref=registry.example/app:1", "", "")
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if code != http.StatusOK || len(lines) != 4 {
		t.Fatalf("pull: %d, %d lines:\n%s", code, len(lines), body)
	}
	var last api.PullEvent
	if err := json.Unmarshal([]byte(lines[3]), &last); err != nil || last.Result == nil || !reflect.DeepEqual(last.Result, res) {
		t.Errorf("last line %s: %v", lines[3], err)
	}

	var got []api.PullProgress
	r, err := ts.c.PullImage(ctx, "registry.example/app:1", func(p api.PullProgress) { got = append(got, p) })
	if err != nil || !reflect.DeepEqual(r, res) || len(got) != 3 || got[2].Status != "Pull complete" {
		t.Errorf("client PullImage = %+v, %v; progress %+v", r, err, got)
	}
	wantCalls(t, ts.f, []apitest.Call{call("PullImage", "registry.example/app:1"), call("PullImage", "registry.example/app:1")}, "PullImage")

	code, body = ts.do(t, http.MethodPost, api.PathImages+"/pull", "", "")
	wantFailure(t, "pull without ref", code, body, http.StatusBadRequest, "BadRequest", "pull needs an image reference")

	ts.f.Lock()
	ts.f.Err["PullImage"] = errors.New("pull registry.example/app:1: unauthorized: authentication required")
	ts.f.Unlock()
	if _, err := ts.c.PullImage(ctx, "registry.example/app:1", nil); err == nil || err.Error() != "pull registry.example/app:1: unauthorized: authentication required" {
		t.Errorf("client PullImage of a failing pull: %v", err)
	}
	ts.f.Lock()
	ts.f.Err["PullImage"] = fmt.Errorf("%w: invalid image reference", api.ErrBadRequest)
	ts.f.Unlock()
	if _, err := ts.c.PullImage(ctx, "UPPER", nil); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("client PullImage of a bad reference: %v, want ErrBadRequest", err)
	}
}
