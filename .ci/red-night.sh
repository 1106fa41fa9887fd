#!/usr/bin/env bash
# Two nights of nightly.yml as written, through the workflow runner (`make ci-nights`,
# docs/ci.md "A red night explains itself"): each night runs one scenario in shard 1
# of 4 (its debian:12 container) and then the report job; the second night breaks one
# unit of the fixture image on purpose (the break_unit input). The runs share the
# runner's state, and the report's ledger cache carries night 1 to night 2 as the
# Actions cache would. It passes when night 1 is green and night 2's job summary
# explains the failure: the scenario, its run directory and artefact, and the diff
# against night 1's pass naming the broken unit; and the nights table marks it red.
#
#   .ci/red-night.sh [SCENARIO [UNIT]]     (default TestCleanDisk, pre-nixos.service)
set -euo pipefail

scenario=${1:-TestCleanDisk}
unit=${2:-pre-nixos.service}
GO=${GO:-go}
state=${CI_STATE:-$HOME/.cache/bootlab-ci}
out=$(mktemp -d "${TMPDIR:-/tmp}/bootlab-red-night.XXXXXX")
cache=$out/cache
mkdir -p "$cache"
# The images come from the usual runs' cache store (hard links: restore only reads
# them); the ledger history does not, so these two nights start from none.
for e in "$state"/cache/bootlab-images-nightly-scenarios-*; do
  if [ -d "$e" ]; then cp -al "$e" "$cache/"; fi
done

cilocal() {
  "$GO" run ./harness/ci/cmd/cilocal -state "$state" -cache "$cache" \
    -job nightly/scenarios:shard=1 -job nightly/report -input "scenarios=^${scenario}\$" "$@"
}
summary=$state/work/nightly-report/_temp/step-summary.md

t0=$(date +%s)
echo "red-night: night 1: $scenario on the fixture as it is (log: $out/night1.log)"
if ! cilocal >"$out/night1.log" 2>&1; then
  tail -60 "$out/night1.log"
  echo "red-night: night 1 failed; it must pass, to be night 2's last pass" >&2
  exit 1
fi
cp "$summary" "$out/night1-summary.md"
t1=$(date +%s)
echo "red-night: night 2: $scenario with $unit broken (log: $out/night2.log)"
if cilocal -input "break_unit=$unit" >"$out/night2.log" 2>&1; then
  echo "red-night: night 2 passed with $unit broken" >&2
  exit 1
fi
cp "$summary" "$out/night2-summary.md"
t2=$(date +%s)

fail=0
need() { # FILE TEXT WHY
  if ! grep -qF -- "$2" "$1"; then
    echo "red-night: $(basename "$1") lacks \"$2\": $3" >&2
    fail=1
  fi
}
n1=$out/night1-summary.md n2=$out/night2-summary.md
need "$n1" "## Tonight: green" "night 1 passed"
need "$n2" "## Tonight: red" "night 2 failed"
need "$n2" "### $scenario: fail" "the failing scenario is named"
need "$n2" "in the artefact [\`work-notes-merged\`]" "the run directory's artefact is named and linked"
need "$n2" "Compared with the last pass" "night 1's pass came through the ledger cache"
need "$n2" "units failed: $unit" "the diff names the broken unit"
need "$n2" "🔴 red" "the nights table marks night 2"
need "$n2" "🟢 green" "and night 1"
echo "----- night 2's job summary -----"
cat "$n2"
echo "---------------------------------"
echo "red-night: night 1 $((t1 - t0)) s, night 2 $((t2 - t1)) s; logs and summaries in $out"
if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "red-night: ok"
