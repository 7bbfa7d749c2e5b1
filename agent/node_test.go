package agent

import "testing"

func TestParseMemTotal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"MemTotal:       24683548 kB\nMemFree:        22682964 kB\n", 24683548 << 10},
		{"MemFree:        1 kB\nMemTotal: 2048 kB\n", 2 << 20},
		{"MemTotal: lots kB\n", 0},
		{"", 0},
	} {
		if got := parseMemTotal([]byte(tc.in)); got != tc.want {
			t.Errorf("parseMemTotal(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestOOMScoresCapped(t *testing.T) {
	for _, tc := range []struct {
		own      int
		canLower bool
		want     bool
	}{
		{0, false, true},     // this kind of machine: root without CAP_SYS_RESOURCE
		{-500, false, true},  // under agentd.service without the capability
		{-500, true, false},  // under agentd.service as usual
		{-999, false, false}, // already below the monitors': nothing to lower
		{-998, false, false},
	} {
		if got := oomScoresCapped(tc.own, tc.canLower); got != tc.want {
			t.Errorf("oomScoresCapped(%d, %v) = %v, want %v", tc.own, tc.canLower, got, tc.want)
		}
	}
}
