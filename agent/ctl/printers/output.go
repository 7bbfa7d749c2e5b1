package printers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/liggitt/tabwriter"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Output formats, the values of agentctl's -o flag.
const (
	FormatTable = ""
	FormatWide  = "wide"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
	FormatName  = "name"
)

// ErrUnknownFormat is returned (wrapped, naming the format) for an -o value no printer
// supports.
var ErrUnknownFormat = errors.New("unable to match a printer suitable for the output format")

func unknownFormat(format string, allowed ...string) error {
	return fmt.Errorf("%w %q, allowed formats are: %s", ErrUnknownFormat, format, strings.Join(allowed, ","))
}

// terminalEscaper neutralises terminal escape sequences in human-readable output, as
// kubectl does (kubernetes issue #101695): a container's message must not drive the
// operator's terminal.
var terminalEscaper = strings.NewReplacer("\x1b", "^[", "\r", "\\r")

// newTabWriter is kubectl's table writer (cli-runtime's GetNewTabWriter): minwidth
// 6, tabwidth 4, padding 3, spaces, and column widths remembered across flushes.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return printers.GetNewTabWriter(w)
}

// TableWriter is a table writer to print a table through several calls that keep
// its columns aligned, as `kubectl get -w` does: pass it as the io.Writer of the
// Print functions. A column is never narrower than it was (it widens for a wider
// cell from then on), so the rows a watch adds line up under the header. Each
// print is flushed at once.
type TableWriter = tabwriter.Writer

// NewTableWriter returns a TableWriter that writes to w.
func NewTableWriter(w io.Writer) *TableWriter { return newTabWriter(w) }

// writeTable writes header (unless noHeaders) and rows as kubectl's aligned table,
// through w itself when it is a TableWriter (its widths carry over).
func writeTable(w io.Writer, header []string, rows [][]string, noHeaders bool) error {
	tw, ok := w.(*tabwriter.Writer)
	if !ok {
		tw = newTabWriter(w)
	}
	if !noHeaders {
		if _, err := fmt.Fprintln(tw, strings.Join(header, "\t")); err != nil {
			return err
		}
	}
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = terminalEscaper.Replace(c)
		}
		if _, err := fmt.Fprintln(tw, strings.Join(cells, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// kubectlList is what `kubectl get <resource> -o json|yaml` prints for several objects:
// a v1 List whose items carry their own apiVersion and kind. It decodes as the typed
// list (PodList, EventList) too.
type kubectlList[T any] struct {
	APIVersion string       `json:"apiVersion"`
	Items      []T          `json:"items"`
	Kind       string       `json:"kind"`
	Metadata   listMetadata `json:"metadata"`
}

type listMetadata struct {
	ResourceVersion string `json:"resourceVersion"`
}

func newList[T any](items []T) kubectlList[T] {
	if items == nil {
		items = []T{}
	}
	return kubectlList[T]{APIVersion: "v1", Kind: "List", Items: items}
}

// writeJSON prints v as kubectl's JSON printer does: keys sorted (kubectl prints
// unstructured maps), four-space indent, trailing newline.
func writeJSON(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers exactly as marshalled
	if err := dec.Decode(&generic); err != nil {
		return err
	}
	out, err := json.MarshalIndent(generic, "", "    ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// writeYAML prints v as kubectl's YAML printer does (sigs.k8s.io/yaml: via JSON, keys
// sorted).
func writeYAML(w io.Writer, v any) error {
	out, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// printSingle prints obj as kubectl prints the one object a `get KIND NAME` named:
// json, yaml and the template formats get the object itself, not a List of one.
// handled is false for the other formats (the tables, name), which print as a
// list of one does.
func printSingle(w io.Writer, obj any, format string, noHeaders bool) (handled bool, err error) {
	switch format {
	case FormatJSON:
		return true, writeJSON(w, obj)
	case FormatYAML:
		return true, writeYAML(w, obj)
	}
	return printTemplate(w, format, obj, noHeaders)
}
