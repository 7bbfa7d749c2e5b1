// Package apitest holds a fake api.Backend for tests of the API server, its client and agentctl: it answers what
// a test sets and records every call, in the style of kubelet's container/testing FakeRuntime.
package apitest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

var _ api.Backend = (*FakeBackend)(nil)

// Call is one call of a Backend method: its name and its arguments but the context (an ExecRequest by value, a
// manifest as a string), so that a test can compare calls with reflect.DeepEqual.
type Call struct {
	Method string
	Args   []any
}

func (c Call) String() string { return fmt.Sprintf("%s%v", c.Method, c.Args) }

// Subscription is one watch of the pods, as Subscribe handed it out.
type Subscription struct {
	// C is the watch's "pods changed" channel. It is unbuffered: a send returns once the server took the signal.
	C chan struct{}
	// Cancelled is closed when the server cancels the subscription.
	Cancelled chan struct{}
}

// FakeBackend is an api.Backend that answers with its fields and records every call. A test sets the fields under
// the embedded mutex (or through SetPods) before or while a server uses it; every method is safe for concurrent use.
// Err makes a method fail: its key is the method's name.
type FakeBackend struct {
	sync.Mutex // guards every field and calls

	PodList   []corev1.Pod
	EventList []corev1.Event
	InfoValue api.Info
	ImageList []api.Image
	// PullProgressList is what PullImage reports before it answers PullResultValue.
	PullProgressList []api.PullProgress
	PullResultValue  *api.PullResult
	// LogRoot and LogName answer LogFile; PreviousLogName answers it with previous set.
	LogRoot, LogName, PreviousLogName string
	// ExecFunc runs an exec; when nil, Exec returns 0 at once.
	ExecFunc func(ctx context.Context, req *protocol.ExecRequest, s api.Streams) (int, error)
	// AttachFunc runs an attach; when nil, Attach returns at once.
	AttachFunc func(ctx context.Context, s api.Streams) error

	ClusterStatusValue api.ClusterStatus
	NodeList           []corev1.Node
	DaemonSetList      []appsv1.DaemonSet
	ApplyResultValue   *api.ApplyResult
	TokenCreatedValue  *api.TokenCreated
	TokenList          []api.TokenInfo
	CertList           []api.CertInfo
	// Err is the error a method returns, by method name.
	Err map[string]error

	// Contexts has the context of each call of a method that takes one, by method name, for a test to look at its
	// deadline or its cancellation.
	Contexts map[string][]context.Context

	calls []Call

	subscribed chan *Subscription // Subscribe sends every new subscription here
}

// NewFakeBackend returns a FakeBackend that answers with empty lists and no errors.
func NewFakeBackend() *FakeBackend {
	return &FakeBackend{
		Err:        map[string]error{},
		Contexts:   map[string][]context.Context{},
		subscribed: make(chan *Subscription, 64),
	}
}

// record notes a call and returns the error the test set for the method; mu must be held.
func (f *FakeBackend) record(ctx context.Context, method string, args ...any) error {
	f.calls = append(f.calls, Call{Method: method, Args: args})
	if ctx != nil {
		f.Contexts[method] = append(f.Contexts[method], ctx)
	}
	return f.Err[method]
}

// Calls returns the calls so far, in order.
func (f *FakeBackend) Calls() []Call {
	f.Lock()
	defer f.Unlock()
	return slices.Clone(f.calls)
}

// CallsOf returns the calls of one method so far, in order.
func (f *FakeBackend) CallsOf(method string) []Call {
	f.Lock()
	defer f.Unlock()
	var out []Call
	for _, c := range f.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// SetPods replaces the pods Pods returns.
func (f *FakeBackend) SetPods(pods ...corev1.Pod) {
	f.Lock()
	defer f.Unlock()
	f.PodList = pods
}

// Subscribed returns the channel on which every subscription arrives when the server makes it.
func (f *FakeBackend) Subscribed() <-chan *Subscription { return f.subscribed }

func (f *FakeBackend) Pods() []corev1.Pod {
	f.Lock()
	defer f.Unlock()
	_ = f.record(nil, "Pods")
	return slices.Clone(f.PodList)
}

func (f *FakeBackend) Events(uid types.UID) []corev1.Event {
	f.Lock()
	defer f.Unlock()
	_ = f.record(nil, "Events", uid)
	return slices.Clone(f.EventList)
}

func (f *FakeBackend) Subscribe() (<-chan struct{}, func()) {
	f.Lock()
	_ = f.record(nil, "Subscribe")
	f.Unlock()
	s := &Subscription{C: make(chan struct{}), Cancelled: make(chan struct{})}
	select {
	case f.subscribed <- s:
	default:
		panic("apitest: more than 64 subscriptions nobody received from Subscribed()")
	}
	var once sync.Once
	return s.C, func() { once.Do(func() { close(s.Cancelled) }) }
}

func (f *FakeBackend) Info() api.Info {
	f.Lock()
	defer f.Unlock()
	_ = f.record(nil, "Info")
	return f.InfoValue
}

func (f *FakeBackend) ServerVersion() (string, string) {
	f.Lock()
	defer f.Unlock()
	_ = f.record(nil, "ServerVersion")
	return f.InfoValue.ServerVersion, f.InfoValue.MonitorProtocol
}

func (f *FakeBackend) Images() ([]api.Image, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(nil, "Images"); err != nil {
		return nil, err
	}
	return slices.Clone(f.ImageList), nil
}

func (f *FakeBackend) ImportImage(ctx context.Context, path string) ([]api.Image, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "ImportImage", path); err != nil {
		return nil, err
	}
	return slices.Clone(f.ImageList), nil
}

func (f *FakeBackend) RemoveImage(ctx context.Context, ref string) error {
	f.Lock()
	defer f.Unlock()
	return f.record(ctx, "RemoveImage", ref)
}

func (f *FakeBackend) PruneImages(ctx context.Context) ([]api.Image, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "PruneImages"); err != nil {
		return nil, err
	}
	return slices.Clone(f.ImageList), nil
}

// PullImage sends PullProgressList to progress, then answers PullResultValue (or Err["PullImage"]).
func (f *FakeBackend) PullImage(ctx context.Context, ref string, progress func(api.PullProgress)) (*api.PullResult, error) {
	f.Lock()
	err := f.record(ctx, "PullImage", ref)
	steps := slices.Clone(f.PullProgressList)
	res := f.PullResultValue
	f.Unlock()
	for _, p := range steps {
		progress(p)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (f *FakeBackend) LogFile(namespace, name, container string, previous bool) (string, string, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(nil, "LogFile", namespace, name, container, previous); err != nil {
		return "", "", err
	}
	if previous {
		return f.LogRoot, f.PreviousLogName, nil
	}
	return f.LogRoot, f.LogName, nil
}

func (f *FakeBackend) DeleteUnmanaged(namespace, name string) error {
	f.Lock()
	defer f.Unlock()
	return f.record(nil, "DeleteUnmanaged", namespace, name)
}

func (f *FakeBackend) Exec(ctx context.Context, namespace, name, container string, req *protocol.ExecRequest, s api.Streams) (int, error) {
	f.Lock()
	err := f.record(ctx, "Exec", namespace, name, container, *req)
	run := f.ExecFunc
	f.Unlock()
	if err != nil {
		return -1, err
	}
	if run == nil {
		return 0, nil
	}
	return run(ctx, req, s)
}

// Attach records "Attach" with the namespace, name, container and whether stdin
// was attached.
func (f *FakeBackend) Attach(ctx context.Context, namespace, name, container string, s api.Streams) error {
	f.Lock()
	err := f.record(ctx, "Attach", namespace, name, container, s.Stdin != nil)
	run := f.AttachFunc
	f.Unlock()
	if err != nil || run == nil {
		return err
	}
	return run(ctx, s)
}

func (f *FakeBackend) ClusterStatus() api.ClusterStatus {
	f.Lock()
	defer f.Unlock()
	_ = f.record(nil, "ClusterStatus")
	return f.ClusterStatusValue
}

func (f *FakeBackend) ClusterInit(ctx context.Context, req api.ClusterInitRequest) (api.ClusterStatus, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "ClusterInit", req); err != nil {
		return api.ClusterStatus{}, err
	}
	return f.ClusterStatusValue, nil
}

func (f *FakeBackend) ClusterJoin(ctx context.Context, req api.ClusterJoinRequest) (api.ClusterStatus, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "ClusterJoin", req); err != nil {
		return api.ClusterStatus{}, err
	}
	return f.ClusterStatusValue, nil
}

func (f *FakeBackend) ClusterLeave(ctx context.Context, force bool) error {
	f.Lock()
	defer f.Unlock()
	return f.record(ctx, "ClusterLeave", force)
}

func (f *FakeBackend) Nodes(ctx context.Context) ([]corev1.Node, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "Nodes"); err != nil {
		return nil, err
	}
	return slices.Clone(f.NodeList), nil
}

func (f *FakeBackend) DeleteNode(ctx context.Context, name string, force bool) error {
	f.Lock()
	defer f.Unlock()
	return f.record(ctx, "DeleteNode", name, force)
}

func (f *FakeBackend) ApplyDaemonSet(ctx context.Context, manifest []byte) (*api.ApplyResult, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "ApplyDaemonSet", string(manifest)); err != nil {
		return nil, err
	}
	return f.ApplyResultValue, nil
}

func (f *FakeBackend) DaemonSets(ctx context.Context) ([]appsv1.DaemonSet, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "DaemonSets"); err != nil {
		return nil, err
	}
	return slices.Clone(f.DaemonSetList), nil
}

func (f *FakeBackend) DeleteDaemonSet(ctx context.Context, namespace, name string) error {
	f.Lock()
	defer f.Unlock()
	return f.record(ctx, "DeleteDaemonSet", namespace, name)
}

func (f *FakeBackend) CreateToken(ctx context.Context, req api.TokenRequest) (*api.TokenCreated, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "CreateToken", req); err != nil {
		return nil, err
	}
	return f.TokenCreatedValue, nil
}

func (f *FakeBackend) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(ctx, "Tokens"); err != nil {
		return nil, err
	}
	return slices.Clone(f.TokenList), nil
}

func (f *FakeBackend) DeleteToken(ctx context.Context, id string) error {
	f.Lock()
	defer f.Unlock()
	return f.record(ctx, "DeleteToken", id)
}

func (f *FakeBackend) Certs() ([]api.CertInfo, error) {
	f.Lock()
	defer f.Unlock()
	if err := f.record(nil, "Certs"); err != nil {
		return nil, err
	}
	return slices.Clone(f.CertList), nil
}
