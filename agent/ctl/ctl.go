// Package ctl is agentctl, the kubectl-like CLI of agentd: its commands, flags and
// output formats. cmd/agentctl only calls Main. Settings: --socket / AGENT_SOCKET
// (agentd's API socket) and --root / AGENT_ROOT (agentd's root, for the image store).
package ctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/version"
)

// Defaults, as agentd's.
const (
	DefaultRoot   = "/var/lib/agent"
	DefaultSocket = "/run/agent/agent.sock"
)

type options struct {
	root   string
	socket string
	out    io.Writer
	errOut io.Writer
}

// Main runs agentctl with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand(stdout, stderr, commandName(args))
	cmd.SetArgs(args)
	err := cmd.Execute()
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		fmt.Fprintln(stderr, err)
		return int(code)
	}
	fmt.Fprintln(stderr, "error:", api.CleanMessage(err))
	return 1
}

// topCommands are agentctl's top-level commands but completion (which needs the
// whole tree). names are the command's name and
// its aliases; TestTopCommandNames holds them to the commands'.
var topCommands = []topCommand{
	{[]string{"version"}, newVersionCommand},
	{[]string{"image"}, newImageCommand},
	{[]string{"get"}, newGetCommand},
	{[]string{"top"}, newTopCommand},
	{[]string{"describe"}, newDescribeCommand},
	{[]string{"logs"}, newLogsCommand},
	{[]string{"exec"}, newExecCommand},
	{[]string{"attach"}, newAttachCommand},
	{[]string{"delete"}, newDeleteCommand},
	{[]string{"cluster"}, newClusterCommand},
	{[]string{"apply"}, newApplyCommand},
	{[]string{"info"}, newInfoCommand},
}

type topCommand struct {
	names []string
	build func(*options) *cobra.Command
}

// NewCommand builds the command tree.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	return newCommand(stdout, stderr, "")
}

// newCommand builds the command tree, or with only naming one of topCommands
// (as commandName finds it in the arguments) the root with that command alone:
// agentctl runs one command per process, and building the ~40 commands with
// their flags was a tenth of its start. Cobra resolves the same arguments to
// the same command in either tree, and everything that looks at the whole tree
// (help, completion, an unknown command's suggestions) gets the whole tree,
// since only is then none of topCommands.
func newCommand(stdout, stderr io.Writer, only string) *cobra.Command {
	o := &options{out: stdout, errOut: stderr}
	root := &cobra.Command{
		Use:           "agentctl",
		Short:         "agentctl controls agentd, a node agent whose containers outlive it",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&o.root, "root", envOr("AGENT_ROOT", DefaultRoot), "agentd's root directory (images are stored under <root>/images) [$AGENT_ROOT]")
	root.PersistentFlags().StringVar(&o.socket, "socket", envOr("AGENT_SOCKET", DefaultSocket), "agentd's API socket [$AGENT_SOCKET]")

	for _, c := range topCommands {
		if slices.Contains(c.names, only) {
			root.AddCommand(c.build(o))
			// The whole tree has agentctl's own completion command; cobra must
			// not add its default one to this tree instead.
			root.CompletionOptions.DisableDefaultCmd = true
			rejectUnknownSubcommands(root)
			return root
		}
	}
	for _, c := range topCommands {
		root.AddCommand(c.build(o))
	}
	root.AddCommand(newCompletionCommand(root))
	rejectUnknownSubcommands(root)
	return root
}

// commandName is the first argument cobra takes for a command name rather than
// a flag or a flag's value, by cobra's rule (stripFlags) with the root's flags,
// none of which is a boolean: "--" ends the flags, "--flag" without "=" and a
// two-character "-f" take the next argument as their value. "" when there is none.
func commandName(args []string) string {
	for len(args) > 0 {
		s := args[0]
		args = args[1:]
		switch {
		case s == "--":
			return ""
		case strings.HasPrefix(s, "--") && !strings.Contains(s, "="),
			strings.HasPrefix(s, "-") && !strings.Contains(s, "=") && len(s) == 2:
			if len(args) <= 1 {
				return ""
			}
			args = args[1:]
		case s != "" && !strings.HasPrefix(s, "-"):
			return s
		}
	}
	return ""
}

func newVersionCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(o.out, "Client Version:", version.Version)
			printServerVersion(o, cmd)
		},
	}
}

// rejectUnknownSubcommands makes every command that only groups others (image, get,
// cluster…) refuse an argument that names none of them, as kubectl does: cobra would
// print the group's help and exit 0, so that a typo (`agentctl image pul x`) looks like
// success. get, describe and delete say, as kubectl, that there is no such resource type.
// The root is left to cobra, whose error already names the command ("unknown command
// "foo" for "agentctl"").
func rejectUnknownSubcommands(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c == root || !c.HasSubCommands() || c.Runnable() {
			return
		}
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			switch cmd.Name() {
			case "get", "describe", "delete":
				return fmt.Errorf("the server doesn't have a resource type %q", args[0])
			}
			return fmt.Errorf("unknown command %q\nSee '%s -h' for help and examples", strings.Join(args, " "), cmd.CommandPath())
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	walk(root)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newCompletionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "Print a shell completion script",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(cmd.OutOrStdout(), true)
			case "zsh":
				return root.GenZshCompletion(cmd.OutOrStdout())
			case "fish":
				return root.GenFishCompletion(cmd.OutOrStdout(), true)
			}
			return fmt.Errorf("unsupported shell %q", args[0])
		},
	}
}
