package ctl

import (
	"bytes"
	"strings"
	"testing"
)

// An argument that names no command is an error naming it, exit status 1, as kubectl's
// (cobra alone prints the group's help and exits 0).
func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, `error: unknown command "foo" for "agentctl"`},
		{[]string{"image", "pul", "x"}, "error: unknown command \"pul x\"\nSee 'agentctl image -h' for help and examples\n"},
		{[]string{"cluster", "token", "frob"}, "error: unknown command \"frob\"\nSee 'agentctl cluster token -h' for help and examples\n"},
		{[]string{"get", "foo"}, "error: the server doesn't have a resource type \"foo\"\n"},
		{[]string{"describe", "foo", "bar"}, "error: the server doesn't have a resource type \"foo\"\n"},
		{[]string{"delete", "foo"}, "error: the server doesn't have a resource type \"foo\"\n"},
	} {
		var out, errOut bytes.Buffer
		code := Main(append(tc.args, "--socket", "/nonexistent/agent.sock"), &out, &errOut)
		if code != 1 {
			t.Errorf("agentctl %s: exit %d, want 1 (stdout %q)", strings.Join(tc.args, " "), code, out.String())
		}
		if !strings.HasPrefix(errOut.String(), tc.want) {
			t.Errorf("agentctl %s: stderr %q, want it to start with %q", strings.Join(tc.args, " "), errOut.String(), tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("agentctl %s: stdout %q, want nothing", strings.Join(tc.args, " "), out.String())
		}
	}
	// A group alone still prints its help, successfully.
	var out, errOut bytes.Buffer
	if code := Main([]string{"image"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "Usage:") {
		t.Errorf("agentctl image: exit %d, stdout %q, want 0 and its help", code, out.String())
	}
}
