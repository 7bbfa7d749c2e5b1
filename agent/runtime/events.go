package runtime

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// EventType says what happened to a monitor.
type EventType string

const (
	// JournalChanged: a monitor rewrote its journal (a run began or ended, a
	// back-off began), or a relist found a journal different from the one last
	// reported. Event.Journal is the new journal.
	JournalChanged EventType = "JournalChanged"
	// MonitorDied: a monitor is gone while its container should still run, or
	// it died while starting (before it wrote a journal). Its container may still
	// run, unmanaged: Cleanup it. Event.Journal is its last journal, if any.
	MonitorDied EventType = "MonitorDied"
)

// Event is a change of one monitor, by its ID.
type Event struct {
	Type    EventType
	ID      string
	Journal *protocol.Journal
}

// DefaultRelistInterval is how often Watch looks at every monitor for what the
// journal watch cannot see: a monitor killed with -9 writes nothing.
const DefaultRelistInterval = 5 * time.Second

// IDs lists the monitors that have a state directory, without talking to them.
func (r *Runtime) IDs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.RunDir, "monitors"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && checkComponent("container id", e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Journal reads a monitor's journal.
func (r *Runtime) Journal(id string) (*protocol.Journal, error) {
	if err := checkComponent("container id", id); err != nil {
		return nil, err
	}
	return protocol.ReadJournal(r.stateDir(id))
}

// Watch reports, on the returned channel, every journal a monitor writes, and
// relists all monitors every Config.RelistInterval (kubelet's PLEG): a journal
// the watch missed (written before the watch began, or lost in an overflow) is
// reported then, and so is a monitor that died. Right after the watch begins,
// every journal is reported once. The channel closes when ctx is done; the
// receiver must keep reading until then.
func (r *Runtime) Watch(ctx context.Context) (<-chan Event, error) {
	dir := filepath.Join(r.cfg.RunDir, "monitors")
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	ids, _ := r.IDs()
	for _, id := range ids {
		_ = w.Add(filepath.Join(dir, id))
	}
	out := make(chan Event, 64)
	rl := &relister{r: r, out: out, reported: map[string]*protocol.Journal{}}
	interval := r.cfg.RelistInterval
	if interval <= 0 {
		interval = DefaultRelistInterval
	}
	go func() {
		defer close(out)
		defer w.Close()
		rl.relist(ctx, false)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				rl.relist(ctx, true)
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Dir(ev.Name) == dir {
					if ev.Has(fsnotify.Create) {
						_ = w.Add(ev.Name) // a new monitor's directory
					}
					continue
				}
				if filepath.Base(ev.Name) == protocol.JournalFile && ev.Has(fsnotify.Create) {
					rl.journal(ctx, filepath.Base(filepath.Dir(ev.Name)), true)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.Error(err, "Journal watch")
			}
		}
	}()
	return out, nil
}

// relister remembers what Watch reported, so that a relist reports changes only.
// It is used by Watch's goroutine alone.
type relister struct {
	r        *Runtime
	out      chan<- Event
	reported map[string]*protocol.Journal // last journal reported, by monitor ID
}

func (rl *relister) send(ctx context.Context, ev Event) {
	select {
	case rl.out <- ev:
	case <-ctx.Done():
	}
}

// journal reports a monitor's journal when it differs from the last one
// reported (always, when force is set).
func (rl *relister) journal(ctx context.Context, id string, force bool) *protocol.Journal {
	j, err := rl.r.Journal(id)
	if err != nil {
		return nil
	}
	if force || JournalDiffers(rl.reported[id], j) {
		rl.reported[id] = j
		rl.send(ctx, Event{Type: JournalChanged, ID: id, Journal: j})
	}
	return j
}

// relist looks at every monitor once: journals that changed, and monitors that
// died. The first relist (check false) reports every journal and checks no
// monitor's life: a monitor that is starting is looked at from the next one. A
// dead monitor is reported at every relist until its exit is recorded (Cleanup)
// or its state is removed: a clean-up that failed is tried again.
func (rl *relister) relist(ctx context.Context, check bool) {
	ids, err := rl.r.IDs()
	if err != nil {
		return
	}
	present := map[string]bool{}
	var starting []string
	for _, id := range ids {
		present[id] = true
		j := rl.journal(ctx, id, !check)
		switch {
		case !check:
		case j == nil:
			starting = append(starting, id)
		case j.State != protocol.StateExited && !protocol.Locked(rl.r.stateDir(id)) && !protocol.ProcessAlive(j.MonitorPid, j.MonitorStart):
			rl.send(ctx, Event{Type: MonitorDied, ID: id, Journal: j})
		}
	}
	// No journal yet: a monitor being started. A short look each, side by side:
	// a monitor still creating its container is looked at again next time.
	var mu sync.Mutex
	var dead []string
	var wg sync.WaitGroup
	for _, id := range starting {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			ictx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			m := rl.r.Inspect(ictx, id)
			cancel()
			if m.State == MonitorDead || m.State == MonitorBroken {
				mu.Lock()
				dead = append(dead, id)
				mu.Unlock()
			}
		}(id)
	}
	wg.Wait()
	for _, id := range dead {
		rl.send(ctx, Event{Type: MonitorDied, ID: id})
	}
	for id := range rl.reported {
		if !present[id] {
			delete(rl.reported, id)
		}
	}
}

// JournalDiffers says whether journal b tells anything a may not: another state,
// restart count, number of runs, or an exit of the current run.
func JournalDiffers(a, b *protocol.Journal) bool {
	if a == nil || b == nil {
		return a != b
	}
	if a.State != b.State || a.RestartCount != b.RestartCount || len(a.Runs) != len(b.Runs) {
		return true
	}
	ca, cb := a.Current(), b.Current()
	return ca != nil && cb != nil && (ca.Exit == nil) != (cb.Exit == nil)
}
