// Package ctl is agentctl, the kubectl-like CLI of agentd: its commands, flags and
// output formats. cmd/agentctl only calls Main. Settings: --socket / AGENT_SOCKET
// (agentd's API socket) and --root / AGENT_ROOT (agentd's root, for the image store).
package ctl

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

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
	cmd := NewCommand(stdout, stderr)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// NewCommand builds the command tree.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
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

	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the client version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(o.out, "Client Version:", version.Version)
		},
	})
	root.AddCommand(newImageCommand(o), newGetCommand(o))
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
