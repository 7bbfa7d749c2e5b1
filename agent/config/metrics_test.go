package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestMetricsAddress(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		err      string // "" valid
		loopback bool
	}{
		{"", "", false},
		{"127.0.0.1:10253", "", true},
		{"127.0.0.2:0", "", true},
		{"[::1]:9100", "", true},
		{"localhost:9100", "", true},
		{"0.0.0.0:10253", "", false},
		{":10253", "", false},
		{"192.0.2.1:10253", "", false},
		{"127.0.0.1", "is not host:port", false},
		{"127.0.0.1:http", `port "http" is not a number`, false},
		{"127.0.0.1:70000", `port "70000" is not a number`, false},
		{"metrics.example:10253", `"metrics.example" is not an IP address or localhost`, false},
	} {
		err := checkMetricsAddress(tc.addr)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.addr, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one containing %q", tc.addr, err, tc.err)
		}
		if tc.err == "" && tc.addr != "" && IsLoopback(tc.addr) != tc.loopback {
			t.Errorf("IsLoopback(%q) = %v", tc.addr, !tc.loopback)
		}
	}
}

func TestMetricsAddressSetting(t *testing.T) {
	setup(t)
	c, err := Load([]string{"--metrics-address="})
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddress != "" {
		t.Errorf("--metrics-address= gave %q, want empty (off)", c.MetricsAddress)
	}
	_, err = Load([]string{"--metrics-address=nohost"})
	wantErr(t, err, "invalid configuration: ", `metrics-address: "nohost" is not host:port`)
	// A change needs a restart.
	after := c.clone()
	after.MetricsAddress = "127.0.0.1:9100"
	r, n := Diff(c, after)
	if len(r) != 0 || !reflect.DeepEqual(n, []Change{{"metrics-address", "", "127.0.0.1:9100"}}) {
		t.Errorf("Diff: reloadable %v, needRestart %v", r, n)
	}
}
