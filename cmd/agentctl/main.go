// Command agentctl is the kubectl-like CLI of agentd.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/agentd-project/agentd/agent/version"
)

func main() {
	root := &cobra.Command{
		Use:           "agentctl",
		Short:         "agentctl controls the agentd node agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the client version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "Client Version:", version.Version)
		},
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
