package server_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/server"
)

// updateBackend is a fakeBackend that knows container "c1" and records the
// updates it is given; an update of "gone" finds an exited container.
type updateBackend struct {
	*fakeBackend
	got []*protocol.Resources
}

func (u *updateBackend) UpdateContainerResources(_ context.Context, id string, upd *protocol.Resources) error {
	switch id {
	case "c1":
		u.got = append(u.got, upd)
		return nil
	case "gone":
		return fmt.Errorf("%w: container gone is exited", server.ErrFailedPrecondition)
	case "kernel":
		return fmt.Errorf("%w: update container kernel: write memory.limit_in_bytes: device or resource busy", server.ErrInvalidArgument)
	}
	return notFound("container", id)
}

func ptr[T any](v T) *T { return &v }

func TestUpdateContainerResources(t *testing.T) {
	ub := &updateBackend{fakeBackend: newFake()}
	f := serveBackend(t, ub)

	// What reaches the backend: 0 and "" leave a limit as it is.
	for _, tc := range []struct {
		name string
		in   *runtimeapi.LinuxContainerResources
		want *protocol.Resources
	}{
		{"nothing", nil, &protocol.Resources{}},
		{"all zero", &runtimeapi.LinuxContainerResources{}, &protocol.Resources{}},
		{"memory and cpu", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000},
			&protocol.Resources{MemoryLimit: ptr(int64(64 << 20)), CPUShares: ptr(uint64(512)), CPUQuota: ptr(int64(50000)), CPUPeriod: ptr(uint64(100000))}},
		{"cpuset", &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1,3", CpusetMems: "0"},
			&protocol.Resources{CpusetCpus: ptr("0-1,3"), CpusetMems: ptr("0")}},
		{"quota alone", &runtimeapi.LinuxContainerResources{CpuQuota: 20000}, &protocol.Resources{CPUQuota: ptr(int64(20000))}},
		// kubelet sends every page size, with 0 when the pod asks for none, and an OOM score: neither is a change.
		{"kubelet's zero hugepages and oom score", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20, OomScoreAdj: 999,
			HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}}},
			&protocol.Resources{MemoryLimit: ptr(int64(32 << 20))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ub.got = nil
			if err := f.rt.UpdateContainerResources(f.ctx, "c1", &runtimeapi.ContainerResources{Linux: tc.in}); err != nil {
				t.Fatal(err)
			}
			if len(ub.got) != 1 || !reflect.DeepEqual(ub.got[0], tc.want) {
				t.Errorf("backend got %+v, want %+v", ub.got, tc.want)
			}
		})
	}

	// Refused at the edge with InvalidArgument, the backend never asked.
	for _, tc := range []struct {
		name string
		in   *runtimeapi.LinuxContainerResources
	}{
		{"negative memory", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}},
		{"negative quota", &runtimeapi.LinuxContainerResources{CpuQuota: -100000}},
		{"negative shares", &runtimeapi.LinuxContainerResources{CpuShares: -2}},
		{"negative period", &runtimeapi.LinuxContainerResources{CpuPeriod: -1}},
		{"memory below a page", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100}},
		{"absurd memory", &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1<<62 + 1}},
		{"shares too big", &runtimeapi.LinuxContainerResources{CpuShares: 1 << 20}},
		{"shares 1", &runtimeapi.LinuxContainerResources{CpuShares: 1}},
		{"period too long", &runtimeapi.LinuxContainerResources{CpuPeriod: 2000000}},
		{"period too short", &runtimeapi.LinuxContainerResources{CpuPeriod: 10}},
		{"quota too small", &runtimeapi.LinuxContainerResources{CpuQuota: 10}},
		{"bad cpuset", &runtimeapi.LinuxContainerResources{CpusetCpus: "0-"}},
		{"backwards cpuset", &runtimeapi.LinuxContainerResources{CpusetCpus: "3-1"}},
		{"cpuset words", &runtimeapi.LinuxContainerResources{CpusetMems: "all"}},
		{"hugepages", &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2 << 20}}}},
		{"unified", &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}}},
		{"swap", &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: 1 << 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ub.got = nil
			err := f.rt.UpdateContainerResources(f.ctx, "c1", &runtimeapi.ContainerResources{Linux: tc.in})
			wantCode(t, "UpdateContainerResources", err, codes.InvalidArgument)
			if len(ub.got) != 0 {
				t.Errorf("the backend was asked: %+v", ub.got)
			}
		})
	}
	err := f.rt.UpdateContainerResources(f.ctx, "c1", &runtimeapi.ContainerResources{Windows: &runtimeapi.WindowsContainerResources{CpuShares: 2}})
	wantCode(t, "Windows resources", err, codes.InvalidArgument)

	// The backend's classes, mapped in one place (errors.go).
	linux := &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}}
	wantCode(t, "unknown container", f.rt.UpdateContainerResources(f.ctx, "nosuch", linux), codes.NotFound)
	wantCode(t, "exited container", f.rt.UpdateContainerResources(f.ctx, "gone", linux), codes.FailedPrecondition)
	wantCode(t, "kernel refusal", f.rt.UpdateContainerResources(f.ctx, "kernel", linux), codes.InvalidArgument)
}
