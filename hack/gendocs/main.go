// Command gendocs writes docs/manifest-fields.md from spec.SupportedFields (make docs).
package main

import (
	"fmt"
	"os"

	"github.com/agentd-project/agentd/spec"
)

func main() {
	if err := os.WriteFile("docs/manifest-fields.md", []byte(spec.FieldDocs()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err, "(run from the repository root: make docs)")
		os.Exit(1)
	}
}
