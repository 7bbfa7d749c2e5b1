package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/imagegc"
	"github.com/agentd-project/agentd/agent/state"
)

// newImageGC is the image garbage collector of store: it reads the usage of the
// filesystem holding the store, and counts as in use every image a container
// of the agent's pods was made from or is being made from.
func (a *Agent) newImageGC(store *image.Store) *imagegc.Collector {
	stats := func() (uint64, uint64, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(store.Dir(), &st); err != nil {
			return 0, 0, err
		}
		return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
	}
	return imagegc.New(store, stats, a.imagesInUse, a.log.WithName("imagegc"))
}

// imagesInUse are the IDs of the images of every container the agent has,
// whatever its state, and of those being started.
func (a *Agent) imagesInUse() map[string]bool {
	a.mu.Lock()
	ids := make([]string, 0, len(a.pods))
	for _, pr := range a.pods {
		for _, c := range pr.containers {
			ids = append(ids, c.id)
		}
	}
	used := map[string]bool{}
	for id, n := range a.imagesStarting {
		if n > 0 {
			used[id] = true
		}
	}
	a.mu.Unlock()
	for _, id := range ids {
		if img := a.status.Info(id).ImageID; img != "" {
			used[img] = true
		}
	}
	return used
}

// imageInUse says whether a container uses image id (imagesInUse), and if so
// names it (imageUser): the check both `agentctl image rm` and the CRI's
// RemoveImage make before they remove an image.
func (a *Agent) imageInUse(id string) (user string, used bool) {
	if !a.imagesInUse()[id] {
		return "", false
	}
	return a.imageUser(id), true
}

// imageUser names a container made from image id, for messages.
func (a *Agent) imageUser(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, pr := range a.pods {
		for name, c := range pr.containers {
			if a.status.Info(c.id).ImageID == id {
				return fmt.Sprintf("container %s of pod %s/%s", name, pr.pod.Namespace, pr.pod.Name)
			}
		}
	}
	return "a container being started"
}

// startingImage marks image id in use while a container is made from it: a
// collection in between leaves it. The returned func ends the mark.
func (a *Agent) startingImage(id string) func() {
	if a.gc != nil {
		a.gc.Used(id)
	}
	a.mu.Lock()
	a.imagesStarting[id]++
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		if a.imagesStarting[id]--; a.imagesStarting[id] <= 0 {
			delete(a.imagesStarting, id)
		}
		a.mu.Unlock()
	}
}

// SetImageGC changes the image garbage collection's policy and period (SIGHUP).
func (a *Agent) SetImageGC(p imagegc.Policy, period time.Duration) {
	if a.gc == nil {
		return
	}
	a.gc.SetPolicy(p)
	a.gcPeriod.Store(int64(period))
	select {
	case a.gcKick <- struct{}{}:
	default:
	}
}

// runImageGC collects images every period until ctx is done. Like kubelet, it
// records FreeDiskSpaceFailed when a collection could not free enough, and
// ImageGCFailed when two collections in a row failed.
func (a *Agent) runImageGC(ctx context.Context) {
	failedBefore := false
	for {
		period := time.Duration(a.gcPeriod.Load())
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		case <-a.gcKick:
			continue // the new period
		}
		_, err := a.gc.GarbageCollect(ctx)
		var fse *imagegc.FreeSpaceError
		if errors.As(err, &fse) {
			a.events.Event(a.nodeObject(), state.Warning, "FreeDiskSpaceFailed", err.Error())
		}
		switch {
		case err == nil:
			failedBefore = false
		case failedBefore:
			a.log.Error(err, "Image garbage collection failed multiple times in a row")
			a.events.Event(a.nodeObject(), state.Warning, "ImageGCFailed", err.Error())
		default:
			a.log.Error(err, "Image garbage collection failed once; stats initialization may not have completed yet")
			failedBefore = true
		}
	}
}
