// Command agentd is the node agent: it runs the Pods of a manifest directory.
package main

import (
	"fmt"
	"os"

	"github.com/agentd-project/agentd/agent/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println("agentd", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "agentd: the daemon is not built yet (issue 4); what exists today is the manifest parser (spec/) and the test image (hack/build-test-image.sh)")
	os.Exit(1)
}
