package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// schema is the tree of file keys: a leaf holds its setting, an inner node (network, cluster) its children.
type schema struct {
	setting  *setting
	children map[string]*schema
}

var fileSchema = buildSchema()

func buildSchema() *schema {
	top := &schema{children: map[string]*schema{}}
	for i := range settings {
		n := top
		for _, part := range strings.Split(settings[i].key, ".") {
			if n.children[part] == nil {
				n.children[part] = &schema{children: map[string]*schema{}}
			}
			n = n.children[part]
		}
		n.setting = &settings[i]
	}
	return top
}

// decodeFile reads the JSON configuration file data onto c and returns the keys it set (leaf paths such as
// "network.bridge"). Keys the file leaves out keep c's values. An unknown key, a value of the wrong type or
// invalid JSON is an error naming the key or the line and column.
func decodeFile(data []byte, c *Config) (map[string]bool, error) {
	set := map[string]bool{}
	if len(bytes.TrimSpace(data)) == 0 {
		return set, nil // an empty file is an empty object, as in dockerd
	}
	top, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	d := decoder{c: c, set: set}
	d.walk("", top, fileSchema)
	if len(d.unknown) > 0 {
		d.errs = append([]error{unknownKeysError(d.unknown)}, d.errs...)
	}
	if len(d.errs) > 0 {
		return nil, joinErrors(d.errs)
	}
	return set, nil
}

// decodeObject parses the whole file as one JSON object.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("invalid JSON at %s: %w", position(data, syn.Offset), err)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("invalid JSON at %s: unexpected end of file", position(data, int64(len(data))))
		case errors.As(err, &typ):
			return nil, fmt.Errorf("want a JSON object at the top, got %s", typ.Value)
		}
		return nil, err
	}
	if top == nil {
		return nil, errors.New("want a JSON object at the top, got null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("invalid JSON at %s: data after the top-level object", position(data, dec.InputOffset()))
	}
	return top, nil
}

// position turns a byte offset as encoding/json reports it (the bytes read, the bad one included) into
// "line L, column C", both counted from 1.
func position(data []byte, offset int64) string {
	offset = min(max(offset, 1), int64(len(data)))
	before := data[:offset-1]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

type decoder struct {
	c       *Config
	set     map[string]bool
	unknown []string
	errs    []error
}

func (d *decoder) walk(prefix string, obj map[string]json.RawMessage, node *schema) {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		path := prefix + k
		child := node.children[k]
		raw := obj[k]
		switch {
		case child == nil:
			d.unknown = append(d.unknown, path)
		case bytes.Equal(bytes.TrimSpace(raw), []byte("null")):
			d.errs = append(d.errs, fmt.Errorf("%s: null is not a value; leave the key out to get the default", path))
		case child.setting != nil:
			if err := decodeValue(raw, child.setting.field(d.c)); err != nil {
				d.errs = append(d.errs, fmt.Errorf("%s: %w", path, err))
				continue
			}
			d.set[path] = true
		default:
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(raw, &sub); err != nil {
				d.errs = append(d.errs, fmt.Errorf("%s: want an object, got %s", path, abbrev(raw)))
				continue
			}
			d.walk(path+".", sub, child)
		}
	}
}

// decodeValue decodes raw into a fresh value of the field's type and stores it, so a list or an object in the file
// replaces the default instead of being merged into it.
func decodeValue(raw json.RawMessage, field any) error {
	v := reflect.New(reflect.TypeOf(field).Elem())
	if err := json.Unmarshal(raw, v.Interface()); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return fmt.Errorf("want %s, got %s", describe(field), abbrev(raw))
		}
		return err
	}
	copyField(field, v.Interface())
	return nil
}

func unknownKeysError(keys []string) error {
	var b strings.Builder
	b.WriteString("the following directives don't match any configuration option: ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		if s := suggest(k); s != "" {
			fmt.Fprintf(&b, " (did you mean %s?)", s)
		}
	}
	return errors.New(b.String())
}

// suggest finds the key a misspelt one was meant to be when only case, '_' or '-' differ (liveRestore,
// live_restore).
func suggest(key string) string {
	norm := func(s string) string {
		return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s))
	}
	for _, s := range settings {
		if norm(s.key) == norm(key) {
			return s.key
		}
	}
	return ""
}
