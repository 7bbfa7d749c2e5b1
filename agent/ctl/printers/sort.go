package printers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode"

	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/util/jsonpath"
)

// SortBy orders items by the value of a jsonpath expression, as kubectl's --sort-by:
// the expression is relaxed as custom columns' (".metadata.name", "{.metadata.name}");
// numbers compare as numbers, anything else as text in natural order (digits by value);
// items without the field come first. The sort is stable over the given order.
func SortBy[T any](items []T, field string) ([]T, error) {
	if field == "" {
		return items, nil
	}
	expr, err := relaxedJSONPath(field)
	if err != nil {
		return nil, err
	}
	p := jsonpath.New("sort").AllowMissingKeys(true)
	if err := p.Parse(expr); err != nil {
		return nil, fmt.Errorf("sort-by %q: %w", field, err)
	}
	type keyed struct {
		item T
		key  any
	}
	ks := make([]keyed, len(items))
	for i, it := range items {
		raw, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		var content any
		if err := utiljson.Unmarshal(raw, &content); err != nil {
			return nil, err
		}
		res, err := p.FindResults(content)
		if err != nil {
			return nil, fmt.Errorf("sort-by %q: %w", field, err)
		}
		ks[i].item = it
		if len(res) > 0 && len(res[0]) > 0 {
			ks[i].key = res[0][0].Interface()
		}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return compareKeys(a.key, b.key) })
	out := make([]T, len(ks))
	for i := range ks {
		out[i] = ks[i].item
	}
	return out, nil
}

func compareKeys(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	return naturalCompare(fmt.Sprint(a), fmt.Sprint(b))
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// naturalCompare compares strings with runs of digits by value ("pod-2" < "pod-10").
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digits(a), digits(b)
			x, _ := strconv.ParseUint(a[:i], 10, 64)
			y, _ := strconv.ParseUint(b[:j], 10, 64)
			if x != y {
				if x < y {
					return -1
				}
				return 1
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return c < 0x80 && unicode.IsDigit(rune(c)) }

func digits(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
