package imagegc

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/image"
)

// fakeStore frees each removed image's size on a fake filesystem.
type fakeStore struct {
	mu        sync.Mutex
	images    []image.Image
	capacity  uint64
	available uint64
	removed   []string
	failOn    string
}

func (s *fakeStore) List() ([]image.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.images), nil
}

func (s *fakeStore) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref == s.failOn {
		return errors.New("busy")
	}
	for i, img := range s.images {
		if img.ID == ref {
			s.images = slices.Delete(s.images, i, i+1)
			s.available += uint64(img.Size)
			s.removed = append(s.removed, ref)
			return nil
		}
	}
	return image.ErrNotFound
}

func (s *fakeStore) stats() (uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.capacity, s.available, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(used ...string) (*fakeStore, *Collector, *clock) {
	s := &fakeStore{capacity: 1000, available: 100}
	for _, id := range []string{"a", "b", "c", "d"} {
		s.images = append(s.images, image.Image{ID: id, Names: []string{"localhost/" + id + ":latest"}, Size: 60})
	}
	inUse := map[string]bool{}
	for _, id := range used {
		inUse[id] = true
	}
	clk := &clock{t: time.Unix(1e9, 0)}
	c := New(s, s.stats, func() map[string]bool { return inUse }, logr.Discard())
	c.now = clk.now
	return s, c, clk
}

func ids(imgs []image.Image) []string {
	var out []string
	for _, i := range imgs {
		out = append(out, i.ID)
	}
	return out
}

// Above the high threshold, unused images go least recently used first until
// the low threshold is reached; images in use and images younger than the
// minimum age stay.
func TestGarbageCollectByUsage(t *testing.T) {
	s, c, clk := setup("b")
	ctx := context.Background()
	// Everything is new: nothing may go yet, and that is reported.
	removed, err := c.GarbageCollect(ctx)
	var fse *FreeSpaceError
	if len(removed) != 0 || !errors.As(err, &fse) || fse.Want != 100 || fse.Found != 0 {
		t.Fatalf("young images: removed %v, err %v; want none and a FreeSpaceError for 100 bytes", ids(removed), err)
	}
	if want := "Failed to garbage collect required amount of images. Attempted to free 100 bytes, but only found 0 bytes eligible to free."; err.Error() != want {
		t.Errorf("message %q, want kubelet's %q", err, want)
	}

	clk.t = clk.t.Add(3 * time.Minute)
	c.Used("d") // d was used since: it goes last
	clk.t = clk.t.Add(time.Second)
	removed, err = c.GarbageCollect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 90% used (900 of 1000), low threshold 80%: 100 bytes to free, two images of 60.
	if got := ids(removed); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("removed %v, want [a c] (b in use, d used last)", got)
	}

	// Below the high threshold nothing goes.
	removed, err = c.GarbageCollect(ctx)
	if err != nil || len(removed) != 0 {
		t.Errorf("below the threshold: removed %v, err %v", ids(removed), err)
	}
	if !slices.Equal(s.removed, []string{"a", "c"}) {
		t.Errorf("store removals %v", s.removed)
	}
}

// MaxAge removes images unused for longer than it, whatever the disk's usage;
// a high threshold of 100 turns collection by usage off.
func TestGarbageCollectByAge(t *testing.T) {
	s, c, clk := setup("a")
	s.available = 900
	c.SetPolicy(Policy{HighThresholdPercent: 100, LowThresholdPercent: 80, MinAge: time.Minute, MaxAge: time.Hour})
	ctx := context.Background()
	if removed, err := c.GarbageCollect(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("first collection: %v %v", ids(removed), err)
	}
	clk.t = clk.t.Add(30 * time.Minute)
	c.Used("c")
	clk.t = clk.t.Add(31 * time.Minute)
	removed, err := c.GarbageCollect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(removed); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("removed %v, want [b d] (a in use, c used 31 minutes ago)", got)
	}
}

// Prune removes every unused image at once; a failure is reported and the rest
// still go.
func TestPrune(t *testing.T) {
	s, c, _ := setup("c")
	s.failOn = "b"
	removed, err := c.Prune(context.Background())
	if err == nil {
		t.Error("a failed removal was not reported")
	}
	if got := ids(removed); !slices.Equal(got, []string{"a", "d"}) {
		t.Errorf("pruned %v, want [a d]", got)
	}
	left, _ := s.List()
	if got := ids(left); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("left %v, want [b c]", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy.Validate(); err != nil {
		t.Errorf("default policy: %v", err)
	}
	for _, p := range []Policy{
		{HighThresholdPercent: 101, LowThresholdPercent: 80},
		{HighThresholdPercent: 80, LowThresholdPercent: 85},
		{HighThresholdPercent: 85, LowThresholdPercent: -1},
		{HighThresholdPercent: 85, LowThresholdPercent: 80, MinAge: time.Hour, MaxAge: time.Minute},
		{HighThresholdPercent: 85, LowThresholdPercent: 80, MinAge: -time.Second},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v: accepted", p)
		}
	}
}
