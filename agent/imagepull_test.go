package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/agent/runtime"
	"github.com/agentd-project/agentd/agent/state"
)

func TestPullDecision(t *testing.T) {
	for _, tc := range []struct {
		name      string
		policy    corev1.PullPolicy
		image     string
		present   bool
		inBackOff bool
		want      pullStep
	}{
		{"Never, present", corev1.PullNever, "app:1", true, false, useLocal},
		{"Never, absent", corev1.PullNever, "app:1", false, false, neverPull},
		{"Never, absent, in back-off", corev1.PullNever, "app:1", false, true, neverPull},
		{"IfNotPresent, present", corev1.PullIfNotPresent, "app:1", true, false, useLocal},
		{"IfNotPresent, present, in back-off", corev1.PullIfNotPresent, "app:1", true, true, useLocal},
		{"IfNotPresent, absent", corev1.PullIfNotPresent, "app:1", false, false, pullImage},
		{"IfNotPresent, absent, in back-off", corev1.PullIfNotPresent, "app:1", false, true, backingOff},
		{"Always, present", corev1.PullAlways, "app:1", true, false, pullImage},
		{"Always, absent", corev1.PullAlways, "app:1", false, false, pullImage},
		{"Always, present, in back-off", corev1.PullAlways, "app:1", true, true, backingOff},
		// No policy: kubelet's default for the image.
		{"default, no tag, present", "", "app", true, false, pullImage},
		{"default, latest, present", "", "registry:5000/app:latest", true, false, pullImage},
		{"default, tag, present", "", "registry:5000/app:1", true, false, useLocal},
		{"default, port but no tag, present", "", "registry:5000/app", true, false, pullImage},
		{"default, digest, present", "", "app@sha256:" + strings.Repeat("1", 64), true, false, useLocal},
		{"default, digest, absent", "", "app@sha256:" + strings.Repeat("1", 64), false, false, pullImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pullDecision(tc.policy, tc.image, tc.present, tc.inBackOff); got != tc.want {
				t.Errorf("pullDecision(%q, %q, present %v, in back-off %v) = %d, want %d", tc.policy, tc.image, tc.present, tc.inBackOff, got, tc.want)
			}
		})
	}
}

// scriptedPuller answers pulls from its script of results, in turn (the
// last one repeats); it advances the clock by took during each pull.
type scriptedPuller struct {
	clock *clocktesting.FakeClock
	took  time.Duration
	after func(ref string) // called after a successful pull (to put the image in the fake store)

	mu      sync.Mutex
	results []pullAnswer
	pulls   int
}

type pullAnswer struct {
	res pull.Result
	err error
}

func (p *scriptedPuller) Pull(ctx context.Context, ref string, _ authn.Authenticator, _ func(pull.Progress)) (pull.Result, error) {
	p.mu.Lock()
	a := p.results[min(p.pulls, len(p.results)-1)]
	p.pulls++
	p.mu.Unlock()
	p.clock.Step(p.took)
	if a.err == nil && p.after != nil {
		p.after(ref)
	}
	return a.res, a.err
}

func (p *scriptedPuller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pulls
}

type imageRig struct {
	clock  *clocktesting.FakeClock
	images *fakeImages
	events *state.Recorder
	puller *scriptedPuller
	m      *imageManager
}

func newImageRig(base time.Duration, answers ...pullAnswer) *imageRig {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	r := &imageRig{clock: clk, images: &fakeImages{present: map[string]bool{}}, events: state.NewRecorder("node-a", 100)}
	r.puller = &scriptedPuller{clock: clk, results: answers, after: r.images.add}
	r.m = newImageManager(r.images, r.events, base, clk, logr.Discard())
	r.m.setPuller(r.puller)
	return r
}

// eventLines are the events recorded, one "Type Reason Message" line each,
// with a count when more than one.
func (r *imageRig) eventLines() string {
	var b strings.Builder
	for _, e := range r.events.List("") {
		fmt.Fprintf(&b, "%s %s %s", e.Type, e.Reason, e.Message)
		if e.Count > 1 {
			fmt.Fprintf(&b, " (x%d)", e.Count)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func imagePod(image string, policy corev1.PullPolicy) (*corev1.Pod, *corev1.Container) {
	p := &corev1.Pod{}
	p.Name, p.Namespace, p.UID = "web", "default", "uid-1"
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: policy}}
	return p, &p.Spec.Containers[0]
}

// The events of kubelet's image manager, word for word.
func TestImageEventsGolden(t *testing.T) {
	unauthorized := errors.New(`GET https://registry.example/v2/app/manifests/1: UNAUTHORIZED: authentication required`)
	for _, tc := range []struct {
		name    string
		policy  corev1.PullPolicy
		present bool
		answers []pullAnswer
		calls   int // ensureImage calls, each after the previous one's retry time
		want    string
		reasons []string // the waiting reason after each call ("" for started)
	}{
		{"present, IfNotPresent", corev1.PullIfNotPresent, true, nil, 1,
			`Normal Pulled Container image "registry.example/app:1" already present on machine
`, []string{""}},
		{"absent, Never", corev1.PullNever, false, nil, 1,
			`Warning ErrImageNeverPull Container image "registry.example/app:1" is not present with pull policy of Never
`, []string{"ErrImageNeverPull"}},
		{"pulled", corev1.PullAlways, true, []pullAnswer{{res: pull.Result{ImageID: fakeImageID, Size: 4269694, Duration: 1234567 * time.Microsecond}}}, 1,
			`Normal Pulling Pulling image "registry.example/app:1"
Normal Pulled Successfully pulled image "registry.example/app:1" in 1.234s (1.3s including waiting). Image size: 4269694 bytes.
`, []string{""}},
		{"failed, then back-off", corev1.PullIfNotPresent, false, []pullAnswer{{err: unauthorized}}, 3,
			`Normal Pulling Pulling image "registry.example/app:1" (x2)
Warning Failed Failed to pull image "registry.example/app:1": GET https://registry.example/v2/app/manifests/1: UNAUTHORIZED: authentication required (x2)
Normal BackOff Back-off pulling image "registry.example/app:1"
`, []string{"ErrImagePull", "ErrImagePull", "ImagePullBackOff"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newImageRig(10*time.Second, tc.answers...)
			r.puller.took = 1300 * time.Millisecond
			if tc.present {
				r.images.add("registry.example/app:1")
			}
			p, c := imagePod("registry.example/app:1", tc.policy)
			var reasons []string
			for range tc.calls {
				img, f := r.m.ensureImage(context.Background(), p, c)
				switch {
				case f != nil:
					reasons = append(reasons, f.reason)
					r.clock.SetTime(f.retryAt)
				case img == nil:
					t.Fatal("ensureImage returned neither an image nor a failure")
				default:
					reasons = append(reasons, "")
				}
			}
			if got := r.eventLines(); got != tc.want {
				t.Errorf("events:\n%s\nwant:\n%s", got, tc.want)
			}
			if fmt.Sprint(reasons) != fmt.Sprint(tc.reasons) {
				t.Errorf("waiting reasons %q, want %q", reasons, tc.reasons)
			}
		})
	}
}

// The back-off after failed pulls of one image in one pod: kubelet's, from
// backoff-base doubling to the crash back-off's cap, retried when it ends.
func TestPullBackOffSequence(t *testing.T) {
	base := 10 * time.Second
	r := newImageRig(base, pullAnswer{err: errors.New("registry.example/app:1: manifest unknown")})
	p, c := imagePod("registry.example/app:1", corev1.PullIfNotPresent)
	t0 := r.clock.Now()
	type step struct {
		at      time.Duration // since t0
		reason  string
		retryAt time.Duration // since t0
	}
	var got []step
	for len(got) < 16 {
		_, f := r.m.ensureImage(context.Background(), p, c)
		if f == nil {
			t.Fatal("a failing pull gave an image")
		}
		got = append(got, step{r.clock.Since(t0), f.reason, f.retryAt.Sub(t0)})
		r.clock.SetTime(f.retryAt)
	}
	// Each failure waits base before its container is looked at again: in
	// back-off then (from the second failure on, whose back-off is 2×base), it
	// waits for the back-off's end, and pulls again.
	want := []step{
		{0, "ErrImagePull", 10 * time.Second},                // back-off 10s
		{10 * time.Second, "ErrImagePull", 20 * time.Second}, // 10s have passed: pull again; back-off 20s
		{20 * time.Second, "ImagePullBackOff", 30 * time.Second},
		{30 * time.Second, "ErrImagePull", 40 * time.Second}, // back-off 40s
		{40 * time.Second, "ImagePullBackOff", 70 * time.Second},
		{70 * time.Second, "ErrImagePull", 80 * time.Second}, // 80s
		{80 * time.Second, "ImagePullBackOff", 150 * time.Second},
		{150 * time.Second, "ErrImagePull", 160 * time.Second}, // 160s
		{160 * time.Second, "ImagePullBackOff", 310 * time.Second},
		{310 * time.Second, "ErrImagePull", 320 * time.Second}, // 320s → capped at 300s
		{320 * time.Second, "ImagePullBackOff", 610 * time.Second},
		{610 * time.Second, "ErrImagePull", 620 * time.Second}, // 300s
		{620 * time.Second, "ImagePullBackOff", 910 * time.Second},
		{910 * time.Second, "ErrImagePull", 920 * time.Second},
		{920 * time.Second, "ImagePullBackOff", 1210 * time.Second},
		{1210 * time.Second, "ErrImagePull", 1220 * time.Second},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sequence:\n%v\nwant:\n%v", got, want)
	}
	if n := r.puller.count(); n != 9 {
		t.Errorf("%d pulls, want 9 (one per ErrImagePull)", n)
	}
	// The back-off is per pod and image: another pod pulls at once.
	other, oc := imagePod("registry.example/app:1", corev1.PullIfNotPresent)
	other.UID = "uid-2"
	if _, f := r.m.ensureImage(context.Background(), other, oc); f == nil || f.reason != "ErrImagePull" {
		t.Errorf("another pod's first try: %+v, want a pull that fails", f)
	}
}

// While in back-off, the waiting message says what the last pull failed with.
func TestPullBackOffMessageNamesTheError(t *testing.T) {
	r := newImageRig(time.Second, pullAnswer{err: errors.New("UNAUTHORIZED: authentication required")})
	p, c := imagePod("registry.example/app:1", corev1.PullAlways)
	var last *imageFailure
	for range 3 {
		_, last = r.m.ensureImage(context.Background(), p, c)
		r.clock.SetTime(last.retryAt)
	}
	want := `Back-off pulling image "registry.example/app:1": ErrImagePull: UNAUTHORIZED: authentication required`
	if last.reason != "ImagePullBackOff" || last.message != want {
		t.Errorf("got %s %q, want ImagePullBackOff %q", last.reason, last.message, want)
	}
}

// A pull cancelled (its pod deleted, agentd stopping) is no failure: no
// event, no back-off, no waiting reason.
func TestCancelledPullIsNoFailure(t *testing.T) {
	r := newImageRig(time.Second, pullAnswer{err: context.Canceled})
	p, c := imagePod("registry.example/app:1", corev1.PullAlways)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img, f := r.m.ensureImage(ctx, p, c)
	if img != nil || f == nil || f.reason != "" {
		t.Fatalf("got %v, %+v; want a failure without a reason", img, f)
	}
	if got := r.eventLines(); got != "Normal Pulling Pulling image \"registry.example/app:1\"\n" {
		t.Errorf("events:\n%s", got)
	}
	if r.m.backOff.IsInBackOffSinceUpdate(backOffKey(p.UID, c.Image), r.clock.Now()) {
		t.Error("a cancelled pull started a back-off")
	}
}

func TestPulledMessage(t *testing.T) {
	for _, tc := range []struct {
		pulled, total time.Duration
		want          string
	}{
		{313*time.Millisecond + 400*time.Microsecond, 313*time.Millisecond + 900*time.Microsecond, `in 313ms (313ms including waiting)`},
		{796 * time.Millisecond, 1594 * time.Millisecond, `in 796ms (1.594s including waiting)`},
		{5419 * time.Millisecond, 5419 * time.Millisecond, `in 5.419s (5.419s including waiting)`},
		{2 * time.Second, time.Second, `in 2s (2s including waiting)`}, // never less with the waiting than without
	} {
		got := pulledMessage("busybox", tc.pulled, tc.total, 2222260)
		if want := `Successfully pulled image "busybox" ` + tc.want + `. Image size: 2222260 bytes.`; got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// blockingPuller's pulls of block wait until their context ends; the others
// go to next.
type blockingPuller struct {
	next      ImagePuller
	block     string
	started   chan struct{} // one send per blocked pull begun
	cancelled chan struct{} // one send per blocked pull whose context ended
}

func (p *blockingPuller) Pull(ctx context.Context, ref string, auth authn.Authenticator, progress func(pull.Progress)) (pull.Result, error) {
	if ref != p.block {
		return p.next.Pull(ctx, ref, auth, progress)
	}
	p.started <- struct{}{}
	<-ctx.Done()
	p.cancelled <- struct{}{}
	return pull.Result{}, ctx.Err()
}

// A pull that hangs delays no other pod, holds no lock of the agent's (the
// API lists pods meanwhile), and ends when its pod is deleted, without a
// failure event.
func TestSlowPullDelaysNoOtherPodAndEndsWithItsPod(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	bp := &blockingPuller{next: fakeRegistry{n.images}, block: "registry.example/slow:1", started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
	r.a.imageMgr.setPuller(bp)
	slow := pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  containers:
  - {name: app, image: "registry.example/slow:1"}
`)
	fast := simplePod(t, "fast", "Always")
	r.desire(slow)
	select {
	case <-bp.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow pull did not start")
	}
	r.desire(slow, fast)
	r.waitFor(t, "fast running while slow pulls", r.running("fast", 0))
	if st, _ := r.status("slow"); st.Phase != corev1.PodPending {
		t.Errorf("slow: phase %s while its image is being pulled", st.Phase)
	}
	r.desire(fast)
	select {
	case <-bp.cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the pull of a deleted pod's image was not cancelled")
	}
	r.waitFor(t, "slow gone", func() bool { _, ok := r.status("slow"); return !ok })
	if r.eventCount("Failed") != 0 {
		t.Errorf("a cancelled pull recorded Failed events: %v", r.a.events.List(""))
	}
}

// A pod that is gone leaves no back-off behind.
func TestForgetPodDropsItsBackOff(t *testing.T) {
	r := newImageRig(time.Second, pullAnswer{err: errors.New("manifest unknown")})
	p, c := imagePod("registry.example/app:1", corev1.PullAlways)
	r.m.ensureImage(context.Background(), p, c)
	key := backOffKey(p.UID, c.Image)
	if !r.m.backOff.IsInBackOffSinceUpdate(key, r.clock.Now()) {
		t.Fatal("no back-off after a failed pull")
	}
	r.m.forgetPod(p.UID)
	if r.m.backOff.IsInBackOffSinceUpdate(key, r.clock.Now()) || len(r.m.failed) != 0 {
		t.Error("the pod's back-off outlived it")
	}
}

// A store that cannot be read is kubelet's ImageInspectError, not a pull.
func TestUnreadableStoreIsAnInspectError(t *testing.T) {
	r := newImageRig(time.Second)
	r.m.images = brokenImages{r.images}
	p, c := imagePod("registry.example/app:1", corev1.PullAlways)
	_, f := r.m.ensureImage(context.Background(), p, c)
	want := `Failed to inspect image "registry.example/app:1": images.json: input/output error`
	if f == nil || f.reason != "ImageInspectError" || f.message != want {
		t.Errorf("got %+v", f)
	}
	if got := r.eventLines(); got != "Warning InspectFailed "+want+"\n" || r.puller.count() != 0 {
		t.Errorf("events:\n%s\npulls %d", got, r.puller.count())
	}
}

type brokenImages struct{ *fakeImages }

func (brokenImages) Resolve(string) (*runtime.Image, error) {
	return nil, errors.New("images.json: input/output error")
}

// agentd's stop ends a pull that would never end by itself.
func TestStopCancelsAPull(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	bp := &blockingPuller{next: fakeRegistry{n.images}, block: "registry.example/slow:1", started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
	r.a.imageMgr.setPuller(bp)
	r.desire(pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  containers:
  - {name: app, image: "registry.example/slow:1"}
`))
	select {
	case <-bp.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the pull did not start")
	}
	r.stop(t) // fails the test if the agent does not stop within a minute
	select {
	case <-bp.cancelled:
	default:
		t.Error("the agent stopped without cancelling the pull")
	}
}

// The API's pull: a reference the store could not hold is the request's
// fault; a pull lets a container waiting under the Never policy start at once.
func TestAPIPull(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	b := apiBackend{r.a}
	if _, err := b.PullImage(context.Background(), "../../etc", func(api.PullProgress) {}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("a hostile reference: %v, want ErrBadRequest", err)
	}
	if _, err := b.PullImage(context.Background(), "registry.example/absent:1", func(api.PullProgress) {}); err == nil || !strings.Contains(err.Error(), "pull registry.example/absent:1: ") {
		t.Errorf("a failing pull: %v", err)
	}

	r.desire(pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  containers:
  - {name: app, image: "registry.example/app:1", imagePullPolicy: Never}
`))
	r.waitFor(t, "ErrImageNeverPull", func() bool {
		st, _ := r.status("never")
		return len(st.ContainerStatuses) > 0 && st.ContainerStatuses[0].State.Waiting != nil &&
			st.ContainerStatuses[0].State.Waiting.Reason == "ErrImageNeverPull"
	})
	n.images.add("registry.example/app:1") // what the registry has
	res, err := b.PullImage(context.Background(), "registry.example/app:1", func(api.PullProgress) {})
	if err != nil || res.Image.ID != fakeImageID {
		t.Fatalf("pull: %+v, %v", res, err)
	}
	// Tried again now, not after ErrImageNeverPull's 10s.
	r.a.mu.Lock()
	for _, pr := range r.a.pods {
		if cr := pr.containers["app"]; pr.pod.Name == "never" && cr != nil && !cr.retryAt.IsZero() {
			t.Errorf("the container waits until %v after the pull", cr.retryAt)
		}
	}
	r.a.mu.Unlock()
	r.waitFor(t, "never running", r.running("never", 0))
}

// A pod whose image its registry lacks waits with ErrImagePull, then
// ImagePullBackOff, with kubelet's events; and starts once the image is there.
func TestAgentPullFailureThenBackOff(t *testing.T) {
	n := newNode(t)
	n.backoffBase = 400 * time.Millisecond // the loop looks every second: back-off shows from the third failure
	r := n.start(false)
	r.desire(pod(t, `
apiVersion: v1
kind: Pod
metadata: {name: pulling}
spec:
  containers:
  - {name: app, image: "registry.example/app:1"}
`))
	waiting := func(reason string) func() bool {
		return func() bool {
			st, _ := r.status("pulling")
			return len(st.ContainerStatuses) > 0 && st.ContainerStatuses[0].State.Waiting != nil &&
				st.ContainerStatuses[0].State.Waiting.Reason == reason
		}
	}
	r.waitFor(t, "ErrImagePull", waiting("ErrImagePull"))
	r.waitFor(t, "ImagePullBackOff", waiting("ImagePullBackOff"))
	for _, ev := range []struct{ reason, message string }{
		{"Pulling", `Pulling image "registry.example/app:1"`},
		{"Failed", `Failed to pull image "registry.example/app:1": registry.example/app:1: manifest unknown`},
		{"Failed", "Error: ErrImagePull"},
		{"BackOff", `Back-off pulling image "registry.example/app:1"`},
		{"Failed", "Error: ImagePullBackOff"},
	} {
		r.waitFor(t, ev.reason+" "+ev.message, func() bool { return r.hasEvent(ev.reason, ev.message) })
	}
	st, _ := r.status("pulling")
	if msg := st.ContainerStatuses[0].State.Waiting.Message; msg != `Back-off pulling image "registry.example/app:1": ErrImagePull: registry.example/app:1: manifest unknown` {
		t.Errorf("ImagePullBackOff message %q", msg)
	}
	n.images.add("registry.example/app:1")
	r.waitFor(t, "pulling running", r.running("pulling", 0))
}
