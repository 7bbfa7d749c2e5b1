package ctl

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// topCommands names every top-level command of the whole tree but completion and
// cobra's help, by its name and aliases, so that Main builds the one it runs alone.
func TestTopCommandNames(t *testing.T) {
	full := NewCommand(io.Discard, io.Discard)
	var inTree []string
	for _, c := range full.Commands() {
		if c.Name() == "completion" {
			continue
		}
		inTree = append(inTree, c.Name())
		i := slices.IndexFunc(topCommands, func(tc topCommand) bool {
			return tc.names[0] == c.Name()
		})
		if i < 0 {
			t.Errorf("top-level command %q is not in topCommands", c.Name())
			continue
		}
		if want := append([]string{c.Name()}, c.Aliases...); !slices.Equal(topCommands[i].names, want) {
			t.Errorf("topCommands has %q as %q, the command is %q", c.Name(), topCommands[i].names, want)
		}
	}
	if len(inTree) != len(topCommands) {
		t.Errorf("the tree has %d top-level commands besides completion (%q), topCommands %d", len(inTree), inTree, len(topCommands))
	}
}

// A tree with one top-level command has it exactly as the whole tree has it: every
// subcommand, flag, alias and usage text.
func TestOneCommandTreeMatchesWholeTree(t *testing.T) {
	full := NewCommand(io.Discard, io.Discard)
	for _, tc := range topCommands {
		for _, name := range tc.names {
			one := newCommand(io.Discard, io.Discard, name)
			if n := len(one.Commands()); n != 1 {
				t.Fatalf("the tree for %q has %d top-level commands, want 1", name, n)
			}
			want, _, err := full.Find([]string{name})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := describeTree(one.Commands()[0]), describeTree(want); got != want {
				t.Errorf("the tree for %q differs from the whole tree's:\n%s\nwant\n%s", name, got, want)
			}
		}
	}
}

func describeTree(c *cobra.Command) string {
	var b strings.Builder
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		fmt.Fprintf(&b, "== %s %q runnable=%v hidden=%v validArgs=%q\n%s%s\n",
			c.CommandPath(), c.Aliases, c.Runnable(), c.Hidden, c.ValidArgs, c.Long, c.UsageString())
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(c)
	return b.String()
}

// commandName picks the argument cobra resolves the top-level command from.
func TestCommandName(t *testing.T) {
	full := NewCommand(io.Discard, io.Discard)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"version"}, "version"},
		{[]string{"get", "pods", "-o", "yaml"}, "get"},
		{[]string{"--socket", "/s", "version"}, "version"},
		{[]string{"--socket=/s", "version"}, "version"},
		{[]string{"--root", "/r", "--socket", "/s", "get", "pods"}, "get"},
		{[]string{"--socket", "/s"}, ""},
		{[]string{"--socket"}, ""},
		{[]string{"--", "version"}, ""},
		{[]string{"--help", "version"}, ""}, // cobra takes version for --help's value here
		{[]string{"-h", "info"}, ""},
		{[]string{"-h", "info", "logs"}, "logs"},
		{[]string{"-x=1", "info"}, "info"},
		{[]string{"--bogus", "x", "info"}, "info"},
		{[]string{"", "info"}, "info"},
		{[]string{"verison"}, "verison"},
		{[]string{"help", "get"}, "help"},
	} {
		got := commandName(tc.args)
		if got != tc.want {
			t.Errorf("commandName(%q) = %q, want %q", tc.args, got, tc.want)
		}
		// Cobra, finding the command in the whole tree, agrees.
		c, _, _ := full.Find(tc.args)
		for c.HasParent() && c.Parent() != full {
			c = c.Parent()
		}
		found := ""
		if c != full {
			found = c.Name()
		}
		if slices.ContainsFunc(topCommands, func(top topCommand) bool {
			return slices.Contains(top.names, got)
		}) && found != got {
			t.Errorf("commandName(%q) = %q, cobra finds %q", tc.args, got, found)
		}
	}
}
