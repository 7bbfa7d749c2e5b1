// Command agentctl is the kubectl-like CLI of agentd; see package ctl.
package main

import (
	"os"

	"github.com/agentd-project/agentd/agent/ctl"
)

func main() {
	os.Exit(ctl.Main(os.Args[1:], os.Stdout, os.Stderr))
}
