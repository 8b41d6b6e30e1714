# Sluice: every developer and CI entry point. Needs only Go (and make).
GO      ?= go
PKGS    ?= ./...
# The race detector doubles run time but catches what matters most in a
# concurrent message-driven system; CI runs it on every test.
TESTFLAGS ?= -race -count=1 -timeout 20m
# VERSION is what `sluice version` and every binary's --version print
# (internal/buildinfo); without git, the binaries fall back to the VCS
# revision Go records.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
LDFLAGS ?= -X github.com/sluicehq/sluice/internal/buildinfo.version=$(VERSION)

.PHONY: all run demo test lint fmt vet bench bench-kube chaos fuzz build clean kube-tools

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/... ./examples/...

## run: start Sluice in one process (`sluice dev`) with state in .sluice/
run: build
	bin/sluice dev

## demo: the narrated canary scenario (v1 live, v2 promoted, v3 aborted)
demo: build
	scripts/demo.sh

## test: lint, then every test (real embedded NATS, a real Kubernetes
## control plane from kube-tools, a real InfluxDB from scripts/influxdb.sh,
## no mocks). The binaries the tests run are
## built once, into bin/test (internal/testbin), before any test starts.
test: lint
	SLUICE_KUBE_TOOLS=$${SLUICE_KUBE_TOOLS:-$$(GO=$(GO) scripts/kube-tools.sh)} && export SLUICE_KUBE_TOOLS && \
	SLUICE_INFLUXD=$${SLUICE_INFLUXD:-$$(GO=$(GO) scripts/influxdb.sh)} && export SLUICE_INFLUXD && \
	SLUICE_TEST_BIN=$$(GO=$(GO) $(GO) run ./internal/testbin/build) && export SLUICE_TEST_BIN && \
	$(GO) test $(TESTFLAGS) $(PKGS)

## kube-tools: build etcd, kube-apiserver, kube-controller-manager,
## kube-scheduler and kwok for the Kubernetes test tier (docs/testing-kube.md);
## cached in ~/.cache/sluice/kube-tools, rebuilt only when versions change
kube-tools:
	@GO=$(GO) scripts/kube-tools.sh

## lint: gofmt check and go vet
lint: fmt vet

fmt:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.sluice/*' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## bench: benchmarks; figures go to docs/benchmarks.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./pkg/events/...
	$(GO) test -run '^$$' -bench Next -benchmem ./services/orchestrator/machine
	$(GO) test -run '^$$' -bench BusLimit -benchtime 50000x ./test/bench
	$(GO) test -run '^$$' -bench 'Sluice|AbortReaction' -benchtime 1x -timeout 60m ./test/bench
	$(GO) test -run '^$$' -bench AtScale -benchtime 1x -timeout 60m ./test/bench
	$(GO) test -run '^$$' -bench Notifier -benchtime 1x ./test/bench
	$(GO) test -run '^$$' -bench SteadyRequests -benchtime 1x -timeout 30m -v ./test/bench

## bench-kube: the Kubernetes platform's benchmarks on the real control plane,
## and Sluice against Argo Rollouts' own controller with 1, 30 and 300 rollouts
bench-kube:
	SLUICE_KUBE_TOOLS=$${SLUICE_KUBE_TOOLS:-$$(GO=$(GO) scripts/kube-tools.sh)} && export SLUICE_KUBE_TOOLS && \
	$(GO) test -run '^$$' -bench CanaryUpdate -benchtime 10x ./test/kube && \
	$(GO) test -run '^$$' -bench VersusArgo -benchtime 1x -timeout 120m -v ./test/kube && \
	$(GO) test -run '^$$' -bench Start -benchtime 3x ./internal/kubetest

## chaos: the long fault-injection runs (180 rollouts, eight updates each,
## about 2.5 minutes of faults; then 18 rollouts through six network
## partitions of 40 s each, as root); `make test` runs the short forms.
## Figures go to docs/reliability.md.
chaos:
	SLUICE_CHAOS=full $(GO) test -run 'TestChaos$$|TestPartitions' -count=1 -v -timeout 45m ./test/chaos

## fuzz: fuzz the event decoder (FUZZTIME=1m by default)
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./pkg/events

clean:
	rm -rf bin .sluice .sluice-demo .sluice-demo.log
