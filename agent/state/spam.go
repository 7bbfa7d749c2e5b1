package state

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// The spam filter's defaults, client-go's (tools/record, events_cache.go): per
// source and object and event type, a burst of 25 events, then one every 5 minutes,
// for the last 4096 such keys.
const (
	SpamBurst     = 25
	SpamQPS       = 1. / 300.
	SpamCacheSize = 4096
)

// spamFilter is client-go's EventSourceObjectSpamFilter: a token bucket per spam
// key (spamKey), in a bounded LRU cache, so that one object cannot flood the
// event store (kubelet's recorder drops the events it refuses). It is safe for
// concurrent use.
type spamFilter struct {
	cache *lru.Cache // spam key → flowcontrol.PassiveRateLimiter
	clock clock.PassiveClock
}

func newSpamFilter(c clock.PassiveClock) *spamFilter {
	return &spamFilter{cache: lru.New(SpamCacheSize), clock: c}
}

// allow reports whether an event of key may be recorded, and spends a token of
// its bucket when it may.
func (f *spamFilter) allow(key string) bool {
	var rl flowcontrol.PassiveRateLimiter
	if v, ok := f.cache.Get(key); ok {
		rl = v.(flowcontrol.PassiveRateLimiter)
	} else {
		rl = flowcontrol.NewTokenBucketPassiveRateLimiterWithClock(SpamQPS, SpamBurst, f.clock)
	}
	ok := rl.TryAccept()
	f.cache.Add(key, rl) // refreshes its place in the LRU
	return ok
}

// spamKey is client-go's getSpamKey: the event's source (component and host),
// its involved object (kind, namespace, name, UID, apiVersion) and its type. The
// reason and the message are not part of it: every Warning of one object shares
// one budget, the node's included (e.g. InvalidManifest events of different
// files), as every Warning about kubelet's node does.
func spamKey(e *corev1.Event) string {
	return strings.Join([]string{
		e.Source.Component,
		e.Source.Host,
		e.InvolvedObject.Kind,
		e.InvolvedObject.Namespace,
		e.InvolvedObject.Name,
		string(e.InvolvedObject.UID),
		e.InvolvedObject.APIVersion,
		e.Type,
	}, "")
}
