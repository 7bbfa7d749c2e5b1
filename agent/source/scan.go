package source

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/spec"
)

// racyWindow is how long after a file's last change its (size, mtime, inode) may
// still not tell one content from another: file systems stamp times with a coarse
// clock (a jiffy on ext4, a second or more on some), so two same-size writes in one
// tick look alike. Within it a relist reads and hashes the file again (as git
// re-checks "racily clean" index entries); it re-parses only if the hash changed.
const racyWindow = 2 * time.Second

// writeSettle is how long a manifest that is empty and was just changed counts as being written: `cat > f`, a
// shell redirection and cp truncate or create the file before they write it, and on a busy machine a scan can fall
// in between. Taken at its word, such a scan would stop the pod (or report an empty manifest) for a moment. Within
// writeSettle the file keeps what it held before (a new file is left out), and Run scans again when it is over, so
// a file emptied on purpose is reported then.
const writeSettle = time.Second

// fileKey is what stat says about one version of a file. A change of any of it
// means the file must be read again.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns since the epoch
}

func keyOf(fi fs.FileInfo) fileKey {
	k := fileKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.dev, k.ino = uint64(st.Dev), st.Ino
		k.ctime = st.Ctim.Nano()
	}
	return k
}

// cacheEntry is the parse result of one version of one file.
type cacheEntry struct {
	key     fileKey
	readAt  time.Time     // when the content was read, for the racy check
	sum     [32]byte      // of the content
	pods    []*corev1.Pod // one, or a PodList's items
	podSums [][32]byte    // of the pods as parsed, to tell a changed pod from a reformatted file
	err     error         // from spec.ParseFile
}

// trustKey says whether an unchanged key proves an unchanged content: only if the
// file had not changed for racyWindow when it was read.
func (e *cacheEntry) trustKey() bool {
	last := max(e.key.mtime, e.key.ctime)
	return last < e.readAt.Add(-racyWindow).UnixNano()
}

// fileResult is what one manifest file contributes to a snapshot: its pods (one,
// or a PodList's items) or an error.
type fileResult struct {
	path    string
	pods    []*corev1.Pod
	podSums [][32]byte
	err     error
	reason  string
}

// scanner lists the manifest directory. It keeps a parse cache between scans, so
// it is not safe for concurrent use; Run's goroutine owns it.
type scanner struct {
	dir      string
	nodeName string
	cache    map[string]*cacheEntry // by path
	now      func() time.Time

	// recheck is when the last scan's files being written (see writeSettle) must be looked at again; zero if none.
	recheck time.Time

	// counters for tests and debugging
	reads, parses int
}

func newScanner(dir, nodeName string) *scanner {
	return &scanner{dir: dir, nodeName: nodeName, cache: map[string]*cacheEntry{}, now: time.Now}
}

// scan lists the directory once and returns the desired state it holds, and the
// names of files that are neither manifests nor editor files (to tell the user).
func (s *scanner) scan() (st state, others []string) {
	s.recheck = time.Time{}
	if _, err := checkDir(s.dir); err != nil {
		reason := ReasonDirUnavailable
		if errors.Is(err, ErrInsecure) {
			reason = ReasonInsecure
		}
		clear(s.cache)
		return state{errors: []FileError{{Path: s.dir, Err: err, Reason: reason}}}, nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		clear(s.cache)
		return state{errors: []FileError{{Path: s.dir, Err: fmt.Errorf("manifest directory cannot be listed: %w", err),
			Reason: ReasonDirUnavailable}}}, nil
	}
	var files []fileResult
	seen := make(map[string]bool, len(entries))
	for _, de := range entries {
		name := de.Name()
		if !considered(name) {
			if !editorFile(name) && !de.IsDir() {
				others = append(others, name)
			}
			continue
		}
		path := filepath.Join(s.dir, name)
		seen[path] = true
		if r, ok := s.file(path); ok {
			files = append(files, r)
		}
	}
	for path := range s.cache {
		if !seen[path] {
			delete(s.cache, path)
		}
	}
	return assemble(files), others
}

// file reads one manifest, through the cache. It returns false for a file that is
// not a manifest after all (a directory) or is gone.
func (s *scanner) file(path string) (fileResult, bool) {
	invalid := func(err error) (fileResult, bool) {
		delete(s.cache, path)
		return fileResult{path: path, err: err, reason: ReasonInvalid}, true
	}
	fi, err := os.Stat(path) // follows a symlink: its target is what must be safe
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if target, lerr := os.Readlink(path); lerr == nil {
			return invalid(fmt.Errorf("manifest is a symbolic link to %s, which does not exist", target))
		}
		return fileResult{}, false // removed since the listing; its Remove event follows
	case err != nil:
		return invalid(fmt.Errorf("manifest cannot be read: %w", err))
	case fi.IsDir():
		return fileResult{}, false
	}
	if r, bad := s.refuse(path, fi); bad {
		return r, true
	}

	key := keyOf(fi)
	e := s.cache[path]
	if e != nil && e.key == key && e.trustKey() {
		return e.result(path), true
	}
	readAt := s.now()
	data, fi, err := readManifest(path)
	if err != nil {
		return invalid(fmt.Errorf("manifest cannot be read: %w", err))
	}
	if r, bad := s.refuse(path, fi); bad { // the file opened is not the file stat saw
		return r, true
	}
	s.reads++
	if s.beingWritten(data, fi, readAt) {
		if e != nil { // what it held before; its key no longer matches, so the next scan reads it again
			return e.result(path), true
		}
		return fileResult{}, false
	}
	sum := sha256.Sum256(data)
	if e != nil && e.sum == sum { // touched or rewritten with the same content
		e.key, e.readAt = keyOf(fi), readAt
		return e.result(path), true
	}
	s.parses++
	e = &cacheEntry{key: keyOf(fi), readAt: readAt, sum: sum}
	e.pods, e.err = spec.ParseFile(data, spec.Source{Path: path, NodeName: s.nodeName})
	for _, p := range e.pods {
		e.podSums = append(e.podSums, podSum(p))
	}
	s.cache[path] = e
	return e.result(path), true
}

// beingWritten says whether a file read empty changed too recently to be taken at its word (see writeSettle), and
// notes when to look at it again.
func (s *scanner) beingWritten(data []byte, fi fs.FileInfo, readAt time.Time) bool {
	if len(data) != 0 {
		return false
	}
	k := keyOf(fi)
	changed := time.Unix(0, max(k.mtime, k.ctime))
	if readAt.Sub(changed) >= writeSettle {
		return false
	}
	if at := changed.Add(writeSettle); s.recheck.IsZero() || at.Before(s.recheck) {
		s.recheck = at
	}
	return true
}

// refuse returns the error of a file that must not be read: not a regular file,
// writable by others than root, or too large.
func (s *scanner) refuse(path string, fi fs.FileInfo) (fileResult, bool) {
	var err error
	reason := ReasonInvalid
	switch {
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("manifest is %s, not a regular file", describeType(fi.Mode()))
	case fi.Size() > spec.MaxManifestSize:
		err = fmt.Errorf("manifest has %d bytes: %w", fi.Size(), spec.ErrTooLarge)
	default:
		if err = checkSecure("manifest", "its pod is not run", path, fi); err != nil {
			reason = ReasonInsecure
		}
	}
	if err == nil {
		return fileResult{}, false
	}
	delete(s.cache, path)
	return fileResult{path: path, err: err, reason: reason}, true
}

// readManifest reads a file that stat found small and regular, and returns the
// stat of the file it actually opened. O_NONBLOCK keeps a FIFO swapped in since
// the stat from hanging the agent; the limit keeps a file that grew since from
// costing more than MaxManifestSize.
func readManifest(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > spec.MaxManifestSize {
		return nil, fi, nil // refuse() says why
	}
	data, err := io.ReadAll(io.LimitReader(f, spec.MaxManifestSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > spec.MaxManifestSize {
		return nil, nil, fmt.Errorf("it grew past %d bytes while read: %w", spec.MaxManifestSize, spec.ErrTooLarge)
	}
	return data, fi, nil
}

func (e *cacheEntry) result(path string) fileResult {
	if e.err != nil {
		return fileResult{path: path, err: e.err, reason: ReasonInvalid}
	}
	return fileResult{path: path, pods: e.pods, podSums: e.podSums}
}

func podSum(pod *corev1.Pod) [32]byte {
	js, err := json.Marshal(pod)
	if err != nil {
		panic(fmt.Sprintf("source: a core/v1 Pod cannot fail to marshal: %v", err))
	}
	return sha256.Sum256(js)
}

// state is the desired state of the directory, in snapshot order, with what it
// takes to compare two of them.
type state struct {
	pods   []podEntry  // sorted by namespace/name
	errors []FileError // sorted by path
}

type podEntry struct {
	pod *corev1.Pod // shared with the cache: never modified
	sum [32]byte
}

// assemble turns the files of one scan into a state. Files are taken in path
// order, so of two files that declare the same pod, the one whose path sorts first
// wins, whatever order they were written in.
func assemble(files []fileResult) state {
	files = append([]fileResult(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	type claim struct{ path, name string }
	byName := map[string]claim{}
	byUID := map[types.UID]claim{}
	var st state
	for _, f := range files {
		if f.err != nil {
			st.errors = append(st.errors, FileError{Path: f.path, Err: f.err, Reason: f.reason})
			continue
		}
		for i, pod := range f.pods {
			name := pod.Namespace + "/" + pod.Name
			if c, dup := byName[name]; dup {
				st.errors = append(st.errors, FileError{Path: f.path, Reason: ReasonDuplicate,
					Err: fmt.Errorf("pod %s is already defined in %s", name, c.path)})
				continue
			}
			if c, dup := byUID[pod.UID]; dup { // only with metadata.uid set by hand
				st.errors = append(st.errors, FileError{Path: f.path, Reason: ReasonDuplicate,
					Err: fmt.Errorf("pod %s has uid %s, which pod %s in %s already has", name, pod.UID, c.name, c.path)})
				continue
			}
			byName[name] = claim{f.path, name}
			byUID[pod.UID] = claim{f.path, name}
			st.pods = append(st.pods, podEntry{pod: pod, sum: f.podSums[i]})
		}
	}
	sort.Slice(st.pods, func(i, j int) bool {
		a, b := st.pods[i].pod, st.pods[j].pod
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return st
}

// equal says whether two states would make the same snapshot: the same pods (by
// UID and content) and the same errors (by path, reason and message).
func (s state) equal(o state) bool {
	if len(s.pods) != len(o.pods) || len(s.errors) != len(o.errors) {
		return false
	}
	for i := range s.pods {
		if s.pods[i].pod.UID != o.pods[i].pod.UID || s.pods[i].sum != o.pods[i].sum {
			return false
		}
	}
	for i := range s.errors {
		a, b := s.errors[i], o.errors[i]
		if a.Path != b.Path || a.Reason != b.Reason || a.Err.Error() != b.Err.Error() {
			return false
		}
	}
	return true
}

// snapshot returns the state as a Snapshot the receiver owns: the pods are copies.
func (s state) snapshot() Snapshot {
	snap := Snapshot{Pods: make([]*corev1.Pod, len(s.pods)), Errors: append([]FileError(nil), s.errors...)}
	for i, p := range s.pods {
		snap.Pods[i] = p.pod.DeepCopy()
	}
	return snap
}
