package pull

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentd-project/agentd/agent/image"
)

// cutThenServe makes the first GET of the blob ld send half of it and drop
// the connection; later GETs go to then (nil: the registry as it is).
func cutThenServe(tr *testRegistry, ld string, then func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	var n atomic.Int32
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ld) {
			return false
		}
		if n.Add(1) > 1 {
			return then != nil && then(w, r, next)
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
}

// wholeBlob answers a GET with the whole blob, Range or not, its byte at
// flip (if >= 0) changed.
func wholeBlob(flip int) func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		r = r.Clone(r.Context())
		r.Header.Del("Range")
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if flip >= 0 {
			body[flip] ^= 0xff
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
		return true
	}
}

// A registry that ignores the Range of the resumed download sends the whole
// blob: the pull takes what it has not got from it (the bytes it had are
// already being unpacked and stay as they are) and succeeds.
func TestResumeIgnoredRange(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"big": randomString(t, 2<<20)})
	tr.push(t, img, "team/big:v1")
	ld := layerDigests(t, img)[0]
	cutThenServe(tr, ld.String(), wholeBlob(-1))
	s := openStore(t)
	res, err := New(s, Options{}).Pull(context.Background(), tr.host+"/team/big:v1", nil, nil)
	if err != nil {
		t.Fatalf("Pull from a registry that ignores Range: %v", err)
	}
	if res.ImageID != configDigest(t, img) {
		t.Errorf("ImageID %s", res.ImageID)
	}
	if n := tr.blobCount(ld); n != 2 {
		t.Errorf("%d GETs of the layer, want 2", n)
	}
}

// A registry that refuses to resume (416) is asked for the whole blob.
func TestResumeRefusedRange(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"big": randomString(t, 2<<20)})
	tr.push(t, img, "team/big:v1")
	ld := layerDigests(t, img)[0]
	cutThenServe(tr, ld.String(), func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Header.Get("Range") != "" {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return true
		}
		return false
	})
	s := openStore(t)
	if _, err := New(s, Options{}).Pull(context.Background(), tr.host+"/team/big:v1", nil, nil); err != nil {
		t.Fatalf("Pull from a registry that refuses Range: %v", err)
	}
	if n := tr.blobCount(ld); n != 3 {
		t.Errorf("%d GETs of the layer, want 3 (cut, refused, whole)", n)
	}
}

// A registry that sends other bytes the second time, in the part the pull
// had already (and may have unpacked), fails the pull with a digest
// mismatch, even though the blob it sends the second time is whole: what
// was unpacked is not what was verified. Nothing is left.
func TestResumeWithOtherBytesFails(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"big": randomString(t, 2<<20)})
	tr.push(t, img, "team/big:v1")
	ld := layerDigests(t, img)[0]
	cutThenServe(tr, ld.String(), wholeBlob(10))
	s := openStore(t)
	_, err := New(s, Options{}).Pull(context.Background(), tr.host+"/team/big:v1", nil, nil)
	if !errors.Is(err, image.ErrDigestMismatch) {
		t.Fatalf("Pull: %v, want ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), ld.String()) || !strings.Contains(err.Error(), "differs from what the registry sent before") {
		t.Errorf("error %q does not name the layer and say what differs", err)
	}
	assertNothingLeft(t, s)
}
