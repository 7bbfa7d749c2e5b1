package config

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Size is a number of bytes written as a Kubernetes quantity ("32Gi", "500M", "1073741824") in the file and on
// the command line; a trailing B is allowed ("10GiB", "500MB"). 0 usually means no limit.
type Size struct{ Bytes int64 }

// ParseSize reads a size as Set does.
func ParseSize(s string) (Size, error) {
	var z Size
	return z, z.setTo(s, &z)
}

func (Size) setTo(s string, dst *Size) error {
	t := strings.TrimSpace(s)
	if t == "" || t[0] < '0' || t[0] > '9' {
		// A quantity may start with a sign or a dot, and "Gi" alone parses as 0.
		return fmt.Errorf("want %s, got %q", describe(dst), s)
	}
	q, err := resource.ParseQuantity(t)
	if err != nil && (strings.HasSuffix(t, "B") || strings.HasSuffix(t, "b")) {
		q, err = resource.ParseQuantity(t[:len(t)-1])
	}
	if err != nil {
		return fmt.Errorf("want %s, got %q", describe(dst), s)
	}
	if q.Cmp(*resource.NewQuantity(q.Value(), resource.BinarySI)) != 0 {
		// "100m" is a tenth of a byte to a quantity: refuse rather than round it up to 1.
		return fmt.Errorf("%q is not a whole number of bytes (m is milli; write M or Mi for mega)", s)
	}
	dst.Bytes = q.Value()
	return nil
}

// String writes the size in the shorter of the binary ("32Gi") and the decimal ("500M") forms, binary on a tie.
func (s Size) String() string {
	bin := resource.NewQuantity(s.Bytes, resource.BinarySI).String()
	if dec := resource.NewQuantity(s.Bytes, resource.DecimalSI).String(); len(dec) < len(bin) {
		return dec
	}
	return bin
}

// MarshalJSON writes the size as a string, the form the file is read in.
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads a size string.
func (s *Size) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("want %s, got %s", describe(s), abbrev(b))
	}
	return s.Set(v)
}

// Set implements pflag.Value.
func (s *Size) Set(v string) error { return s.setTo(v, s) }

// Type implements pflag.Value.
func (s *Size) Type() string { return "size" }

var _ pflag.Value = (*Size)(nil)
