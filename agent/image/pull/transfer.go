package pull

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// watchdog cancels what receives no byte for its timeout. Each download (and
// the manifest fetch) is an activity, touched by every byte that arrives for
// it.
type watchdog struct {
	timeout time.Duration
	done    chan struct{}
	once    sync.Once

	mu     sync.Mutex
	active map[*activity]struct{} // guarded by mu
}

type activity struct {
	what   string
	cancel context.CancelCauseFunc
	last   atomic.Int64 // unix nanoseconds of the last byte
}

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

func newWatchdog(timeout time.Duration) *watchdog {
	return &watchdog{timeout: timeout, done: make(chan struct{}), active: map[*activity]struct{}{}}
}

// start registers an activity, cancelled through cancel when it stalls.
func (w *watchdog) start(what string, cancel context.CancelCauseFunc) *activity {
	a := &activity{what: what, cancel: cancel}
	a.touch()
	w.mu.Lock()
	w.active[a] = struct{}{}
	w.mu.Unlock()
	return a
}

func (w *watchdog) end(a *activity) {
	w.mu.Lock()
	delete(w.active, a)
	w.mu.Unlock()
}

func (w *watchdog) stop() { w.once.Do(func() { close(w.done) }) }

func (w *watchdog) run(ctx context.Context) {
	t := time.NewTicker(max(w.timeout/10, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case now := <-t.C:
			w.mu.Lock()
			for a := range w.active {
				if idle := now.Sub(time.Unix(0, a.last.Load())); idle >= w.timeout {
					a.cancel(fmt.Errorf("%s: no byte received for %s: %w", a.what, idle.Round(time.Millisecond), ErrNoProgress))
					delete(w.active, a)
				}
			}
			w.mu.Unlock()
		}
	}
}

type activityKey struct{}

func withActivity(ctx context.Context, a *activity) context.Context {
	return context.WithValue(ctx, activityKey{}, a)
}

// activityTransport touches the activity of a request's context when the
// response arrives and with every read of its body that returns bytes.
type activityTransport struct {
	inner http.RoundTripper
}

func (t *activityTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	a, _ := r.Context().Value(activityKey{}).(*activity)
	resp, err := t.inner.RoundTrip(r)
	if a != nil && resp != nil {
		a.touch()
		resp.Body = &touchBody{ReadCloser: resp.Body, a: a}
	}
	return resp, err
}

type touchBody struct {
	io.ReadCloser
	a *activity
}

func (b *touchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.a.touch()
	}
	return n, err
}

// transfer brings one image's layers from a source into the store.
type transfer struct {
	p       *Puller
	ctx     context.Context
	cancel  context.CancelCauseFunc
	src     *source
	ref     string
	staging *image.Staging
	wd      *watchdog
	report  func(Progress)
	sem     chan struct{}
	wg      sync.WaitGroup

	layers map[v1.Hash]*layerDL // by digest; written before the downloads start
}

// layerDL is one layer blob's download. The import reads the blob while it
// downloads (see followReader): cond tells it of every write.
type layerDL struct {
	desc v1.Descriptor
	once sync.Once // starts the download
	done chan struct{}

	mu   sync.Mutex
	cond *sync.Cond // on mu: written, file or finished changed
	// file is the blob's file while it downloads (partial is set, then
	// renamed to its final name); written how much of it is there.
	// Guarded by mu.
	file    string
	written int64
	// finished is set when the download ended, err when it failed (the
	// blob then is not to be read). Guarded by mu.
	finished bool
	err      error
}

func newLayerDL(desc v1.Descriptor) *layerDL {
	ld := &layerDL{desc: desc, done: make(chan struct{})}
	ld.cond = sync.NewCond(&ld.mu)
	return ld
}

// update changes the download's state under its lock and wakes readers.
func (ld *layerDL) update(f func()) {
	ld.mu.Lock()
	f()
	ld.cond.Broadcast()
	ld.mu.Unlock()
}

func (p *Puller) transfer(ctx context.Context, src *source, norm string, report func(Progress)) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m := src.manifst
	cf, err := v1.ParseConfigFile(strings.NewReader(string(src.rawCfg)))
	if err != nil {
		return Result{}, fmt.Errorf("parsing config %s: %w", m.Config.Digest, err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return Result{}, fmt.Errorf("manifest lists %d layers but config %s has %d diff IDs", len(m.Layers), m.Config.Digest, len(cf.RootFS.DiffIDs))
	}
	staging, err := p.store.NewStaging()
	if err != nil {
		return Result{}, err
	}
	t := &transfer{
		p: p, ctx: ctx, cancel: cancel, src: src, ref: norm, staging: staging,
		wd: newWatchdog(p.opts.ProgressTimeout), report: report,
		sem: make(chan struct{}, p.opts.Parallel), layers: map[v1.Hash]*layerDL{},
	}
	go t.wd.run(ctx)
	defer func() {
		// No download may write into the staging directory once it goes.
		cancel(errors.New("pull finished"))
		t.wg.Wait()
		t.wd.stop()
		staging.Close()
	}()

	size := m.Config.Size
	var queue []*layerDL
	for i, l := range m.Layers {
		size += l.Size
		if t.layers[l.Digest] != nil {
			continue
		}
		ld := newLayerDL(l)
		t.layers[l.Digest] = ld
		if p.store.HasLayer(cf.RootFS.DiffIDs[i]) {
			t.progress(ld, "Already exists", 0)
			continue
		}
		queue = append(queue, ld)
		t.progress(ld, "Waiting", 0)
	}
	var download int64
	for _, ld := range queue {
		download += ld.desc.Size
	}
	if err := p.store.CheckDownload(norm, download); err != nil {
		return Result{}, err
	}
	for _, ld := range queue {
		t.startDownload(ld)
	}

	img, err := partial.CompressedToImage(&pulledImage{t: t})
	if err != nil {
		return Result{}, err
	}
	repo := repoOf(norm)
	names := []string{repo + "@" + src.digest.String()}
	if !strings.Contains(norm, "@") {
		names = append(names, norm)
	}
	slices.Sort(names)
	stored, err := p.store.ImportImage(ctx, img, names)
	if err != nil {
		for _, ld := range t.layers {
			// A download's own error says more than what the import made
			// of it (a cancelled read, say).
			select {
			case <-ld.done:
				if lerr := ld.failure(); lerr != nil && !errors.Is(err, lerr) && errors.Is(err, context.Canceled) {
					return Result{}, lerr
				}
			default:
			}
		}
		return Result{}, err
	}
	for _, ld := range queue {
		t.progress(ld, "Pull complete", ld.desc.Size)
	}
	return Result{
		ImageID: stored.ID,
		Digest:  src.digest.String(),
		Names:   names,
		Size:    size,
	}, nil
}

// repoOf is the repository of a normalised reference, without tag or digest.
func repoOf(norm string) string {
	if i := strings.LastIndex(norm, "@"); i >= 0 {
		return norm[:i]
	}
	if i := strings.LastIndex(norm, ":"); i > strings.LastIndex(norm, "/") {
		return norm[:i]
	}
	return norm
}

func (t *transfer) progress(ld *layerDL, status string, done int64) {
	if t.report == nil {
		return
	}
	t.report(Progress{Ref: t.ref, Layer: ld.desc.Digest.String(), Status: status, Done: done, Total: ld.desc.Size})
}

// startDownload starts ld's download, once, in the background; it waits for
// one of the Parallel slots.
func (t *transfer) startDownload(ld *layerDL) {
	ld.once.Do(func() {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer close(ld.done)
			var err error
			select {
			case t.sem <- struct{}{}:
				err = t.download(ld)
				<-t.sem
			case <-t.ctx.Done():
				err = t.cause()
			}
			ld.update(func() { ld.finished, ld.err = true, err })
			if err != nil {
				t.cancel(err) // the pull fails with the first layer that does
			}
		}()
	})
}

// failure is the download's error, once it has finished.
func (ld *layerDL) failure() error {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.err
}

// cause is why the transfer's context ended.
func (t *transfer) cause() error {
	if c := context.Cause(t.ctx); c != nil {
		return c
	}
	return t.ctx.Err()
}

// Retries of a layer download: connection errors, a body cut short, 5xx and
// 429 answers are retried from where the download got to, with a Range
// request, after a backoff; an attempt that made progress resets the count.
const (
	maxAttempts  = 5
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// download fetches ld's blob into the staging directory, checks its size and
// digest, and renames it to its final name.
func (t *transfer) download(ld *layerDL) error {
	d := ld.desc
	what := fmt.Sprintf("layer %s", d.Digest)
	if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 {
		return fmt.Errorf("%s: unsupported digest algorithm", what)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d in the manifest", what, d.Size)
	}
	final := filepath.Join(t.staging.Dir, d.Digest.Hex)
	partialPath := final + ".partial"
	f, err := os.OpenFile(partialPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ld.update(func() { ld.file = partialPath })
	defer func() {
		if f != nil {
			// Under the lock, with nothing left to read, so that no
			// reader opens it once it is gone (see followReader.Read).
			ld.update(func() {
				f.Close()
				os.Remove(partialPath)
				ld.written = 0
			})
		}
	}()

	ctx, cancel := context.WithCancelCause(t.ctx)
	defer cancel(nil)
	act := t.wd.start(what, t.cancel)
	defer t.wd.end(act)
	ctx = withActivity(ctx, act)

	dl := &blobDownload{t: t, ld: ld, f: f, h: sha256.New(), what: what}
	t.progress(ld, "Downloading", 0)
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		before := dl.n
		err := dl.attempt(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return t.cause()
		}
		if !retryable(err) {
			return err
		}
		if dl.n > before {
			attempt, backoff = 1, firstBackoff
		}
		if attempt >= maxAttempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", what, attempt, err)
		}
		t.p.opts.Log.V(1).Info("Layer download interrupted, resuming", "image", t.ref, "layer", d.Digest.String(), "offset", dl.n, "attempt", attempt, "err", err.Error())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return t.cause()
		}
		backoff = min(2*backoff, maxBackoff)
	}
	t.progress(ld, "Verifying", dl.n)
	if dl.n != d.Size {
		return fmt.Errorf("%s: got %d bytes, the manifest says %d: %w", what, dl.n, d.Size, image.ErrDigestMismatch)
	}
	if got := hex.EncodeToString(dl.h.Sum(nil)); got != d.Digest.Hex {
		return fmt.Errorf("%s: the registry sent content of digest sha256:%s: %w", what, got, image.ErrDigestMismatch)
	}
	// No fsync: the blob is a staging copy, deleted once unpacked; what
	// must survive a crash is the unpacked layer, which the store syncs
	// before it commits. Left unsynced, a blob deleted soon enough is never
	// written to disk at all.
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err) // closing again does no harm
	}
	f = nil
	// Under the lock, so that a reader opening the file finds it by the
	// name it reads.
	ld.update(func() {
		if err = os.Rename(partialPath, final); err == nil {
			ld.file = final
		}
	})
	if err != nil {
		ld.update(func() {
			os.Remove(partialPath)
			ld.written = 0
		})
		return fmt.Errorf("%s: %w", what, err)
	}
	// A pull killed from here on leaves a whole blob in its staging
	// directory: the store's next Open removes it (crash_test.go).
	crashpoint.Hit("image-pull-blob-downloaded")
	t.progress(ld, "Download complete", d.Size)
	return nil
}

// blobDownload is the state of one blob's download across its attempts.
type blobDownload struct {
	t    *transfer
	ld   *layerDL
	f    *os.File
	h    hash.Hash // of the f's n bytes
	n    int64
	what string
	// lastReport is n when progress was last reported.
	lastReport int64
}

// retryableError marks errors worth another attempt.
type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var r retryableError
	return errors.As(err, &r)
}

// attempt makes one request for the rest of the blob and appends what it
// receives.
func (b *blobDownload) attempt(ctx context.Context) error {
	d := b.ld.desc
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", b.t.src.repo.Scheme(), b.t.src.repo.RegistryStr(), b.t.src.repo.RepositoryStr(), d.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if b.n > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(b.n, 10)+"-")
	}
	resp, err := b.t.src.client.Do(req)
	if err != nil {
		return retryableError{fmt.Errorf("%s: %w", b.what, err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		if b.n > 0 {
			// The registry ignored the Range: start again.
			if err := b.restart(); err != nil {
				return err
			}
		}
	case resp.StatusCode == http.StatusPartialContent && b.n > 0:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != b.n {
			if err := b.restart(); err != nil {
				return err
			}
			return retryableError{fmt.Errorf("%s: the registry answered Range bytes=%d- with Content-Range %q", b.what, b.n, resp.Header.Get("Content-Range"))}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		if err := b.restart(); err != nil {
			return err
		}
		return retryableError{fmt.Errorf("%s: the registry refused to resume at byte %d", b.what, b.n)}
	default:
		err := transport.CheckError(resp, http.StatusOK)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return retryableError{fmt.Errorf("%s: %w", b.what, err)}
		}
		return fmt.Errorf("%s: %w", b.what, err)
	}
	// One byte more than the blob may have is enough to know it is too
	// long: a registry cannot make the pull write without end.
	body := io.LimitReader(resp.Body, d.Size-b.n+1)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if b.n+int64(n) > d.Size {
				return fmt.Errorf("%s: the registry sent more than the %d bytes the manifest gives: %w", b.what, d.Size, image.ErrDigestMismatch)
			}
			if _, err := b.f.Write(buf[:n]); err != nil {
				return fmt.Errorf("%s: writing %s: %w", b.what, b.f.Name(), err)
			}
			b.h.Write(buf[:n])
			b.n += int64(n)
			b.ld.update(func() { b.ld.written = b.n })
			if b.n-b.lastReport >= 1<<20 || b.n == d.Size {
				b.lastReport = b.n
				b.t.progress(b.ld, "Downloading", b.n)
			}
		}
		if errors.Is(rerr, io.EOF) {
			if b.n < d.Size {
				return retryableError{fmt.Errorf("%s: the connection ended after %d of %d bytes: %w", b.what, b.n, d.Size, io.ErrUnexpectedEOF)}
			}
			return nil
		}
		if rerr != nil {
			return retryableError{fmt.Errorf("%s: after %d of %d bytes: %w", b.what, b.n, d.Size, rerr)}
		}
	}
}

// restart drops what was downloaded.
func (b *blobDownload) restart() error {
	if err := b.f.Truncate(0); err != nil {
		return err
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	b.h.Reset()
	b.n, b.lastReport = 0, 0
	b.ld.update(func() { b.ld.written = 0 })
	return nil
}

// contentRangeStart parses the first byte of "bytes <first>-<last>/<size>".
func contentRangeStart(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// pulledImage is the pulled image as the store's import reads it: manifest
// and config in memory, layers from the staging directory as their
// downloads complete.
type pulledImage struct {
	t *transfer
}

var _ partial.CompressedImageCore = (*pulledImage)(nil)

func (i *pulledImage) RawConfigFile() ([]byte, error)      { return i.t.src.rawCfg, nil }
func (i *pulledImage) MediaType() (types.MediaType, error) { return i.t.src.mtype, nil }
func (i *pulledImage) RawManifest() ([]byte, error)        { return i.t.src.rawMan, nil }

func (i *pulledImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	ld := i.t.layers[h]
	if ld == nil {
		return nil, fmt.Errorf("blob %s is not a layer of the manifest", h)
	}
	return &pulledLayer{t: i.t, ld: ld}, nil
}

type pulledLayer struct {
	t  *transfer
	ld *layerDL
}

func (l *pulledLayer) Digest() (v1.Hash, error)            { return l.ld.desc.Digest, nil }
func (l *pulledLayer) Size() (int64, error)                { return l.ld.desc.Size, nil }
func (l *pulledLayer) MediaType() (types.MediaType, error) { return l.ld.desc.MediaType, nil }

// Compressed reads the layer's blob as it downloads (starting the download
// if the store had the layer when the pull began but no longer has it). The
// reader returns io.EOF only once the download has checked the whole blob
// against its digest, and the download's error if it fails.
func (l *pulledLayer) Compressed() (io.ReadCloser, error) {
	l.t.startDownload(l.ld)
	l.t.progress(l.ld, "Extracting", 0)
	r := &followReader{ld: l.ld, t: l.t}
	r.stop = context.AfterFunc(l.t.ctx, func() { l.ld.update(func() {}) })
	return r, nil
}

// followReader reads a blob that is being downloaded, waiting for the bytes
// it has not got yet. A download that starts again from the beginning (a
// registry that ignored a Range) sets written back to 0, and the reader waits
// until its offset is written again.
type followReader struct {
	ld   *layerDL
	t    *transfer
	stop func() bool
	f    *os.File
	off  int64
	// lastRep is off when progress was last reported.
	lastRep int64
}

func (r *followReader) Read(p []byte) (int, error) {
	ld := r.ld
	for {
		ld.mu.Lock()
		for ld.written <= r.off && !ld.finished && r.t.ctx.Err() == nil {
			ld.cond.Wait()
		}
		avail, finished, err := ld.written-r.off, ld.finished, ld.err
		if r.f == nil && err == nil && avail > 0 {
			// Under the lock: the download renames the file under it
			// too. Once open, it stays this file, renamed or not.
			r.f, err = os.Open(ld.file)
		}
		ld.mu.Unlock()
		switch {
		case err != nil:
			return 0, err
		case avail <= 0 && finished:
			return 0, io.EOF
		case avail <= 0:
			return 0, r.t.cause()
		}
		n, err := r.f.ReadAt(p[:min(int64(len(p)), avail)], r.off)
		r.off += int64(n)
		if r.off-r.lastRep >= 1<<20 {
			r.lastRep = r.off
			r.t.progress(ld, "Extracting", r.off)
		}
		if n > 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		// Truncated under us by a restart: wait for the bytes again.
	}
}

// Close also deletes the blob once it has been read whole: the unpacked
// layer is what the store keeps, and a blob deleted before the store syncs
// the filesystem need never reach the disk.
func (r *followReader) Close() error {
	r.stop()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.ld.mu.Lock()
	whole := r.ld.finished && r.ld.err == nil && r.off == r.ld.desc.Size
	file := r.ld.file
	r.ld.mu.Unlock()
	if whole {
		os.Remove(file)
	}
	return err
}
