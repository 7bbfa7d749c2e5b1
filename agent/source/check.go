package source

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// ErrInsecure is wrapped by the errors of a manifest directory or file that someone
// other than root could change: a pod runs as root, so its manifest must be as well
// protected as /etc/sudoers.
var ErrInsecure = errors.New("insecure manifest permissions")

// ErrNotDir is returned by CheckDir for a manifest directory that is not a directory.
var ErrNotDir = errors.New("not a directory")

// CheckDir refuses a manifest directory that does not exist, is not a directory, is
// writable by group or others, or is not owned by root, the way sshd's StrictModes
// refuses an authorized_keys file others could change. The error says what to run
// to fix it (`chmod go-w DIR`, `chown root DIR`); errors.Is(err, ErrInsecure) tells
// the last two cases apart, errors.Is(err, fs.ErrNotExist) a missing directory.
//
// When agentd itself does not run as root, a directory owned by its own user is
// accepted too: that user could change the agent anyway.
func CheckDir(dir string) error {
	if _, err := checkDir(dir); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// checkDir stats dir and returns its info, or an error that does not repeat the path.
func checkDir(dir string) (fs.FileInfo, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("manifest directory does not exist; no pods run until it is created "+
			"(`install -d -m 0755 -o root %s`): %w", dir, fs.ErrNotExist)
	case err != nil:
		return nil, fmt.Errorf("manifest directory cannot be read: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("manifest directory is %s: %w", describeType(fi.Mode()), ErrNotDir)
	}
	if err := checkSecure("manifest directory", "no pod from it is run", dir, fi); err != nil {
		return nil, err
	}
	return fi, nil
}

// checkSecure returns an *insecureError when fi (the file at path) could be
// changed by someone other than root.
func checkSecure(what, consequence, path string, fi fs.FileInfo) error {
	uid, ok := ownerOf(fi)
	if !ok {
		return nil // not a Unix file system stat; nothing to check
	}
	problems, fixes := insecurity(fi.Mode().Perm(), uid, trusted(uid))
	if len(problems) == 0 {
		return nil
	}
	return &insecureError{what: what, consequence: consequence, path: path, problems: problems, fixes: fixes}
}

// insecurity lists why a file with permission bits perm owned by uid is not safe to
// run pods from, and the commands that fix it (with "%s" for the path).
func insecurity(perm fs.FileMode, uid uint32, trustedOwner bool) (problems, fixes []string) {
	if perm&0o022 != 0 {
		problems = append(problems, fmt.Sprintf("is writable by group or others (mode %#o)", perm))
		fixes = append(fixes, "chmod go-w %s")
	}
	if !trustedOwner {
		problems = append(problems, fmt.Sprintf("is owned by uid %d instead of root", uid))
		fixes = append(fixes, "chown root %s")
	}
	return problems, fixes
}

// trusted says whether a file owned by uid is trusted: root's are, and so are those
// of the user agentd runs as (who could replace agentd itself).
func trusted(uid uint32) bool {
	return uid == 0 || int(uid) == euid
}

var euid = os.Geteuid()

func ownerOf(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}

type insecureError struct {
	what        string // "manifest directory", "manifest"
	consequence string // "its pod is not run"
	path        string
	problems    []string
	fixes       []string // each with one %s for the path
}

func (e *insecureError) Error() string {
	var b strings.Builder
	b.WriteString(e.what)
	b.WriteString(" ")
	b.WriteString(strings.Join(e.problems, " and "))
	b.WriteString(", so ")
	b.WriteString(e.consequence)
	b.WriteString("; to fix: `")
	for i, f := range e.fixes {
		if i > 0 {
			b.WriteString(" && ")
		}
		fmt.Fprintf(&b, f, e.path)
	}
	b.WriteString("`")
	return b.String()
}

func (e *insecureError) Is(target error) bool { return target == ErrInsecure }

func describeType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return fmt.Sprintf("a special file (%s)", m.Type())
}
