package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
)

// Reasons of a FileError.
const (
	// ReasonInvalid: the file is not a valid manifest (syntax, fields, size, type).
	ReasonInvalid = "InvalidManifest"
	// ReasonDuplicate: the pod is already defined by a file whose path sorts first.
	ReasonDuplicate = "DuplicatePod"
	// ReasonInsecure: the file, or the directory, could be changed by someone other than root.
	ReasonInsecure = "InsecureManifest"
	// ReasonDirUnavailable: the directory is missing, not a directory or cannot be listed.
	ReasonDirUnavailable = "ManifestDirUnavailable"
)

// DefaultRelist is how often Run lists the directory when Config.Relist is not set.
const DefaultRelist = 20 * time.Second

// A burst of events (an editor's save, `cp *.yaml`, an unpacked archive) becomes one
// scan: debounce after the last event, but at most maxDelay after the first.
const (
	debounce = 5 * time.Millisecond
	maxDelay = 50 * time.Millisecond
)

// FileError is a manifest file that could not be used. For a problem of the
// directory itself, Path is the directory.
type FileError struct {
	Path string
	Err  error
	// Reason is ReasonInvalid, ReasonDuplicate, ReasonInsecure or ReasonDirUnavailable.
	Reason string
}

func (e FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e FileError) Unwrap() error { return e.Err }

// Snapshot is the whole desired state of the directory at one moment. The receiver
// owns it: Run never touches a Snapshot after sending it.
type Snapshot struct {
	// Pods are parsed by spec.ParseFile (a Pod, or a PodList's items) with the
	// file's path and the node name; sorted
	// by namespace/name.
	Pods []*corev1.Pod
	// Errors lists every file that was skipped, with why; sorted by path.
	Errors []FileError
}

// Config configures Run.
type Config struct {
	// Dir is the manifest directory (manifest-dir). A relative path is made absolute.
	Dir string
	// NodeName goes into each pod's spec.nodeName and UID (node-name).
	NodeName string
	// Relist is how often the directory is listed in full, whatever the watch says;
	// DefaultRelist if zero.
	Relist time.Duration
	// Log receives one line per change: a file refused or usable again, watch problems.
	Log logr.Logger

	// noWatch turns the fsnotify watch off, so tests can show what relisting alone finds.
	noWatch bool
	// rescan lets tests ask for a scan now: Run scans, then answers on the channel it received (buffered)
	// whether a snapshot waits to be sent. A test shows that a change sends nothing by asking once the change
	// is complete, rather than by waiting a while. Nil (never ready) outside tests.
	rescan chan chan bool
}

// Run watches the directory and relists it every Relist, and sends a whole Snapshot
// on start and after every change that changes the result; an identical rewrite or
// a touch sends nothing. While the receiver is slow, Run keeps watching and
// replaces the unsent snapshot with newer ones, so the receiver always gets the
// latest state. Run returns nil when ctx is done, and an error only for an unusable
// Config: a bad file, an insecure or missing directory or a failing watch never
// stop it (the snapshot says what is wrong, and the relist finds the fix).
func Run(ctx context.Context, cfg Config, out chan<- Snapshot) error {
	if cfg.Dir == "" {
		return errors.New("manifest source: no manifest directory configured")
	}
	if out == nil {
		return errors.New("manifest source: nil output channel")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return fmt.Errorf("manifest source: directory %q: %w", cfg.Dir, err)
	}
	if cfg.Relist <= 0 {
		cfg.Relist = DefaultRelist
	}
	r := &runner{
		cfg:     cfg,
		dir:     dir,
		log:     cfg.Log.WithValues("dir", dir),
		scanner: newScanner(dir, cfg.NodeName),
	}
	defer r.closeWatch()
	r.loop(ctx, out)
	return nil
}

// fileID identifies a directory across renames: a directory replaced by another
// of the same name needs a new watch.
type fileID struct{ dev, ino uint64 }

// runner is the state of one Run; only its goroutine touches it.
type runner struct {
	cfg     Config
	dir     string
	log     logr.Logger
	scanner *scanner

	watcher       *fsnotify.Watcher // nil until created, or when creating it failed
	watchedDir    fileID            // the directory the watch is on; zero if none
	parentWatched bool              // the parent is watched too, to see the directory come back
	watchErr      string            // the last watch problem logged, to log each once

	loggedErrs   map[string]string // path → reason and message of its last logged error
	loggedOthers map[string]bool   // names of non-manifest files already logged
}

func (r *runner) loop(ctx context.Context, out chan<- Snapshot) {
	relist := time.NewTicker(r.cfg.Relist)
	defer relist.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	recheck := time.NewTimer(time.Hour) // a file that was being written is looked at again
	recheck.Stop()
	defer recheck.Stop()
	var burst time.Time // first event of the burst being debounced; zero if none

	var (
		last    state // the state last sent or pending
		started bool
		pending Snapshot
		unsent  bool
	)
	scan := func() {
		st := r.scan()
		if at := r.scanner.recheck; !at.IsZero() {
			recheck.Reset(time.Until(at))
		}
		if started && st.equal(last) {
			return
		}
		started, last = true, st
		pending, unsent = st.snapshot(), true
	}

	scan()
	for {
		var send chan<- Snapshot
		if unsent {
			send = out
		}
		var events <-chan fsnotify.Event
		var errs <-chan error
		if r.watcher != nil {
			events, errs = r.watcher.Events, r.watcher.Errors
		}
		select {
		case <-ctx.Done():
			return
		case send <- pending:
			pending, unsent = Snapshot{}, false
			r.log.V(1).Info("Sent manifest snapshot", "pods", len(last.pods), "errors", len(last.errors))
		case ev, ok := <-events:
			if !ok { // the watch died; rebuild it
				r.closeWatch()
				scan()
				continue
			}
			if !r.relevant(ev) {
				continue
			}
			now := time.Now()
			if burst.IsZero() {
				burst = now
			}
			settle.Reset(min(debounce, burst.Add(maxDelay).Sub(now)))
		case err, ok := <-errs:
			if !ok { // the watch died; rebuild it
				r.closeWatch()
				scan()
				continue
			}
			// ErrEventOverflow means events were lost: only a full list is right.
			r.log.Error(err, "Manifest directory watch failed; relisting")
			scan()
		case <-settle.C:
			burst = time.Time{}
			scan()
		case <-relist.C:
			scan()
		case <-recheck.C:
			scan()
		case reply := <-r.cfg.rescan:
			scan()
			reply <- unsent
		}
	}
}

// relevant says whether an event can change the snapshot: it is about a manifest
// file in the directory or about the directory itself (seen from it or from its
// parent).
func (r *runner) relevant(ev fsnotify.Event) bool {
	if ev.Name == r.dir {
		return true
	}
	return filepath.Dir(ev.Name) == r.dir && considered(filepath.Base(ev.Name))
}

// scan makes sure the watch is on the current directory, then lists it: in that
// order, nothing written after the listing goes unseen.
func (r *runner) scan() state {
	r.ensureWatch()
	st, others := r.scanner.scan()
	r.logChanges(st, others)
	return st
}

// ensureWatch watches the directory and its parent, and moves the watch to a new
// directory of the same name when the old one was removed or replaced.
func (r *runner) ensureWatch() {
	if r.cfg.noWatch {
		return
	}
	var id fileID
	if fi, err := os.Stat(r.dir); err == nil && fi.IsDir() {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			id = fileID{uint64(st.Dev), st.Ino}
		}
	}
	if r.watcher != nil && r.watchedDir != (fileID{}) && r.watchedDir != id {
		r.closeWatch() // the old directory's watch may linger; start afresh
	}
	var problems []error
	if r.watcher == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			r.noteWatch(fmt.Errorf("cannot create an inotify watch: %w", err))
			return
		}
		r.watcher = w
	}
	if parent := filepath.Dir(r.dir); !r.parentWatched && parent != r.dir {
		if err := r.watcher.Add(parent); err == nil {
			r.parentWatched = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			problems = append(problems, fmt.Errorf("cannot watch %s: %w", parent, err))
		}
	}
	if id != (fileID{}) && r.watchedDir != id {
		if err := r.watcher.Add(r.dir); err != nil {
			problems = append(problems, fmt.Errorf("cannot watch %s: %w", r.dir, err))
		} else {
			r.watchedDir = id
		}
	}
	r.noteWatch(errors.Join(problems...))
}

// noteWatch logs a watch problem, or its end, once.
func (r *runner) noteWatch(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == r.watchErr {
		return
	}
	if err != nil {
		r.log.Error(err, "Cannot watch manifest directory; changes are seen at the next relist", "relist", r.cfg.Relist)
	} else {
		r.log.Info("Watching manifest directory again")
	}
	r.watchErr = msg
}

func (r *runner) closeWatch() {
	if r.watcher != nil {
		r.watcher.Close()
	}
	r.watcher, r.watchedDir, r.parentWatched = nil, fileID{}, false
}

// logChanges logs each refused file once when it is first refused or its error
// changes, and once when it is no longer refused.
func (r *runner) logChanges(st state, others []string) {
	errs := make(map[string]string, len(st.errors))
	for _, e := range st.errors {
		key := e.Reason + "\x00" + e.Err.Error()
		errs[e.Path] = key
		if r.loggedErrs[e.Path] == key {
			continue
		}
		if e.Path == r.dir {
			r.log.Error(e.Err, "Not running pods from manifest directory", "reason", e.Reason)
		} else {
			r.log.Error(e.Err, "Could not process manifest file", "path", e.Path, "reason", e.Reason)
		}
	}
	for path := range r.loggedErrs {
		if _, still := errs[path]; !still {
			r.log.Info("Manifest file no longer refused", "path", path)
		}
	}
	r.loggedErrs = errs

	seen := make(map[string]bool, len(others))
	for _, name := range others {
		seen[name] = true
		if !r.loggedOthers[name] {
			r.log.Info("Ignoring file in manifest directory: its name does not end in .yaml, .yml or .json",
				"path", filepath.Join(r.dir, name))
		}
	}
	r.loggedOthers = seen
}
