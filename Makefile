# bootlab: `make demo` and `make test` are the two set-up commands (README.md).
SHELL := /bin/bash
GO ?= go
# Fuzz targets run for this long each in `make test`; longer runs: make fuzz FUZZTIME=10m
FUZZTIME ?= 10s
# Scale every VM timeout (slow or loaded machines): make test TIMEOUT_SCALE=2
TIMEOUT_SCALE ?= 1
export BOOTLAB_TIMEOUT_SCALE := $(TIMEOUT_SCALE)

# Packages whose tests boot real VMs or build images; everything else is unit-level and
# runs with the race detector.
VM_PKGS = ./artifacts/images/... ./harness/vmtest/ ./harness/faults/ ./harness/bisect/vmprobe/ ./harness/cmd/bootlab/
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /scenarios -e /harness/vmtest -e /harness/faults -e /harness/bisect/vmprobe -e /artifacts/images -e /harness/cmd/bootlab)

.PHONY: all deps build vet unit fuzz vm scenarios test demo bench soak nixcheck bisect-demo vendor-hash clean

all: build

deps:
	@bash .ci/deps.sh

build:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o bin/ ./provisioner/cmd/... ./harness/cmd/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Every fuzz target in the tree, each for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz: $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/bootlab-fuzz.log 2>&1 || { cat /tmp/bootlab-fuzz.log; exit 1; }; \
	  done; \
	done

nixcheck:
	@bash .ci/nix-parse-check.sh

# Real VMs under TCG (or KVM when the probe says it works): harness integration tests
# on the mini image, then the end-to-end scenarios on the fixture ISO.
vm:
	$(GO) test -count=1 -p 1 -timeout 50m -v $(VM_PKGS) 2>&1 | tee /tmp/bootlab-vmtest.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

scenarios:
	$(GO) test -count=1 -timeout 70m -v ./scenarios/ 2>&1 | tee /tmp/bootlab-scenarios.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+scenarios)' ; exit $${PIPESTATUS[0]}

test: deps vet nixcheck unit fuzz vm scenarios

demo: deps
	$(GO) run ./harness/cmd/bootlab demo

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./harness/console/ ./harness/ansi/ ./harness/frame/ ./harness/bisect/
	$(GO) run ./harness/cmd/bootlab bench --out /tmp/bootlab-bench.md

soak: deps
	$(GO) test -count=1 -timeout 120m -run TestSoak -v ./harness/faults/ -soak 100

# The flake's vendorHash must follow go.mod/go.sum (and newly imported packages).
vendor-hash:
	@bash .ci/vendor-hash.sh --update

bisect-demo: deps
	$(GO) run ./harness/cmd/bootlab bisect demo

clean:
	rm -rf bin
