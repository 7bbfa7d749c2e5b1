// Package imagegc removes images no container uses when the image store's
// filesystem fills up, as kubelet's image garbage collector does
// (pkg/kubelet/images/image_gc_manager.go):
//
//   - Every period, images unused for longer than MaxAge are removed (when
//     MaxAge is set), then, if the filesystem holding the store is at least
//     HighThresholdPercent full, unused images are removed, least recently
//     used first, until it would be LowThresholdPercent full.
//   - An image is in use while any container the agent knows (running,
//     exited, being started) was made from it; images first seen less than
//     MinAge ago are kept, so an image imported or pulled for a pod that has
//     not started yet stays.
//   - When not enough can be freed, the error says how much was wanted and
//     found (kubelet's FreeDiskSpaceFailed event).
//
// Last-used times are kept in memory, as kubelet keeps them: after a restart
// every image counts as first seen then.
package imagegc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/image"
)

// Policy is kubelet's image GC policy (imageGCHighThresholdPercent,
// imageGCLowThresholdPercent, imageMinimumGCAge, imageMaximumGCAge).
type Policy struct {
	HighThresholdPercent int // 100 disables collection by disk usage
	LowThresholdPercent  int
	MinAge               time.Duration
	MaxAge               time.Duration // 0: images are not removed for their age
}

// DefaultPolicy is kubelet's default.
var DefaultPolicy = Policy{HighThresholdPercent: 85, LowThresholdPercent: 80, MinAge: 2 * time.Minute}

// Validate says what is wrong with p, naming kubelet's rules.
func (p Policy) Validate() error {
	switch {
	case p.HighThresholdPercent < 0 || p.HighThresholdPercent > 100:
		return fmt.Errorf("high threshold %d%% is not between 0 and 100", p.HighThresholdPercent)
	case p.LowThresholdPercent < 0 || p.LowThresholdPercent > 100:
		return fmt.Errorf("low threshold %d%% is not between 0 and 100", p.LowThresholdPercent)
	case p.LowThresholdPercent > p.HighThresholdPercent:
		return fmt.Errorf("low threshold %d%% is above the high threshold %d%%", p.LowThresholdPercent, p.HighThresholdPercent)
	case p.MinAge < 0 || p.MaxAge < 0:
		return errors.New("ages must not be negative")
	case p.MaxAge != 0 && p.MaxAge < p.MinAge:
		return fmt.Errorf("maximum age %s is below the minimum age %s", p.MaxAge, p.MinAge)
	}
	return nil
}

// Store is the image store as the collector sees it.
type Store interface {
	List() ([]image.Image, error)
	Remove(ref string) error
}

// FSStats reports the capacity and the available bytes of the filesystem
// holding the store.
type FSStats func() (capacity, available uint64, err error)

// InUse reports the IDs of the images containers use.
type InUse func() map[string]bool

// FreeSpaceError is a collection that could not free what the high threshold
// asked for.
type FreeSpaceError struct{ Want, Found int64 }

func (e *FreeSpaceError) Error() string {
	return fmt.Sprintf("Failed to garbage collect required amount of images. Attempted to free %d bytes, but only found %d bytes eligible to free.", e.Want, e.Found)
}

// Collector is the image garbage collector. Its methods are safe for
// concurrent use; collections run one at a time.
type Collector struct {
	store Store
	stats FSStats
	inUse InUse
	log   logr.Logger
	now   func() time.Time

	run sync.Mutex // one collection or prune at a time

	mu      sync.Mutex // guards the fields below
	policy  Policy
	records map[string]*record // by image ID
}

type record struct {
	firstDetected, lastUsed time.Time
}

// New returns a collector with kubelet's default policy.
func New(store Store, stats FSStats, inUse InUse, log logr.Logger) *Collector {
	return &Collector{store: store, stats: stats, inUse: inUse, log: log, now: time.Now, policy: DefaultPolicy, records: map[string]*record{}}
}

// SetPolicy changes the policy (agentd's SIGHUP); p must be valid.
func (c *Collector) SetPolicy(p Policy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.policy = p
}

// Used notes that a container is being made from image id now.
func (c *Collector) Used(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	r := c.records[id]
	if r == nil {
		r = &record{firstDetected: now}
		c.records[id] = r
	}
	r.lastUsed = now
}

// candidates lists the store's images, updates the records (new images are
// first detected now, images in use are used now, gone ones forgotten) and
// returns the unused ones, least recently used first.
func (c *Collector) candidates() ([]image.Image, map[string]record, error) {
	imgs, err := c.store.List()
	if err != nil {
		return nil, nil, err
	}
	used := c.inUse()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	seen := map[string]bool{}
	var unused []image.Image
	for _, img := range imgs {
		seen[img.ID] = true
		r := c.records[img.ID]
		if r == nil {
			r = &record{firstDetected: now}
			c.records[img.ID] = r
		}
		if used[img.ID] {
			r.lastUsed = now
			continue
		}
		unused = append(unused, img)
	}
	for id := range c.records {
		if !seen[id] {
			delete(c.records, id)
		}
	}
	snap := make(map[string]record, len(c.records))
	for id, r := range c.records {
		snap[id] = *r
	}
	slices.SortStableFunc(unused, func(a, b image.Image) int {
		ra, rb := snap[a.ID], snap[b.ID]
		if n := ra.lastUsed.Compare(rb.lastUsed); n != 0 {
			return n
		}
		if n := ra.firstDetected.Compare(rb.firstDetected); n != 0 {
			return n
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return unused, snap, nil
}

// GarbageCollect runs one collection: images too old, then, above the high
// threshold, unused images until the low threshold is reached. It returns what
// it removed; a *FreeSpaceError when it could not free enough.
func (c *Collector) GarbageCollect(ctx context.Context) ([]image.Image, error) {
	c.run.Lock()
	defer c.run.Unlock()
	c.mu.Lock()
	p := c.policy
	c.mu.Unlock()
	unused, recs, err := c.candidates()
	if err != nil {
		return nil, err
	}
	now := c.now()
	var removed []image.Image
	remove := func(img image.Image, why string) bool {
		if err := c.store.Remove(img.ID); err != nil {
			c.log.Error(err, "Could not remove image", "image", img.ID, "names", img.Names)
			return false
		}
		c.log.Info("Removed image", "image", img.ID, "names", img.Names, "size", img.Size, "reason", why)
		removed = append(removed, img)
		return true
	}
	if p.MaxAge > 0 {
		kept := unused[:0]
		for _, img := range unused {
			r := recs[img.ID]
			last := r.lastUsed
			if last.IsZero() {
				last = r.firstDetected
			}
			if now.Sub(last) > p.MaxAge && ctx.Err() == nil && remove(img, fmt.Sprintf("unused for more than %s", p.MaxAge)) {
				continue
			}
			kept = append(kept, img)
		}
		unused = kept
	}
	if p.HighThresholdPercent >= 100 {
		return removed, nil
	}
	capacity, available, err := c.stats()
	if err != nil {
		return removed, fmt.Errorf("image filesystem: %w", err)
	}
	if capacity == 0 {
		return removed, errors.New("image filesystem reports no capacity")
	}
	usage := 100 - int(available*100/capacity)
	if usage < p.HighThresholdPercent {
		return removed, nil
	}
	want := int64(capacity)*int64(100-p.LowThresholdPercent)/100 - int64(available)
	c.log.Info("Image filesystem above the high threshold: removing unused images", "usage", usage, "highThreshold", p.HighThresholdPercent, "bytesToFree", want)
	var freed int64
	for _, img := range unused {
		if freed >= want || ctx.Err() != nil {
			break
		}
		if now.Sub(recs[img.ID].firstDetected) < p.MinAge {
			continue
		}
		if remove(img, fmt.Sprintf("image filesystem %d%% full, high threshold %d%%", usage, p.HighThresholdPercent)) {
			freed += img.Size
		}
	}
	if freed < want {
		return removed, &FreeSpaceError{Want: want, Found: freed}
	}
	return removed, nil
}

// Prune removes every image no container uses, whatever its age and the
// disk's usage (`crictl rmi --prune`).
func (c *Collector) Prune(ctx context.Context) ([]image.Image, error) {
	c.run.Lock()
	defer c.run.Unlock()
	unused, _, err := c.candidates()
	if err != nil {
		return nil, err
	}
	var removed []image.Image
	var errs []error
	for _, img := range unused {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		if err := c.store.Remove(img.ID); err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w", img.ID, err))
			continue
		}
		c.log.Info("Removed image", "image", img.ID, "names", img.Names, "reason", "pruned")
		removed = append(removed, img)
	}
	return removed, errors.Join(errs...)
}
