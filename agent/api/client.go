package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Client talks to agentd's API socket. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// ErrUnreachable is returned when agentd does not answer on its socket.
var ErrUnreachable = errors.New("cannot connect to agentd")

// ErrConnectionLost is returned when agentd accepted a request and the
// connection broke before its answer (agentd stopped or crashed meanwhile):
// the request may have been carried out in part, so it is not ErrUnreachable,
// which callers take as "agentd is not running" and act without it.
var ErrConnectionLost = errors.New("lost the connection to agentd")

func (c *Client) unreachable(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w at %s: is it running? (%v)", ErrUnreachable, c.socket, err)
	}
	return fmt.Errorf("%w at %s before it answered; did it stop? (%v)", ErrConnectionLost, c.socket, err)
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	return c.request(ctx, http.MethodGet, path, q, "", nil)
}

// request makes a request (body may be nil); an answer other than 2xx is an error.
func (c *Client) request(ctx context.Context, method, path string, q url.Values, contentType string, body io.Reader) (*http.Response, error) {
	u := "http://agentd" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

func statusError(resp *http.Response) error {
	var st Status
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return classError(resp.StatusCode, st.Message)
	}
	return fmt.Errorf("agentd answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// classError is the error of a Status: its message, of the class its code names.
func classError(code int, msg string) error {
	for _, c := range []struct {
		code  int
		class error
	}{
		{http.StatusNotFound, ErrNotFound}, {http.StatusBadRequest, ErrBadRequest}, {http.StatusConflict, ErrConflict},
		{http.StatusForbidden, ErrForbidden}, {http.StatusServiceUnavailable, ErrUnavailable},
	} {
		if c.code == code {
			return fmt.Errorf("%w: %s", c.class, msg)
		}
	}
	return errors.New(msg)
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Pods lists every pod.
func (c *Client) Pods(ctx context.Context) ([]corev1.Pod, error) {
	var l corev1.PodList
	err := c.getJSON(ctx, PathPods, nil, &l)
	return l.Items, err
}

// Pod returns one pod.
func (c *Client) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var p corev1.Pod
	if err := c.getJSON(ctx, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Watch calls fn for every watch event until ctx is done or fn returns an error.
func (c *Client) Watch(ctx context.Context, fn func(WatchEvent) error) error {
	resp, err := c.get(ctx, PathPods, url.Values{"watch": {"true"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev WatchEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if err == io.EOF {
				return errors.New("agentd closed the watch")
			}
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// Events lists events, all or those of one object.
func (c *Client) Events(ctx context.Context, uid types.UID) ([]corev1.Event, error) {
	var l corev1.EventList
	q := url.Values{}
	if uid != "" {
		q.Set("uid", string(uid))
	}
	err := c.getJSON(ctx, PathEvents, q, &l)
	return l.Items, err
}

// Info returns what `agentctl info` prints.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var i Info
	return &i, c.getJSON(ctx, PathInfo, nil, &i)
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (*Version, error) {
	var v Version
	return &v, c.getJSON(ctx, PathVersion, nil, &v)
}

// Images lists the node's images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var l ImageList
	err := c.getJSON(ctx, PathImages, nil, &l)
	return l.Items, err
}

// ImportImage asks agentd to import the image archive at path (on agentd's host).
func (c *Client) ImportImage(ctx context.Context, path string) ([]Image, error) {
	var l ImageList
	err := c.send(ctx, http.MethodPost, PathImages+"/import?"+url.Values{"path": {path}}.Encode(), "", nil, &l)
	return l.Items, err
}

// RemoveImage asks agentd to remove an image or one of its names.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.send(ctx, http.MethodDelete, PathImages+"?"+url.Values{"ref": {ref}}.Encode(), "", nil, nil)
}

// PruneImages asks agentd to remove every image no container uses.
func (c *Client) PruneImages(ctx context.Context) ([]Image, error) {
	var l ImageList
	err := c.send(ctx, http.MethodPost, PathImages+"/prune", "", nil, &l)
	return l.Items, err
}

// PullImage asks agentd to pull an image from its registry; progress, when
// not nil, gets each progress report. The pull ends when ctx does.
func (c *Client) PullImage(ctx context.Context, ref string, progress func(PullProgress)) (*PullResult, error) {
	resp, err := c.request(ctx, http.MethodPost, PathImages+"/pull", url.Values{"ref": {ref}}, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev PullEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w at %s before the pull ended; did it stop? (%v)", ErrConnectionLost, c.socket, err)
		}
		switch {
		case ev.Error != nil:
			return nil, classError(ev.Error.Code, ev.Error.Message)
		case ev.Result != nil:
			return ev.Result, nil
		case ev.Progress != nil && progress != nil:
			progress(*ev.Progress)
		}
	}
}

// DeleteUnmanaged stops a pod whose monitors speak an incompatible protocol.
func (c *Client) DeleteUnmanaged(ctx context.Context, namespace, name string) error {
	return c.send(ctx, http.MethodDelete, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name)+"?unmanaged=true", "", nil, nil)
}

// LogOptions are `agentctl logs` flags.
type LogOptions struct {
	Container  string
	Follow     bool
	Previous   bool
	Timestamps bool
	TailLines  int64 // < 0: all
	// SinceSeconds (> 0) or SinceTime (non-zero), at most one: skip older lines.
	SinceSeconds int64
	SinceTime    time.Time
	LimitBytes   int64 // > 0: stop after this many bytes
}

// Logs copies a container's log to w (following it with Follow until ctx is done).
func (c *Client) Logs(ctx context.Context, namespace, name string, o LogOptions, w io.Writer) error {
	q := url.Values{}
	if o.Container != "" {
		q.Set("container", o.Container)
	}
	for k, v := range map[string]bool{"follow": o.Follow, "previous": o.Previous, "timestamps": o.Timestamps} {
		if v {
			q.Set(k, "true")
		}
	}
	if o.TailLines >= 0 {
		q.Set("tailLines", strconv.FormatInt(o.TailLines, 10))
	}
	if o.SinceSeconds > 0 {
		q.Set("sinceSeconds", strconv.FormatInt(o.SinceSeconds, 10))
	}
	if !o.SinceTime.IsZero() {
		q.Set("sinceTime", o.SinceTime.UTC().Format(time.RFC3339))
	}
	if o.LimitBytes > 0 {
		q.Set("limitBytes", strconv.FormatInt(o.LimitBytes, 10))
	}
	resp, err := c.get(ctx, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name)+"/log", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Exec runs a command in a pod's container and streams its I/O; it returns the
// command's exit code.
func (c *Client) Exec(ctx context.Context, namespace, name, container string, req *protocol.ExecRequest, s Streams) (int, error) {
	q := url.Values{"command": req.Args}
	if container != "" {
		q.Set("container", container)
	}
	if req.Tty {
		q.Set("tty", "true")
	}
	if s.Stdin != nil {
		q.Set("stdin", "true")
	}
	if req.Width > 0 {
		q.Set("width", strconv.Itoa(int(req.Width)))
		q.Set("height", strconv.Itoa(int(req.Height)))
	}
	path := "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(name) + "/exec?" + q.Encode()
	return c.stream(ctx, "exec", path, s)
}

// Attach attaches to a pod's container as kubectl attach does: its output from now
// on to s.Stdout and s.Stderr (nil: not attached), s.Stdin to its stdin, until its
// run ends or ctx is done.
func (c *Client) Attach(ctx context.Context, namespace, name, container string, s Streams) error {
	q := url.Values{}
	if container != "" {
		q.Set("container", container)
	}
	if s.Stdin != nil {
		q.Set("stdin", "true")
	}
	if s.Stderr == nil {
		q.Set("stderr", "false")
	}
	path := "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(name) + "/attach?" + q.Encode()
	if _, err := c.stream(ctx, "attach", path, s); err != nil && ctx.Err() == nil {
		return err
	}
	return nil // the run ended, or the client detached
}

// stream runs an exec or attach request (op) at path, upgraded to UpgradeExec, and
// returns the exit code its stream ends with.
func (c *Client) stream(ctx context.Context, op, path string, s Streams) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return -1, c.unreachable(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: agentd\r\nConnection: Upgrade\r\nUpgrade: %s\r\nContent-Length: 0\r\n\r\n", path, UpgradeExec)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return -1, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return -1, statusError(resp)
	}
	code, err := protocol.ClientStream(br, conn, protocol.ExecStreams(s))
	if err != nil {
		return -1, fmt.Errorf("%s: %w", op, err)
	}
	return code, nil
}
