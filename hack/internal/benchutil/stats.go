package benchutil

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Percentile is the p-th percentile (nearest rank) of ds; 0 for none. p 50 is
// the lower of the two middle values of an even count.
func Percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// Median is the median of f over xs: the mean of the two middle values of an
// even count; 0 for none.
func Median[T any](xs []T, f func(T) time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = f(x)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}

// Dur formats d for a report: "-" for 0, ms below 10 s, else s.
func Dur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", Millis(d))
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", Millis(d))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MsList formats ds sorted, in milliseconds with one decimal, separated by spaces.
func MsList(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprintf("%.1f", Millis(d))
	}
	return strings.Join(parts, " ")
}

// Verdict is "ok" or "MISSED", for a target.
func Verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// Table is a results table: columns aligned with two spaces between them.
type Table struct{ tw *tabwriter.Writer }

// NewTable starts a table on w; Flush writes it.
func NewTable(w io.Writer) *Table {
	return &Table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// Row adds a row of cells.
func (t *Table) Row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

// Flush writes the table.
func (t *Table) Flush() { _ = t.tw.Flush() }
