package printers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"
)

// kubectl's template output formats: -o <format>=<template>, or <format>-file=<path>.
var templateFormats = []string{
	"custom-columns", "custom-columns-file", "go-template", "go-template-file",
	"jsonpath", "jsonpath-as-json", "jsonpath-file", "template", "templatefile",
}

// allowedFormats is every -o value agentctl's get commands take, for the error naming an
// unknown one (kubectl's list).
func allowedFormats() []string {
	return []string{"custom-columns", "custom-columns-file", "go-template", "go-template-file", FormatJSON,
		"jsonpath", "jsonpath-as-json", "jsonpath-file", FormatName, "template", "templatefile", FormatWide, FormatYAML}
}

// IsTemplateFormat reports whether format is one of kubectl's template outputs
// (jsonpath=…, go-template=…, custom-columns=…, and their -file forms).
func IsTemplateFormat(format string) bool {
	name, _, ok := strings.Cut(format, "=")
	if !ok {
		return false
	}
	for _, f := range templateFormats {
		if name == f {
			return true
		}
	}
	return false
}

// CheckFormat returns the error kubectl gives for an -o value no printer supports, or
// nil; a template that does not parse is an error too.
func CheckFormat(format string) error {
	switch format {
	case FormatTable, FormatWide, FormatJSON, FormatYAML, FormatName:
		return nil
	}
	if !IsTemplateFormat(format) {
		return unknownFormat(format, allowedFormats()...)
	}
	_, err := newTemplatePrinter(format, false)
	return err
}

// printTemplate prints v (an object or a kubectl List, as -o json prints it) with the
// template printer format names. handled is false when format is not a template format.
func printTemplate(w io.Writer, format string, v any, noHeaders bool) (handled bool, err error) {
	if !IsTemplateFormat(format) {
		return false, nil
	}
	p, err := newTemplatePrinter(format, noHeaders)
	if err != nil {
		return true, err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return true, err
	}
	return true, p.PrintObj(&jsonObject{raw: raw}, w)
}

// newTemplatePrinter is kubectl's printer for a template format: k8s.io/cli-runtime's
// jsonpath and go-template printers (missing keys allowed, as kubectl's
// --allow-missing-template-keys defaults to), and custom columns over client-go's
// jsonpath.
func newTemplatePrinter(format string, noHeaders bool) (printers.ResourcePrinter, error) {
	name, value, _ := strings.Cut(format, "=")
	if value == "" {
		return nil, fmt.Errorf("%s format specified but no template given", name)
	}
	if strings.HasSuffix(name, "-file") || name == "templatefile" {
		data, err := os.ReadFile(value)
		if err != nil {
			return nil, fmt.Errorf("error reading --template %s, %v", value, err)
		}
		value = string(data)
	}
	switch name {
	case "jsonpath", "jsonpath-file", "jsonpath-as-json":
		p, err := printers.NewJSONPathPrinter(value)
		if err != nil {
			return nil, fmt.Errorf("error parsing jsonpath %s, %v", value, err)
		}
		p.AllowMissingKeys(true)
		if name == "jsonpath-as-json" {
			p.EnableJSONOutput(true)
		}
		return p, nil
	case "go-template", "go-template-file", "template", "templatefile":
		p, err := printers.NewGoTemplatePrinter([]byte(value))
		if err != nil {
			return nil, fmt.Errorf("error parsing template %s, %v", value, err)
		}
		p.AllowMissingKeys(true)
		return p, nil
	case "custom-columns":
		return newCustomColumns(value, noHeaders)
	case "custom-columns-file":
		return customColumnsFromFile(value, noHeaders)
	}
	return nil, unknownFormat(format, allowedFormats()...)
}

// jsonObject is an object as its JSON, for the cli-runtime printers: they print what
// json.Marshal makes of a runtime.Object.
type jsonObject struct{ raw []byte }

func (o *jsonObject) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (o *jsonObject) DeepCopyObject() runtime.Object   { return &jsonObject{raw: bytes.Clone(o.raw)} }
func (o *jsonObject) MarshalJSON() ([]byte, error)     { return o.raw, nil }

// customColumn is one NAME:JSONPATH of a custom-columns spec.
type customColumn struct {
	header string
	path   *jsonpath.JSONPath
}

// customColumns is kubectl's custom-columns printer (kubectl/pkg/cmd/get): a header line,
// then per object (per item of a List) each column's jsonpath results joined by commas,
// "<none>" for none, aligned as kubectl's tables.
type customColumns struct {
	columns   []customColumn
	noHeaders bool
}

func newCustomColumns(spec string, noHeaders bool) (*customColumns, error) {
	if spec == "" {
		return nil, fmt.Errorf("custom-columns format specified but no custom columns given")
	}
	var headers, paths []string
	for _, part := range strings.Split(spec, ",") {
		h, p, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("unexpected custom-columns spec: %s, expected <header>:<json-path-expr>", part)
		}
		headers, paths = append(headers, h), append(paths, p)
	}
	return compileColumns(headers, paths, noHeaders)
}

// customColumnsFromFile reads kubectl's custom-columns file, content: a line of headers
// and a line of jsonpath expressions, separated by blanks.
func customColumnsFromFile(content string, noHeaders bool) (*customColumns, error) {
	sc := bufio.NewScanner(strings.NewReader(content))
	var lines [][]string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, strings.Fields(sc.Text()))
	}
	if len(lines) < 2 {
		return nil, errors.New("custom-columns file: expected a line of headers and a line of jsonpath expressions")
	}
	if len(lines[0]) != len(lines[1]) {
		return nil, fmt.Errorf("number of headers (%d) and field specifications (%d) don't match", len(lines[0]), len(lines[1]))
	}
	return compileColumns(lines[0], lines[1], noHeaders)
}

func compileColumns(headers, paths []string, noHeaders bool) (*customColumns, error) {
	cc := &customColumns{noHeaders: noHeaders}
	for i, h := range headers {
		expr, err := relaxedJSONPath(paths[i])
		if err != nil {
			return nil, err
		}
		p := jsonpath.New(h).AllowMissingKeys(true)
		if err := p.Parse(expr); err != nil {
			return nil, err
		}
		cc.columns = append(cc.columns, customColumn{header: h, path: p})
	}
	return cc, nil
}

var jsonRegexp = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\{\.?([^{}]+)\}$|^\.?([^{}]+)$`) })

// relaxedJSONPath turns kubectl's relaxed column expressions (".metadata.name",
// "metadata.name", "{.metadata.name}") into a jsonpath template.
func relaxedJSONPath(path string) (string, error) {
	m := jsonRegexp().FindStringSubmatch(path)
	if m == nil {
		return "", fmt.Errorf("unexpected path string, expected a 'name1.name2' or '.name1.name2' or '{name1.name2}' or '{.name1.name2}'")
	}
	expr := m[1]
	if expr == "" {
		expr = m[2]
	}
	return "{." + expr + "}", nil
}

func (cc *customColumns) PrintObj(obj runtime.Object, w io.Writer) error {
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var content map[string]any
	if err := utiljson.Unmarshal(raw, &content); err != nil {
		return err
	}
	tw := printers.GetNewTabWriter(w)
	if !cc.noHeaders {
		headers := make([]string, len(cc.columns))
		for i, c := range cc.columns {
			headers[i] = c.header
		}
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
	}
	objects := []any{content}
	if items, ok := content["items"].([]any); ok && strings.HasSuffix(fmt.Sprint(content["kind"]), "List") {
		objects = items
	}
	for _, o := range objects {
		cells := make([]string, len(cc.columns))
		for i, c := range cc.columns {
			results, err := c.path.FindResults(o)
			if err != nil {
				return err
			}
			var vals []string
			for _, r := range results {
				for _, v := range r {
					vals = append(vals, printers.EscapeTerminal(fmt.Sprint(v.Interface())))
				}
			}
			cells[i] = "<none>"
			if len(vals) > 0 {
				cells[i] = strings.Join(vals, ",")
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
