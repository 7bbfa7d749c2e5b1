# agentd: build, test, run. `make help` lists the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/agentd-project/agentd/agent/version.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'
BINARIES := bin/agentd bin/agentctl bin/agent-monitor bin/agent-monitor-lean bin/agent-etcd

# Everything `make run` keeps lives here (state, logs, the test image).
RUN_DIR ?= $(CURDIR)/_run
TEST_IMAGE := _output/busybox.tar
FUZZTIME ?= 60s
BENCHTIME ?= 1s
TEST_ENV := AGENTD_TEST_BIN=$(CURDIR)/bin AGENTD_TEST_IMAGE=$(CURDIR)/$(TEST_IMAGE)

.PHONY: all build install deps image cri-tools test-cri test test-unit test-integration test-upgrade test-cgroupv2 soak lint fuzz bench bench-restore bench-pull bench-go run docs clean help

all: build

help:
	@echo "make run               run agentd on manifests/examples (state under $(RUN_DIR))"
	@echo "make test              everything: deps, lint, unit, root integration and e2e tests, then critest"
	@echo "make test-unit         fast tests that need neither root nor containers"
	@echo "make test-integration  root tests with real monitors and containers, the upgrade test among them"
	@echo "make test-upgrade      only the upgrade from the previous landed commit (hack/upgrade-from)"
	@echo "make test-cgroupv2     agentd on unified cgroup v2, in a Debian VM under qemu (root; not part of make test)"
	@echo "make test-cri          critest's offline subset against an agentd of its own (or CRI_SOCKET's), as root"
	@echo "make soak              the crash-consistency chaos test, long (SOAK_ROUNDS, SOAK_PODS, AGENTD_CHAOS_SEED)"
	@echo "make build             bin/agentd bin/agentctl bin/agent-monitor bin/agent-monitor-lean bin/agent-etcd"
	@echo "make install           the binaries into $$(DESTDIR)$$(PREFIX)/bin (default /usr/local/bin)"
	@echo "make bench             monitor, agentd, restore (100 pods) and pull benchmarks against their yardsticks (root); bench-restore: 100 and 1000 pods"
	@echo "make bench-pull        registry pull against skopeo copy (or crane), on a loopback registry"
	@echo "make bench-go          the go test benchmarks in the packages they measure"
	@echo "make lint | fuzz | docs | clean"

build: $(BINARIES)

# Go decides what is stale; the binaries are always handed to it.
.PHONY: $(BINARIES)
$(BINARIES):
	CGO_ENABLED=$(or $(CGO_$(notdir $@)),1) $(GO) build $(GOFLAGS_BUILD) -tags '$(TAGS_$(notdir $@))' -o $@ ./cmd/$(notdir $@)

# The monitor applies the RuntimeDefault seccomp profile through libseccomp.
TAGS_agent-monitor := seccomp
# The lean monitor stays static: no libc, no malloc arenas, less memory per container.
CGO_agent-monitor-lean := 0
# agentctl stays static too: it starts per command, and ld.so loading libc and the cgo
# runtime's thread setup cost it ~100 page faults and ~1 ms CPU a run (it needs no cgo:
# it dials a unix socket and resolves no names through libc).
CGO_agentctl := 0

# The binaries side by side (agentd finds agent-monitor, agent-monitor-lean and
# agent-etcd beside its own executable): PREFIX=/usr/local, DESTDIR for packaging.
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINARIES) $(DESTDIR)$(PREFIX)/bin/

deps:
	hack/install-deps.sh

# crictl and critest (hack/tools pins the version) for driving the CRI socket.
cri-tools:
	hack/build-cri-tools.sh

# critest's offline subset (docs/cri-critest.md) against an agentd the script
# starts, stops and cleans up after; CRI_SOCKET=... for an agentd already running.
# CRI_TIMEOUT bounds critest (default 10m); it takes under a minute.
test-cri: build
	hack/test-cri.sh

image: $(TEST_IMAGE)
$(TEST_IMAGE): hack/testimage/main.go
	@mkdir -p $(dir $@)
	hack/build-test-image.sh $@

# The whole suite once: unit tests and the root tests (which skip under -short),
# then critest against agentd's CRI socket (hack/test-cri.sh, which builds
# cri-tools from the Go module proxy and needs nothing `make deps` lacks).
test: deps lint build image cri-tools
	$(TEST_ENV) $(GO) test -count=1 -p 1 -timeout 25m ./...
	hack/test-cri.sh

test-unit:
	$(GO) test -short -count=1 ./...

# The root and e2e tests; TestE2EUpgrade among them runs hack/test-upgrade.sh
# against the previous landed commit (hack/upgrade-from), as `make test` does.
test-integration: build image cri-tools
	$(TEST_ENV) $(GO) test -count=1 -p 1 -timeout 25m -run 'Root|E2E' ./...

test-upgrade: build image
	$(TEST_ENV) hack/test-upgrade.sh

# agentd on a unified cgroup v2 host (Debian 12's kernel and systemd) in a VM
# that hack/test-cgroupv2.sh builds from Debian's packages (cached in
# _output/cgv2/) and boots under qemu without KVM: a few minutes, more on the
# first run, which downloads the packages. Not part of `make test`.
test-cgroupv2: build image
	$(TEST_ENV) hack/test-cgroupv2.sh

# The chaos test of make test, longer: kill -9 of agentd in every round of a
# seeded churn; it prints its seed (AGENTD_CHAOS_SEED=N replays a run).
SOAK_ROUNDS ?= 300
SOAK_PODS ?= 16
soak: deps build image
	$(TEST_ENV) AGENTD_CHAOS_ROUNDS=$(SOAK_ROUNDS) AGENTD_CHAOS_PODS=$(SOAK_PODS) $(GO) test -count=1 -p 1 -timeout 120m -v -run 'TestE2EChaos' ./agent/e2e/

lint:
	hack/verify-gofmt.sh
	$(GO) vet ./...

fuzz:
	cd spec && $(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) .

# Benchmarks print each figure beside its yardstick from the same run (u,
# conmon+runc's start; or the peer's own figure), the ratio and DESIGN.md's
# target; they are not pass/fail. The drivers use the binaries and the API only.
# Their flags pass through, e.g. BENCH_AGENT_FLAGS='-burst 20 -idle 5s'.
# `make bench` restores 100 live pods (about a minute); bench-restore adds 1000.
bench: deps build image
	hack/bench-monitor.sh $(BENCH_MONITOR_FLAGS)
	hack/bench-agent.sh $(BENCH_AGENT_FLAGS)
	hack/bench-restore.sh -counts 100 $(BENCH_RESTORE_FLAGS)
	hack/bench-pull.sh $(BENCH_PULL_FLAGS)

# Restore of 100 and 1000 live pods (6-7 minutes: starting 1000 pods dominates);
# BENCH_RESTORE_FLAGS='-counts 20 -reps 1' for a quick one.
bench-restore: deps build image
	hack/bench-restore.sh $(BENCH_RESTORE_FLAGS)

# Registry pull against skopeo copy (`make deps` installs it; crane when it is
# missing), on a loopback registry; BENCH_PULL_FLAGS='-size 50 -reps 1' for a
# quick one. No root needed, so no deps here; `make bench` runs it too.
bench-pull:
	hack/bench-pull.sh $(BENCH_PULL_FLAGS)

# The in-process benchmarks, in the packages they measure (the root ones need root).
bench-go: build image
	$(TEST_ENV) $(GO) test -count=1 -p 1 -run '^$$' -bench . -benchtime $(BENCHTIME) ./...

docs:
	$(GO) run ./hack/gendocs

run: deps build image
	@hack/run-local.sh "$(RUN_DIR)"

clean:
	rm -rf bin _output
