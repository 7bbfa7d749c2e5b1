package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletAPIVersion is the version field of VersionResponse: the CRI's own
// "kubelet API version", which every runtime reports as 0.1.0.
const kubeletAPIVersion = "0.1.0"

// Version names the runtime and the CRI version it speaks (v1).
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeletAPIVersion,
		RuntimeName:       RuntimeName,
		RuntimeVersion:    s.version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports RuntimeReady (true while agentd answers) and NetworkReady
// (whether the pod network came up).
func (s *Server) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: s.conditions()},
		// One handler, the default one, with no optional features yet.
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{}}},
		Features:        &runtimeapi.RuntimeFeatures{},
	}, nil
}

// conditions are the runtime conditions Status reports.
func (s *Server) conditions() []*runtimeapi.RuntimeCondition {
	runtime := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady}
	network.Status, network.Reason, network.Message = s.b.NetworkStatus()
	if network.Status {
		network.Reason, network.Message = "", ""
	}
	return []*runtimeapi.RuntimeCondition{runtime, network}
}

// RuntimeConfig reports the cgroup driver: agentd writes cgroupfs itself
// (systemd is never asked), so kubelet must give cgroupfs parents.
func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{
		Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS},
	}, nil
}
