# bootlab: `make demo` and `make test` are the two set-up commands (README.md).
SHELL := /bin/bash
GO ?= go
# A go older than go.mod's `go` line fetches that toolchain itself through the module
# proxy (make deps installs a go new enough to, docs/running.md); a go env file or
# Debian's may say GOTOOLCHAIN=local, which would refuse instead. Set it to override.
GOTOOLCHAIN ?= auto
export GOTOOLCHAIN
# Fuzz targets run for this long each in `make test`; longer runs: make fuzz FUZZTIME=10m
FUZZTIME ?= 10s
# Scale every VM timeout (slow or loaded machines): make test TIMEOUT_SCALE=2
TIMEOUT_SCALE ?= 1
export BOOTLAB_TIMEOUT_SCALE := $(TIMEOUT_SCALE)

# Packages whose tests boot real VMs or build images; everything else is unit-level and
# runs with the race detector. The two sets are disjoint, so `make test` runs no test twice.
VM_DIRS = artifacts/images harness/vmtest harness/faults harness/bisect/vmprobe harness/cmd/bootlab
# Longest first (package times in the 24m39s make test: bootlab 444 s, vmtest 247 s,
# images 180 s, faults 156 s, vmprobe 91 s): `go test -p` schedules them roughly in this order.
VM_PKGS = ./harness/cmd/bootlab/ ./harness/vmtest/ ./artifacts/images/... ./harness/faults/ ./harness/bisect/vmprobe/
# Each VM package boots one guest at a time, and a TCG guest keeps one core busy: as
# many packages at once as there are cores (at most 4) keeps every core emulating.
VM_PARALLEL ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /scenarios $(foreach d,$(VM_DIRS),-e /$(d)))
# What the Nix build sandbox can run (flake.nix checks.unit): the unit packages minus those
# whose tests need what the sandbox lacks: git, actionlint and the network (harness/ci),
# chromium (artifacts/report), a go build of its own (harness/ci/cmd/cilocal).
SANDBOX_PKGS = $(filter-out %/harness/ci %/harness/ci/cmd/cilocal %/artifacts/report,$(UNIT_PKGS))

# Run directories of `make vm` and `make scenarios` go to $BOOTLAB_NOTES when set (every CI
# job sets it, and uploads that directory); the go test output is kept there too.
LOGDIR = $(or $(BOOTLAB_NOTES),/tmp)
# `make deps DEPS=nix` installs only that group (.ci/deps.sh lists them); empty = all.
DEPS ?=
# `make scenarios SHARD=2/4` runs the second of four round-robin slices (the nightly
# matrix); ISO=path boots that ISO instead of the fixture image, PROFILE=nixos says how
# to log in to it and what to check (docs/nixos.md), ENTRY=label picks its boot entry.
# SCENARIOS=regexp runs only the scenarios it matches (with SHARD, each shard takes its
# share of those); BREAK_UNIT=name.service breaks that unit of the fixture on purpose
# (how a red night is reported: make ci-nights, docs/ci.md).
SHARD ?=
ISO ?=
PROFILE ?=
ENTRY ?=
SCENARIOS ?=
BREAK_UNIT ?=
SCENARIO_ARGS = $(if $(SHARD),-shard $(SHARD)) $(if $(ISO),-iso $(ISO)) $(if $(PROFILE),-profile $(PROFILE)) $(if $(ENTRY),-entry $(ENTRY)) \
  $(if $(SCENARIOS),-run '$(SCENARIOS)') $(if $(BREAK_UNIT),-break-unit $(BREAK_UNIT))
STATICCHECK_VERSION ?= v0.8.2

# The GitHub workflows run here as written (harness/ci's runner, docs/ci.md): container jobs
# in a debian:12 container (podman), the rest on this machine. `make ci-local` runs every
# job but three of the four nightly shards; `make ci-local JOB=ci/unit` one job
# (JOB=nightly/scenarios:shard=2 one matrix entry; several: JOB="ci/unit ci/nix").
# bisect/bisect needs candidates: BISECT_ISOS='file:///path/a.iso#sha256=HEX ...' (files
# under ~/.cache/bootlab-ci/inputs are seen by the container at the same path).
# CI_LOCAL_FLAGS: e.g. -head (check out HEAD, not the working tree), -input NAME=VALUE.
CI_LOCAL = $(GO) run ./harness/ci/cmd/cilocal
JOB ?=
BISECT_ISOS ?=
CI_LOCAL_JOBS = ci/lint ci/unit ci/nix ci/integration nightly/scenarios:shard=1 nightly/report fresh/fresh $(if $(BISECT_ISOS),bisect/bisect)
CI_LOCAL_FLAGS ?=

.PHONY: all deps build vet lint unit sandbox-unit fuzz vm scenarios test demo bench soak nixcheck bisect-demo vendor-hash clean ci ci-local ci-nights

all: build

deps:
	@bash .ci/deps.sh $(DEPS)

build:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o bin/ ./provisioner/cmd/... ./harness/cmd/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@# The harness runs VMs on Linux only, but its packages build elsewhere (documentation, imports).
	GOOS=darwin $(GO) build ./...

# vet plus staticcheck (pinned; `go run pkg@version` leaves go.mod alone). CI's lint job.
lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# -vet=off: `make vet` ran the full vet already.
unit:
	$(GO) test -race -vet=off -count=1 $(UNIT_PKGS)

sandbox-unit:
	$(GO) test -count=1 $(SANDBOX_PKGS)

# Every fuzz target in the tree, each for FUZZTIME (.ci/fuzz.sh). -run '^$$': their seed
# corpora ran in `make unit` (or `make vm`) already. Inside `make test` a package whose
# sources did not change since its last green fuzz run on this machine is not fuzzed
# again (FUZZ_CHANGED_ONLY=1); `make fuzz` runs every target.
FUZZ_CHANGED_ONLY ?= 0
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZ_CHANGED_ONLY=$(FUZZ_CHANGED_ONLY) bash .ci/fuzz.sh

# Every .nix file parses and flake.nix's vendorHash is current (CI's nix job, which
# make test runs in its `ci` part).
nixcheck:
	@bash .ci/nix-parse-check.sh
	@bash .ci/vendor-hash.sh --check

# Real VMs under TCG (or KVM when the probe says it works): harness integration tests
# on the mini image, then the end-to-end scenarios on the fixture ISO. The terminal shows
# RUN/PASS/FAIL lines only; on a failure .ci/failed-tests.sh prints what each failing
# test wrote (the whole log stays in $(LOGDIR)).
vm:
	@mkdir -p $(LOGDIR)
	$(GO) test -count=1 -p $(VM_PARALLEL) -timeout 50m -v $(VM_PKGS) 2>&1 | tee $(LOGDIR)/bootlab-vmtest.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; \
	  rc=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] || bash .ci/failed-tests.sh $(LOGDIR)/bootlab-vmtest.log; exit $$rc

scenarios:
	@mkdir -p $(LOGDIR)
	$(GO) test -count=1 -timeout 70m -v ./scenarios/ $(SCENARIO_ARGS) 2>&1 | tee $(LOGDIR)/bootlab-scenarios.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+scenarios)' ; \
	  rc=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] || bash .ci/failed-tests.sh $(LOGDIR)/bootlab-scenarios.log; exit $$rc

# make test's part for CI's checks: the ci workflow's lint, unit and nix jobs as written,
# ci/unit in its debian:12 container (so make deps's packages are proven there too).
ci:
	$(CI_LOCAL) $(CI_LOCAL_FLAGS) -job ci/lint -job ci/unit -job ci/nix

ci-local:
	@[ -n "$(JOB)$(BISECT_ISOS)" ] || echo "ci-local: bisect/bisect is not run: it needs BISECT_ISOS (candidate ISOs)"
	$(CI_LOCAL) $(CI_LOCAL_FLAGS) $(if $(BISECT_ISOS),-input 'isos=$(BISECT_ISOS)') $(addprefix -job ,$(or $(JOB),$(CI_LOCAL_JOBS)))

# Two local nights of nightly.yml through the runner: one scenario, then the same with a
# unit broken on purpose; passes when the second night's summary explains the failure
# (.ci/red-night.sh, docs/ci.md "A red night explains itself").
ci-nights:
	@GO=$(GO) bash .ci/red-night.sh

# The parts of `make test`, run in this order; the first failure stops the run. Each
# part's wall time is printed at the end, failed or not. vm and scenarios one after the
# other: run at once under the machine's shared guest slots they took longer (21m55s
# against ~18 min, docs/benchmarks.md).
TEST_PARTS = deps ci fuzz vm scenarios
test:
	@rc=0; table=""; total=0; \
	for part in $(TEST_PARTS); do \
	  t0=$$(date +%s); \
	  $(MAKE) --no-print-directory $$part FUZZ_CHANGED_ONLY=1; rc=$$?; \
	  d=$$(( $$(date +%s) - t0 )); total=$$(( total + d )); \
	  table="$$table$$(printf '  %-10s %3dm%02ds  %s' $$part $$((d/60)) $$((d%60)) $$([ $$rc -eq 0 ] && echo ok || echo FAILED))\n"; \
	  [ $$rc -eq 0 ] || break; \
	done; \
	printf '\nmake test: time per part\n%b  %-10s %3dm%02ds\n' "$$table" total $$((total/60)) $$((total%60)); \
	exit $$rc

demo: deps
	$(GO) run ./harness/cmd/bootlab demo

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./harness/console/ ./artifacts/ansi/ ./harness/frame/ ./harness/bisect/
	$(GO) run ./harness/cmd/bootlab bench --out /tmp/bootlab-bench.md
	$(GO) run ./harness/cmd/bootlab bench --boot --out /tmp/bootlab-bench-boot.md
	$(GO) run ./harness/cmd/bootlab bench --restore --out /tmp/bootlab-bench-restore.md

soak: deps
	$(GO) test -count=1 -timeout 120m -run TestSoak -v ./harness/faults/ -soak 100

# The flake's vendorHash must follow go.mod/go.sum (and newly imported packages).
vendor-hash:
	@bash .ci/vendor-hash.sh --update

# The kernel series on the mini image, then the installer ISO series booted through
# their own menus (docs/bisect-demo.md).
bisect-demo: deps
	$(GO) run ./harness/cmd/bootlab bisect demo
	$(GO) run ./harness/cmd/bootlab bisect demo --isos

clean:
	rm -rf bin
