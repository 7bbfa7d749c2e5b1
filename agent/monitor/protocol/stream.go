package protocol

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// FrameError ends an exec stream that failed; its payload is the error message.
// Monitors do not send it (they answer errors before streaming); agentd's API does.
const FrameError byte = 7

// ExecStreams are the client side of an exec.
type ExecStreams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan [2]uint16 // width, height
}

// ResizePayload encodes a terminal size for FrameResize.
func ResizePayload(width, height uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], width)
	binary.BigEndian.PutUint16(b[2:], height)
	return b[:]
}

// ParseResizePayload decodes FrameResize's payload.
func ParseResizePayload(p []byte) (width, height uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), true
}

// ClientStream runs the client side of an exec stream: it sends stdin and resizes
// as frames on w and copies the frames read from r to stdout and stderr until the
// exit frame, whose code it returns. A FrameError ends it with that message.
func ClientStream(r io.Reader, w io.Writer, s ExecStreams) (int, error) {
	var mu sync.Mutex // one frame at a time on w
	write := func(typ byte, p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return WriteFrame(w, typ, p)
	}
	if s.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 && write(FrameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					_ = write(FrameCloseStdin, nil)
					return
				}
			}
		}()
	}
	if s.Resize != nil {
		go func() {
			for sz := range s.Resize {
				if write(FrameResize, ResizePayload(sz[0], sz[1])) != nil {
					return
				}
			}
		}()
	}
	buf := make([]byte, 32<<10)
	for {
		typ, payload, err := ReadFrame(r, buf)
		if err != nil {
			return -1, err
		}
		switch typ {
		case FrameStdout:
			if s.Stdout != nil {
				_, _ = s.Stdout.Write(payload)
			}
		case FrameStderr:
			if s.Stderr != nil {
				_, _ = s.Stderr.Write(payload)
			}
		case FrameError:
			return -1, errors.New(string(payload))
		case FrameExit:
			return ParseExitPayload(payload), nil
		}
	}
}
