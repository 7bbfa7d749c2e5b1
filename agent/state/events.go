// Package state holds what the agent knows besides its inputs: the event store and
// the pure functions that turn monitor journals into core/v1 pod status.
package state

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Event types, as Kubernetes'.
const (
	Normal  = corev1.EventTypeNormal
	Warning = corev1.EventTypeWarning
)

// Recorder is a bounded store of Kubernetes-style events that folds them as
// kubelet's event correlator (client-go's tools/record) does before they reach
// the API:
//
//   - A repeat of an event (same object, type, reason and message) raises its
//     count and last timestamp instead of adding one: kubectl describe shows it
//     as "20s (x5 over 2m)".
//   - Events of one object, type and reason with differing messages are kept
//     apart up to AggregateMaxEvents distinct messages within AggregateInterval;
//     past that, they fold into one event whose message is the latest one after
//     "(combined from similar events): ".
//   - With the spam filter on (RecorderOptions.SpamFilter; agentd turns it on),
//     events past client-go's EventSourceObjectSpamFilter budget are dropped:
//     per source, object and type a burst of SpamBurst, then one per 5 minutes.
//
// It is safe for concurrent use.
type Recorder struct {
	host string
	max  int
	now  func() time.Time
	spam *spamFilter // nil: off
	log  logr.Logger

	// observe, if set, is told of every event (the events counter); set before use.
	observe func(typ, reason string)

	mu      sync.Mutex // guards events, byKey, similar, seq
	events  []*corev1.Event
	byKey   map[string]*corev1.Event
	similar map[string]*similarEvents // by aggregate key (the event key without its message)
	seq     int
}

// The event correlator's defaults (client-go tools/record).
const (
	AggregateMaxEvents = 10
	AggregateInterval  = 10 * time.Minute
	combinedPrefix     = "(combined from similar events): "
)

// similarEvents are the distinct messages seen of one aggregate key since last
// was more than AggregateInterval ago.
type similarEvents struct {
	messages map[string]bool
	last     time.Time
}

// NewRecorder keeps at most max events, dropping the oldest; it has no spam filter.
func NewRecorder(host string, max int) *Recorder {
	return NewRecorderWithOptions(host, max, RecorderOptions{})
}

// RecorderOptions are a Recorder's optional settings.
type RecorderOptions struct {
	// SpamFilter drops the events past client-go's spam budget (see Recorder).
	SpamFilter bool
	// Clock is the time events are stamped with and buckets refill by; nil is the
	// wall clock.
	Clock clock.PassiveClock
	// Log is told of dropped events, at V(4) as client-go's recorder.
	Log logr.Logger
}

// NewRecorderWithOptions keeps at most max events, dropping the oldest.
func NewRecorderWithOptions(host string, max int, o RecorderOptions) *Recorder {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	r := &Recorder{host: host, max: max, now: o.Clock.Now, log: o.Log, byKey: map[string]*corev1.Event{}, similar: map[string]*similarEvents{}}
	if o.SpamFilter {
		r.spam = newSpamFilter(o.Clock)
	}
	return r
}

const sourceComponent = "agentd"

// aggregate applies the aggregation rule to an event of aggregate key agg about
// fieldPath: it returns the key the event is stored under and its message.
// Callers hold mu.
func (r *Recorder) aggregate(agg, fieldPath, message string, now time.Time) (key, msg string) {
	se := r.similar[agg]
	if se == nil || now.Sub(se.last) > AggregateInterval {
		if len(r.similar) >= r.max {
			for k, v := range r.similar { // forget the stale ones
				if now.Sub(v.last) > AggregateInterval {
					delete(r.similar, k)
				}
			}
		}
		se = &similarEvents{messages: map[string]bool{}}
		r.similar[agg] = se
	}
	se.last = now
	se.messages[message] = true
	if len(se.messages) < AggregateMaxEvents {
		return agg + "\x00" + fieldPath + "\x00" + message, message
	}
	return agg, combinedPrefix + message
}

// Object names what an event is about.
type Object struct {
	Kind      string // "Pod", or "Node" for agent-wide events
	Namespace string
	Name      string
	UID       types.UID
	FieldPath string // spec.containers{name}
}

// PodObject refers to a pod, or to one of its containers when container != "".
func PodObject(pod *corev1.Pod, container string) Object {
	o := Object{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	if container != "" {
		o.FieldPath = fmt.Sprintf("spec.containers{%s}", container)
		for _, c := range pod.Spec.InitContainers {
			if c.Name == container {
				o.FieldPath = fmt.Sprintf("spec.initContainers{%s}", container)
			}
		}
	}
	return o
}

// Event records one event.
func (r *Recorder) Event(obj Object, typ, reason, message string) {
	now := metav1.NewTime(r.now())
	if r.observe != nil {
		r.observe(typ, reason)
	}
	// The aggregate key is client-go's: the object without its field path (the
	// containers of a pod aggregate together), type and reason. The event key adds
	// the field path and the message.
	agg := string(obj.UID) + "\x00" + obj.Kind + "\x00" + obj.Namespace + "\x00" + obj.Name + "\x00" + typ + "\x00" + reason
	r.mu.Lock()
	defer r.mu.Unlock()
	k, message := r.aggregate(agg, obj.FieldPath, message, now.Time)
	// As client-go's correlator: aggregated first, then filtered.
	if r.spam != nil && !r.spam.allow(spamKey(&corev1.Event{
		InvolvedObject: corev1.ObjectReference{Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID, APIVersion: "v1"},
		Type:           typ,
		Source:         corev1.EventSource{Component: sourceComponent, Host: r.host},
	})) {
		r.log.V(4).Info("Event dropped by the spam filter", "kind", obj.Kind, "namespace", obj.Namespace, "name", obj.Name,
			"type", typ, "reason", reason, "message", message)
		return
	}
	if e, ok := r.byKey[k]; ok {
		e.Count++
		e.LastTimestamp = now
		e.Message = message
		return
	}
	r.seq++
	e := &corev1.Event{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              fmt.Sprintf("%s.%x", obj.Name, r.seq),
			Namespace:         obj.Namespace,
			CreationTimestamp: now,
		},
		InvolvedObject: corev1.ObjectReference{Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID, APIVersion: "v1", FieldPath: obj.FieldPath},
		Reason:         reason,
		Message:        message,
		Type:           typ,
		Count:          1,
		FirstTimestamp: now,
		LastTimestamp:  now,
		Source:         corev1.EventSource{Component: sourceComponent, Host: r.host},
	}
	r.events = append(r.events, e)
	r.byKey[k] = e
	if len(r.events) > r.max {
		old := r.events[0]
		r.events = r.events[1:]
		for key, v := range r.byKey {
			if v == old {
				delete(r.byKey, key)
				break
			}
		}
	}
}

// SetObserver has observe told the type and reason of every event recorded
// from now on, repeats included (agentd_events_total). Call it before the
// Recorder is used; observe must be safe for concurrent use and quick.
func (r *Recorder) SetObserver(observe func(typ, reason string)) { r.observe = observe }

// Eventf records an event with a formatted message.
func (r *Recorder) Eventf(obj Object, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

// List returns a copy of the events, oldest first by last timestamp. With uid set,
// only the events of that object.
func (r *Recorder) List(uid types.UID) []corev1.Event {
	r.mu.Lock()
	out := make([]corev1.Event, 0, len(r.events))
	for _, e := range r.events {
		if uid == "" || e.InvolvedObject.UID == uid {
			out = append(out, *e.DeepCopy())
		}
	}
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastTimestamp.Before(&out[j].LastTimestamp) })
	return out
}
