package agent

import (
	"errors"
	"testing"

	"github.com/agentd-project/agentd/agent/source"
)

// A manifest file that stays broken is reported once, not again at every change
// elsewhere in the directory (which would spend the node's budget of Warning
// events, the spam filter's); fixed and broken again, it is reported again.
func TestAgentInvalidManifestEventOncePerError(t *testing.T) {
	n := newNode(t)
	r := n.start(false)
	bad := func(path, msg string) source.FileError {
		return source.FileError{Path: path, Err: errors.New(msg), Reason: source.ReasonInvalid}
	}
	a := bad("/m/a.yaml", "spec.containers: Required value")
	b := bad("/m/b.yaml", "spec.affinity: not supported by agentd")
	c := bad("/m/c.yaml", "metadata.name: Required value")
	for _, errs := range [][]source.FileError{
		{a},
		{a, b}, // b is new; a is not reported again
		{a, b},
		{b},       // a fixed…
		{a, b},    // …and broken again: reported again
		{a, b, c}, // the last: once c is reported, all before it were applied
	} {
		r.snaps <- source.Snapshot{Errors: errs}
	}
	r.waitFor(t, "the last snapshot applied", func() bool { return r.hasEvent(source.ReasonInvalid, "/m/c.yaml") })
	want := map[string]int{a.Error(): 2, b.Error(): 1, c.Error(): 1}
	got := map[string]int{}
	for _, e := range r.a.events.List("") {
		if e.Reason == source.ReasonInvalid {
			got[e.Message] += int(e.Count)
		}
	}
	if len(got) != len(want) || got[a.Error()] != 2 || got[b.Error()] != 1 || got[c.Error()] != 1 {
		t.Errorf("InvalidManifest events by message: %v, want %v", got, want)
	}
}
