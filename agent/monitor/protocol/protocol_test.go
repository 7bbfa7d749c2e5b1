package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadMessage(t *testing.T) {
	var wire bytes.Buffer
	long := &Request{Op: OpExec, Exec: &ExecRequest{Args: []string{"echo", strings.Repeat("x", 3000)}}}
	for _, m := range []any{NewHello(), long} {
		if err := WriteMessage(&wire, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFrame(&wire, FrameStdin, []byte("after")); err != nil {
		t.Fatal(err)
	}
	// A small buffer, as the monitor's: a line longer than it still reads.
	r := bufio.NewReaderSize(&wire, 64)
	var hello Hello
	if err := ReadMessage(r, &hello, MaxRequestLine); err != nil || hello != *NewHello() {
		t.Fatalf("hello: %+v, %v", hello, err)
	}
	var req Request
	if err := ReadMessage(r, &req, MaxRequestLine); err != nil || !reflect.DeepEqual(&req, long) {
		t.Fatalf("request: %+v, %v", req, err)
	}
	// What follows the messages is left for the stream.
	if typ, p, err := ReadFrame(r, nil); err != nil || typ != FrameStdin || string(p) != "after" {
		t.Errorf("frame after the messages: %d %q %v", typ, p, err)
	}
}

func TestReadMessageLimit(t *testing.T) {
	line := `{"op":"` + strings.Repeat("x", 200) + `"}` + "\n"
	r := bufio.NewReaderSize(strings.NewReader(line), 16)
	var req Request
	if err := ReadMessage(r, &req, 100); err == nil {
		t.Error("a 200-byte line read with a limit of 100")
	}
	r = bufio.NewReaderSize(strings.NewReader(`{"op":"status"`), 16)
	if err := ReadMessage(r, &req, 100); err == nil {
		t.Error("a line without its newline read")
	}
}

func TestErrorIsSentinel(t *testing.T) {
	for code, sentinel := range map[string]error{ErrCodeNotRunning: ErrNotRunning, ErrCodeInvalid: ErrInvalid,
		ErrCodeUnsupported: ErrUnsupported, ErrCodeStartFailed: ErrStartFailed} {
		if err := error(&Error{Code: code, Message: "m"}); !errors.Is(err, sentinel) {
			t.Errorf("%s is not %v", code, sentinel)
		}
	}
	if errors.Is(&Error{Code: ErrCodeInternal}, ErrNotRunning) {
		t.Error("Internal is NotRunning")
	}
}

func TestCompatible(t *testing.T) {
	if !Compatible(Major) || Compatible(Major+1) || Compatible(Major-2) {
		t.Error("Compatible must be this major and the one before only")
	}
	if Major == 1 && Compatible(0) {
		t.Error("there is no protocol 0")
	}
}

// unsetFields finds what a golden value leaves out (else TestGoldenValuesSetEveryField proves nothing).
func TestUnsetFields(t *testing.T) {
	j := goldenJournal()
	j.Runs[0].User.AdditionalGIDs = nil
	j.DroppedLog = 0
	j.NextStart = time.Time{}
	got := unsetFields(reflect.ValueOf(j), "Journal")
	for _, want := range []string{"Journal.DroppedLog", "Journal.NextStart", "Journal.Runs[].User.AdditionalGIDs"} {
		found := false
		for _, g := range got {
			found = found || g == want
		}
		if !found {
			t.Errorf("unsetFields = %v, missing %s", got, want)
		}
	}
	// Exit is set in one run of two: set, as are its fields.
	for _, g := range got {
		if g == "Journal.Runs[].Exit.Reason" {
			t.Errorf("unsetFields reports %s, which the first run sets", g)
		}
	}
}
