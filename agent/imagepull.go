package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/agent/metrics"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/reconcile"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
)

// ImagePuller brings images from registries into the image store (package
// pull's Puller). It is safe for concurrent use; Pull returns when ctx ends,
// and calls progress from one goroutine at a time.
type ImagePuller interface {
	Pull(ctx context.Context, ref string, auth authn.Authenticator, progress func(pull.Progress)) (pull.Result, error)
}

var _ ImagePuller = (*pull.Puller)(nil)

// Waiting reasons and event reasons of image pulls, kubelet's.
const (
	reasonImagePullBackOff  = "ImagePullBackOff"
	reasonImageInspectError = "ImageInspectError"
	eventInspectFailed      = "InspectFailed"
	eventPulling            = "Pulling"
	eventPulled             = "Pulled"
	eventBackOff            = "BackOff"
)

// pullStep is what ensureImage does about a container's image.
type pullStep int

const (
	useLocal   pullStep = iota // the image in the store serves
	neverPull                  // absent, and the policy forbids a pull: ErrImageNeverPull
	backingOff                 // a pull of it failed recently: ImagePullBackOff
	pullImage                  // pull it now
)

// pullDecision is kubelet's shouldPullImage plus its back-off check: Never
// uses what is there, IfNotPresent pulls only what is absent, Always pulls
// every time (a registry answering with the digest already held costs only
// the manifest). A pull that failed recently is not retried until its
// back-off ends. An empty policy is the default for image (spec.DefaultPullPolicy).
func pullDecision(policy corev1.PullPolicy, image string, present, inBackOff bool) pullStep {
	if policy == "" {
		policy = spec.DefaultPullPolicy(image)
	}
	switch {
	case policy == corev1.PullNever && present, policy == corev1.PullIfNotPresent && present:
		return useLocal
	case policy == corev1.PullNever:
		return neverPull
	case inBackOff:
		return backingOff
	}
	return pullImage
}

// imageFailure is why a container's image is not there to start it from: the
// container's waiting reason and message, and when to try again.
type imageFailure struct {
	reason, message string
	retryAt         time.Time
}

// imageManager makes sure a container's image is in the store before it
// starts, as kubelet's image manager: pull policy, Pulling/Pulled/Failed/BackOff
// events, and a back-off per pod and image after a failed pull. It is safe for
// concurrent use and holds no lock of the agent's: each pod's worker pulls on
// its own, so one pod's slow or failing pull never delays another's start.
type imageManager struct {
	images ImageStore
	events *state.Recorder
	log    logr.Logger
	clock  clock.Clock
	// retry is how long after a failed pull the container is looked at again
	// (kubelet's pod worker retries a failed sync after its backOffPeriod, the
	// same 10 s as the back-off's base): the back-off's base.
	retry   time.Duration
	backOff *flowcontrol.Backoff // keyed podUID_image, as kubelet; safe for concurrent use

	mu sync.Mutex // guards the fields below
	// puller is the current puller (rebuilt at SIGHUP); nil: pulls fail.
	puller ImagePuller
	// metrics observe every pull (meteredPuller); nil: none.
	metrics *metrics.Metrics
	// failed is the last failed pull of each back-off key: when, and its
	// error's message (kubelet's prevPullErrMsg, shown during the back-off).
	failed map[string]failedPull
}

type failedPull struct {
	at  time.Time
	msg string
}

// newImageManager returns an image manager whose back-off starts at base and
// doubles up to protocol.DefaultBackoffMax: kubelet's 10 s and 300 s, the
// same base and cap as the crash back-off (CrashLoopBackOff) of agentd's monitors.
func newImageManager(images ImageStore, events *state.Recorder, base time.Duration, clk clock.Clock, log logr.Logger) *imageManager {
	if base <= 0 {
		base = protocol.DefaultBackoffBase
	}
	// NewFakeBackOff is the constructor that takes a clock: clk, the real one
	// outside tests.
	return &imageManager{images: images, events: events, log: log, clock: clk, retry: base,
		backOff: flowcontrol.NewFakeBackOff(base, max(base, protocol.DefaultBackoffMax), clk), failed: map[string]failedPull{}}
}

// setPuller replaces the puller; pulls under way finish with the old one.
func (m *imageManager) setPuller(p ImagePuller) {
	m.mu.Lock()
	m.puller = p
	m.mu.Unlock()
}

// currentPuller is the puller every pull goes through (the manifest pods',
// the API's, the CRI's), observed by the metrics when there are.
func (m *imageManager) currentPuller() ImagePuller {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.puller != nil && m.metrics != nil {
		return meteredPuller{p: m.puller, m: m.metrics}
	}
	return m.puller
}

// errNoPuller is the pull error of an agent made without a puller (tests
// with a fake store; New always makes one, or fails).
var errNoPuller = errors.New("this agentd has no image puller")

// ensureImage returns the image c starts from, pulling it when its pull
// policy says so, and records kubelet's events about it. When the image is
// not there, it returns why instead, with the events recorded: the caller
// records the failure's "Error: <reason>" event itself (failedEvents). ctx
// ends the pull (the pod deleted, agentd stopping): then neither an image nor
// an event, and a failure with an empty reason.
func (m *imageManager) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (*runtime.Image, *imageFailure) {
	obj := state.PodObject(pod, c.Name)
	img, err := m.images.Resolve(c.Image)
	present := err == nil
	if err != nil && !errors.Is(err, runtime.ErrImageNeverPull) {
		// The store could not be read: kubelet's ImageInspectError.
		msg := fmt.Sprintf("Failed to inspect image %q: %v", c.Image, err)
		m.events.Event(obj, state.Warning, eventInspectFailed, msg)
		return nil, &imageFailure{reason: reasonImageInspectError, message: msg, retryAt: m.clock.Now().Add(m.retry)}
	}
	key := backOffKey(pod.UID, c.Image)
	now := m.clock.Now()
	switch pullDecision(c.ImagePullPolicy, c.Image, present, m.backOff.IsInBackOffSinceUpdate(key, now)) {
	case useLocal:
		m.events.Eventf(obj, state.Normal, eventPulled, "Container image %q already present on machine", c.Image)
		return img, nil
	case neverPull:
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		m.events.Event(obj, state.Warning, reasonErrImageNeverPull, msg)
		return nil, &imageFailure{reason: reasonErrImageNeverPull, message: msg, retryAt: reconcile.CreateRetryAt(now)}
	case backingOff:
		msg := fmt.Sprintf("Back-off pulling image %q", c.Image)
		m.events.Event(obj, state.Normal, eventBackOff, msg)
		m.mu.Lock()
		prev, ok := m.failed[key]
		m.mu.Unlock()
		retryAt := now.Add(m.retry)
		if ok {
			msg = fmt.Sprintf("%s: %s: %s", msg, reasonErrImagePull, prev.msg)
			retryAt = prev.at.Add(m.backOff.Get(key))
		}
		return nil, &imageFailure{reason: reasonImagePullBackOff, message: msg, retryAt: retryAt}
	}

	m.mu.Lock()
	delete(m.failed, key)
	m.mu.Unlock()
	m.events.Eventf(obj, state.Normal, eventPulling, "Pulling image %q", c.Image)
	start := m.clock.Now()
	res, err := m.pull(ctx, c.Image)
	if ctx.Err() != nil {
		m.log.V(1).Info("Image pull cancelled", "pod", klog(pod), "container", c.Name, "image", c.Image)
		return nil, &imageFailure{}
	}
	if err == nil {
		img, err = m.images.Resolve(res.ImageID)
		if err != nil {
			err = fmt.Errorf("the image pulled (%s) is not in the store: %w", res.ImageID, err)
		}
	}
	if err != nil {
		at := m.clock.Now()
		m.events.Eventf(obj, state.Warning, "Failed", "Failed to pull image %q: %v", c.Image, err)
		m.backOff.Next(key, at)
		msg := pullErrorMessage(err)
		m.mu.Lock()
		m.failed[key] = failedPull{at: at, msg: msg}
		m.mu.Unlock()
		m.log.Info("Image pull failed", "pod", klog(pod), "container", c.Name, "image", c.Image, "error", err.Error())
		return nil, &imageFailure{reason: reasonErrImagePull, message: msg, retryAt: at.Add(m.retry)}
	}
	m.events.Event(obj, state.Normal, eventPulled, pulledMessage(c.Image, res.Duration, m.clock.Since(start), res.Size))
	m.backOff.GC()
	return img, nil
}

// forgetPod drops the back-off and last errors of a pod that is gone.
func (m *imageManager) forgetPod(uid types.UID) {
	prefix := string(uid) + "_"
	m.mu.Lock()
	defer m.mu.Unlock()
	for key := range m.failed {
		if strings.HasPrefix(key, prefix) {
			delete(m.failed, key)
			m.backOff.DeleteEntry(key)
		}
	}
}

func (m *imageManager) pull(ctx context.Context, ref string) (pull.Result, error) {
	p := m.currentPuller()
	if p == nil {
		return pull.Result{}, errNoPuller
	}
	return p.Pull(ctx, ref, nil, nil)
}

// backOffKey is kubelet's key of the pull back-off: one per pod and image.
func backOffKey(uid types.UID, image string) string { return fmt.Sprintf("%s_%s", uid, image) }

// pulledMessage is kubelet's Pulled event after a pull: the pull's own time
// and the time including any wait for a pull of the same image, to the
// millisecond, and the image's size.
func pulledMessage(image string, pulled, total time.Duration, size int64) string {
	return fmt.Sprintf("Successfully pulled image %q in %v (%v including waiting). Image size: %d bytes.",
		image, pulled.Truncate(time.Millisecond), max(total, pulled).Truncate(time.Millisecond), size)
}

// pullErrorMessage is a failed pull's waiting message: the error, led by its
// short cause (pull.Reason: "unauthorized", "not found", …) when one is known
// and the error does not start with it already.
func pullErrorMessage(err error) string {
	msg := err.Error()
	r := pull.Reason(err)
	if r == "" || strings.HasPrefix(strings.ToLower(msg), strings.ToLower(r)) {
		return msg
	}
	return r + ": " + msg
}
