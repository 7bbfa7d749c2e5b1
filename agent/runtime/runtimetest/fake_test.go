package runtimetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/runtime"
)

func TestReopenLog(t *testing.T) {
	ctx := context.Background()
	r := New(t.TempDir())
	live := &protocol.ContainerConfig{ID: "uid1_app", Name: "app", Restart: protocol.Restart{Policy: protocol.RestartAlways}}
	crashed := &protocol.ContainerConfig{ID: "uid2_app", Name: "app", Restart: protocol.Restart{Policy: protocol.RestartAlways}}
	stopped := &protocol.ContainerConfig{ID: "uid3_app", Name: "app", Restart: protocol.Restart{Policy: protocol.RestartAlways}}
	for _, cfg := range []*protocol.ContainerConfig{live, crashed, stopped} {
		if _, err := r.Start(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	r.KillMonitor(crashed.ID)
	if _, err := r.Stop(ctx, stopped.ID, 0); err != nil {
		t.Fatal(err)
	}

	if err := r.ReopenLog(ctx, live.ID); err != nil {
		t.Errorf("ReopenLog of a running container: %v", err)
	}
	for _, id := range []string{crashed.ID, stopped.ID, "nosuch_app"} {
		if err := r.ReopenLog(ctx, id); !errors.Is(err, runtime.ErrMonitorGone) {
			t.Errorf("ReopenLog %s = %v, want ErrMonitorGone", id, err)
		}
	}
	want := []string{"ReopenLog uid1_app", "ReopenLog uid2_app", "ReopenLog uid3_app", "ReopenLog nosuch_app"}
	var got []string
	for _, c := range r.Calls() {
		if strings.HasPrefix(c, "ReopenLog ") {
			got = append(got, c)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}
