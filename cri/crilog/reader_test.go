package crilog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    Entry
		wantErr string
	}{
		{line: "2026-11-27T08:00:00.123456789Z stdout F hello world",
			want: Entry{Time: testTime, Stream: Stdout, Content: []byte("hello world")}},
		{line: "2026-11-27T09:00:00.123456789+01:00 stderr P part\n",
			want: Entry{Time: testTime, Stream: Stderr, Partial: true, Content: []byte("part")}},
		{line: "2026-11-27T08:00:00.123456789Z stdout F:future x",
			want: Entry{Time: testTime, Stream: Stdout, Content: []byte("x")}},
		{line: "2026-11-27T08:00:00.123456789Z stdout F ",
			want: Entry{Time: testTime, Stream: Stdout, Content: []byte{}}},
		{line: "2026-11-27T08:00:00.123456789Z stdout F",
			want: Entry{Time: testTime, Stream: Stdout, Content: []byte{}}},
		{line: "2026-11-27T08:00:00.123456789Z stdout F  two  spaces \r",
			want: Entry{Time: testTime, Stream: Stdout, Content: []byte(" two  spaces \r")}},
		{line: "", wantErr: "empty line"},
		{line: "garbage", wantErr: "no space after the timestamp"},
		{line: "yesterday stdout F x", wantErr: `timestamp "yesterday" is not RFC 3339`},
		{line: "2026-11-27 08:00:00 stdout F x", wantErr: `timestamp "2026-11-27" is not RFC 3339`},
		{line: "2026-11-27T08:00:00Z stdout", wantErr: "no space after the stream"},
		{line: "2026-11-27T08:00:00Z stdin F x", wantErr: `stream "stdin" is neither stdout nor stderr`},
		{line: "2026-11-27T08:00:00Z stdout X x", wantErr: `tag "X" is neither F nor P`},
		{line: "2026-11-27T08:00:00Z stdout  x", wantErr: `tag "" is neither F nor P`},
	} {
		got, err := ParseLine([]byte(tc.line))
		if tc.wantErr != "" {
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseLine(%q) error %v, want ErrMalformed saying %q", tc.line, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseLine(%q): %v", tc.line, err)
			continue
		}
		if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial ||
			!bytes.Equal(got.Content, tc.want.Content) {
			t.Errorf("ParseLine(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

// record formats one record stamped sec seconds after testTime.
func record(sec int, stream, tag, content string) string {
	return fmt.Sprintf("%s %s %s %s\n", testTime.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano),
		stream, tag, content)
}

func writeLog(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func readAllT(t *testing.T, path string, opts ReadOptions) string {
	t.Helper()
	var out bytes.Buffer
	if err := ReadAll(filepath.Dir(path), filepath.Base(path), opts, &out); err != nil {
		t.Fatalf("ReadAll(%+v): %v", opts, err)
	}
	return out.String()
}

func TestReadAllJoinsInterleavedPartials(t *testing.T) {
	path := writeLog(t, record(0, Stdout, "P", "a")+
		record(1, Stderr, "F", "x")+
		record(2, Stdout, "P", "b")+
		record(3, Stderr, "P", "y1")+
		"not a record\n"+
		record(4, Stdout, "F", "c")+
		record(5, Stderr, "F", "y2")+
		record(6, Stdout, "F", ""))
	for _, tc := range []struct {
		opts ReadOptions
		want string
	}{
		{ReadOptions{Tail: -1}, "x\nabc\ny1y2\n\n"},
		{ReadOptions{Tail: -1, Streams: Stderr}, "x\ny1y2\n"},
		{ReadOptions{Tail: -1, Streams: Stdout}, "abc\n\n"},
		{ReadOptions{Tail: 2}, "y1y2\n\n"},
		{ReadOptions{Tail: 1, Streams: Stderr}, "y1y2\n"},
		{ReadOptions{Tail: -1, Since: testTime.Add(2 * time.Second)}, "y1y2\n\n"},
		{ReadOptions{Tail: -1, Timestamps: true, Streams: Stdout},
			"2026-11-27T08:00:00.123456789Z abc\n2026-11-27T08:00:06.123456789Z \n"},
	} {
		if got := readAllT(t, path, tc.opts); got != tc.want {
			t.Errorf("ReadAll(%+v) = %q, want %q", tc.opts, got, tc.want)
		}
	}
}

func TestReadAllTimestampsKeepZoneAndAllDigits(t *testing.T) {
	path := writeLog(t, "2026-11-27T09:00:00.5+01:00 stdout F x\n")
	if got, want := readAllT(t, path, ReadOptions{Tail: -1, Timestamps: true}),
		"2026-11-27T09:00:00.500000000+01:00 x\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestReadAllUnfinishedLines(t *testing.T) {
	// A writer killed mid-line, and a record cut short without its "\n".
	path := writeLog(t, record(0, Stderr, "P", "err-start")+
		record(1, Stdout, "F", "done")+
		record(2, Stdout, "P", "out-start")+
		record(3, Stdout, "P", "-more")+
		"2026-11-27T08:00:04Z stdout F cut sho")
	for _, tc := range []struct {
		opts ReadOptions
		want string
	}{
		{ReadOptions{Tail: -1}, "done\nerr-start\nout-start-more\n"},
		{ReadOptions{Tail: 1}, "out-start-more\n"},
		{ReadOptions{Tail: 2}, "err-start\nout-start-more\n"},
		{ReadOptions{Tail: 3}, "done\nerr-start\nout-start-more\n"},
		{ReadOptions{Tail: 0}, ""},
	} {
		if got := readAllT(t, path, tc.opts); got != tc.want {
			t.Errorf("ReadAll(%+v) = %q, want %q", tc.opts, got, tc.want)
		}
	}
}

func TestReadAllErrors(t *testing.T) {
	var out bytes.Buffer
	if err := ReadAll(t.TempDir(), "missing.log", ReadOptions{Tail: -1}, &out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	path := writeLog(t, record(0, Stdout, "F", "x"))
	if err := ReadAll(filepath.Dir(path), filepath.Base(path), ReadOptions{Streams: "both"}, &out); !errors.Is(err, ErrBadStream) {
		t.Errorf("Streams both: %v, want ErrBadStream", err)
	}
}

func TestTailMatchesReadAll(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	for iter := range 40 {
		n := 1 + rnd.IntN(60)
		log := randomLog(rnd, n)
		path := writeLog(t, log)
		for _, streams := range []string{"", Stdout, Stderr} {
			all := strings.SplitAfter(readAllT(t, path, ReadOptions{Tail: -1, Streams: streams}), "\n")
			all = all[:len(all)-1]
			for tail := int64(0); tail <= int64(len(all))+2; tail++ {
				want := strings.Join(all[max(0, int64(len(all))-tail):], "")
				if got := readAllT(t, path, ReadOptions{Tail: tail, Streams: streams}); got != want {
					t.Fatalf("log %d, streams %q, tail %d:\n%s\ngot\n%s\nwant\n%s", iter, streams, tail, log, got, want)
				}
			}
		}
	}
}

// randomLog writes n lines of interleaved stdout and stderr output with
// increasing timestamps (one second apart), some lines in several P chunks, and
// possibly one or two unfinished lines at the end.
func randomLog(rnd *rand.Rand, n int) string {
	var sb strings.Builder
	left := [2]int{} // P chunks still to write before the F of the current line
	started := [2]bool{}
	sec := 0
	done := 0
	for done < n {
		s := rnd.IntN(2)
		stream := []string{Stdout, Stderr}[s]
		if !started[s] {
			started[s] = true
			if rnd.IntN(3) == 0 {
				left[s] = 1 + rnd.IntN(3)
			}
		}
		tag := "F"
		if left[s] > 0 {
			tag = "P"
			left[s]--
		}
		sb.WriteString(record(sec, stream, tag, fmt.Sprintf("%s%d.%s;", stream[3:], done, tag)))
		sec++
		if tag == "F" {
			started[s] = false
			done++
		}
	}
	return sb.String()
}

func TestTailWithSinceSkipsLineBegunBefore(t *testing.T) {
	// Line "b" ends last but began before Since, so Tail 1 is "x".
	path := writeLog(t, record(0, Stdout, "F", "a")+
		record(1, Stdout, "P", "b1")+
		record(2, Stderr, "F", "x")+
		record(3, Stdout, "F", "b2"))
	since := testTime.Add(2 * time.Second)
	for tail, want := range map[int64]string{0: "", 1: "x\n", 2: "x\n", -1: "x\n"} {
		if got := readAllT(t, path, ReadOptions{Tail: tail, Since: since}); got != want {
			t.Errorf("Tail %d since +2s: %q, want %q", tail, got, want)
		}
	}
}

func TestTailWithSince(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	for iter := range 20 {
		log := randomLog(rnd, 40)
		path := writeLog(t, log)
		recs := strings.Count(log, "\n")
		for _, sinceSec := range []int{0, 1, recs / 3, recs / 2, recs - 2, recs + 5} {
			since := testTime.Add(time.Duration(sinceSec) * time.Second)
			all := strings.SplitAfter(readAllT(t, path, ReadOptions{Tail: -1, Since: since}), "\n")
			all = all[:len(all)-1]
			for _, tail := range []int64{0, 1, 2, 3, 5, 100} {
				want := strings.Join(all[max(0, int64(len(all))-tail):], "")
				if got := readAllT(t, path, ReadOptions{Tail: tail, Since: since}); got != want {
					t.Fatalf("log %d, since +%ds, tail %d:\n%s\ngot\n%s\nwant\n%s", iter, sinceSec, tail, log, got, want)
				}
			}
		}
	}
}

// TestTailReadsOnlyTheEnd puts the records after a 64 GiB hole: reading that hole
// as a 64 GiB "line" would take minutes and all memory, so a correct answer in
// seconds shows that Tail read only the end of the file.
func TestTailReadsOnlyTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	f.Close()
	w := openT(t, path, Options{MaxLineSize: 1000, Now: fixedNow(testTime)})
	var lines []string
	for i := range 3000 {
		lines = append(lines, fmt.Sprintf("line %d %s", i, strings.Repeat("=", i%7*700)))
	}
	copyT(t, w, Stdout, "\n"+strings.Join(lines, "\n")+"\n")
	copyT(t, w, Stderr, "an error\n")
	copyT(t, w, Stdout, strings.Repeat("L", 3500)+"\n") // the last line is P P P F

	start := time.Now()
	got := readAllT(t, path, ReadOptions{Tail: 10})
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Tail 10 took %v", elapsed)
	}
	want := strings.Join(lines[len(lines)-8:], "\n") + "\nan error\n" + strings.Repeat("L", 3500) + "\n"
	if got != want {
		t.Errorf("Tail 10:\n%.300q\nwant\n%.300q", got, want)
	}
}

// syncBuffer is a bytes.Buffer that Follow can write while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until out holds want.
func waitFor(t *testing.T, out *follower, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Follow printed\n%q\nwant\n%q", out.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// follower is a Follow run by a test: what it printed, and how many looks it took.
type follower struct {
	*syncBuffer
	polls chan struct{} // one value per look Follow took
}

// startFollow runs Follow until the test ends and returns once Follow has read the
// file as it is now.
func startFollow(t *testing.T, path string, opts ReadOptions) *follower {
	t.Helper()
	followPoll = 10 * time.Millisecond
	started := make(chan struct{})
	followStarted = func() { close(started) }
	f := &follower{syncBuffer: &syncBuffer{}, polls: make(chan struct{}, 1)}
	followPolled = func() {
		select {
		case f.polls <- struct{}{}:
		default: // the test is not waiting: it saw an earlier look
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, filepath.Dir(path), filepath.Base(path), opts, f.syncBuffer) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow: %v", err)
		}
		followPoll, followStarted, followPolled = 100*time.Millisecond, nil, nil
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Follow: %v", err)
	}
	return f
}

// looked waits until Follow has taken a whole look at the file as it is now (one that began after this call), and
// printed what it found.
func (f *follower) looked(t *testing.T) {
	t.Helper()
	select {
	case <-f.polls: // a look that ended before now
	default:
	}
	deadline := time.After(10 * time.Second)
	for range 2 { // the look under way may have begun before now
		select {
		case <-f.polls:
		case <-deadline:
			t.Fatal("Follow took no look at the file within 10s")
		}
	}
}

func TestFollowAcrossRotations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{MaxSize: 2000, MaxFiles: 1, MaxLineSize: 100})
	copyT(t, w, Stdout, "old 1\nold 2\n")
	out := startFollow(t, path, ReadOptions{Tail: 1})
	want := "old 2\n"
	waitFor(t, out, want)
	for batch := range 12 {
		var lines []string
		for i := range 10 {
			lines = append(lines, fmt.Sprintf("batch %d line %d", batch, i))
		}
		if batch%3 == 1 {
			lines = append(lines, strings.Repeat(fmt.Sprint(batch), 450)) // P P P P F, may straddle a rotation
		}
		text := strings.Join(lines, "\n") + "\n"
		copyT(t, w, Stdout, text)
		want += text
		waitFor(t, out, want)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("no rotation happened: %v", err)
	}
}

func TestFollowExternalRotationAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := openT(t, path, Options{MaxLineSize: 4})
	copyT(t, w, Stdout, "a\n")
	out := startFollow(t, path, ReadOptions{Tail: -1, Streams: Stdout})
	waitFor(t, out, "a\n")
	if err := os.Rename(path, path+".1"); err != nil { // logrotate without copytruncate
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "b\nsplit-")                       // still into the renamed file; "split-" is P records
	copyT(t, w, Stderr, "not printed\n")                   // other stream filtered
	out.looked(t)                                          // Follow sees no file at path
	if err := os.WriteFile(path, nil, 0o640); err != nil { // logrotate's create
		t.Fatal(err)
	}
	out.looked(t)                 // Follow sees an empty new file and stays with the old one
	copyT(t, w, Stdout, "late\n") // the writer has not reopened yet
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	copyT(t, w, Stdout, "new\n")
	waitFor(t, out, "a\nb\nsplit-\nlate\nnew\n")
}

func TestFollowJoinsLineSplitByRotation(t *testing.T) {
	path := writeLog(t, record(0, Stdout, "F", "whole")+record(1, Stdout, "P", "begun in the old file, "))
	out := startFollow(t, path, ReadOptions{Tail: -1})
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(record(2, Stdout, "F", "ended in the new one")), 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "whole\nbegun in the old file, ended in the new one\n")
}

// errWriter fails every write, like a client that went away.
type errWriter struct{}

func (errWriter) Write(p []byte) (int, error) { return 0, errors.New("client gone") }

func TestReadAllStopsWhenOutputFails(t *testing.T) {
	var sb strings.Builder
	for i := range 100000 {
		sb.WriteString(record(i, Stdout, "F", strings.Repeat("x", 100)))
	}
	path := writeLog(t, sb.String())
	if err := ReadAll(filepath.Dir(path), filepath.Base(path), ReadOptions{Tail: -1}, errWriter{}); err == nil || !strings.Contains(err.Error(), "client gone") {
		t.Errorf("ReadAll: %v, want the write error", err)
	}
}

func TestFollowTruncatedInPlace(t *testing.T) {
	path := writeLog(t, record(0, Stdout, "F", "one")+record(1, Stdout, "F", "two")+record(2, Stdout, "P", "stale-"))
	out := startFollow(t, path, ReadOptions{Tail: -1})
	waitFor(t, out, "one\ntwo\n")
	if err := os.WriteFile(path, []byte(record(2, Stdout, "F", "3")), 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "one\ntwo\n3\n")
}

func TestFollowFinishesUnfinishedLine(t *testing.T) {
	path := writeLog(t, record(0, Stdout, "F", "done")+record(1, Stdout, "P", "begun-"))
	out := startFollow(t, path, ReadOptions{Tail: 1})
	out.looked(t)
	if got := out.String(); got != "" {
		t.Fatalf("Follow printed %q before the line ended", got)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The rest arrives in two writes, the second cutting a record in half.
	f.WriteString(record(2, Stderr, "F", "between") + "2026-11-27T08:00:03Z stdout F en")
	out.looked(t) // Follow sees half a record
	f.WriteString("ded\n")
	waitFor(t, out, "between\nbegun-ended\n")
}

func TestFollowTailZeroSkipsLineInProgress(t *testing.T) {
	path := writeLog(t, record(0, Stdout, "F", "old")+record(1, Stdout, "P", "begun-"))
	out := startFollow(t, path, ReadOptions{Tail: 0})
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The line begun before Follow started is not printed when it ends, and does not
	// hide another line in its place.
	f.WriteString(record(2, Stderr, "F", "other") + record(3, Stdout, "F", "ended") + record(4, Stdout, "F", "new"))
	waitFor(t, out, "other\nnew\n")
}

func TestFollowStopsWithContext(t *testing.T) {
	path := writeLog(t, record(0, Stdout, "F", "x"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if err := Follow(ctx, filepath.Dir(path), filepath.Base(path), ReadOptions{Tail: -1}, &out); err != nil {
		t.Errorf("Follow: %v", err)
	}
	if out.String() != "x\n" {
		t.Errorf("Follow printed %q", out.String())
	}
}
