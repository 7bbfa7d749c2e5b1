package crashpoint

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]int
		bad  bool
	}{
		{in: "", want: map[string]int{}},
		{in: "sandbox-created", want: map[string]int{"sandbox-created": 1}},
		{in: "a@3, b-2", want: map[string]int{"a": 3, "b-2": 1}},
		{in: "a@0", bad: true},
		{in: "a@x", bad: true},
		{in: "A", bad: true},
		{in: "@2", bad: true},
		{in: "a/b", bad: true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("Parse(%q) error %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestHitUnarmed(t *testing.T) {
	Hit("anything") // must return: nothing is armed in tests
}
