#!/usr/bin/env bash
# Runs every fuzz target in the tree for FUZZTIME each (make fuzz, make test).
#
# With FUZZ_CHANGED_ONLY=1 (make test), a target whose package and everything it
# imports from this module are byte-for-byte what they were at the last green fuzz run
# on this machine is not run again: its seed corpus still runs in `make unit`, and the
# fuzzer would spend its 10 s re-exploring inputs it explored last time. The record is
# kept per package under $BOOTLAB_CACHE/fuzz-green (default ~/.cache/bootlab), keyed by
# a hash of those sources and the Go version; `make fuzz` runs everything.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
cache=${BOOTLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bootlab}/fuzz-green
mkdir -p "$cache"
module=$($GO list -m)
root=$($GO list -m -f '{{.Dir}}')
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# source_hash PKG: the package's and its in-module dependencies' files (Go sources,
# testdata such as fuzz corpora), and the Go version. The checkout's own path is left
# out, so two clones of one commit (make test's fresh clone, the CI runner's) agree.
source_hash() {
  {
    $GO version
    $GO list -deps -test -f '{{if and (not .Standard) .Module}}{{.Dir}}{{end}}' "$1" | sort -u |
      while read -r d; do
        if [ -n "$d" ]; then find "$d" -maxdepth 1 -type f -name '*.go' -print0 | sort -z | xargs -0 -r sha256sum; fi
        if [ -d "$d/testdata" ]; then find "$d/testdata" -type f -print0 | sort -z | xargs -0 -r sha256sum; fi
      done
  } | sed "s#  $root/#  #" | sha256sum | cut -d' ' -f1
}

ran=0; skipped=0
while read -r pkg dir; do
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' || true)
  [ -n "$targets" ] || continue
  mark="$cache/$(echo "$pkg" | tr '/' '_')"
  hash=""
  if [ "${FUZZ_CHANGED_ONLY:-0}" = 1 ]; then
    hash=$(source_hash "$pkg")
    if [ -f "$mark" ] && [ "$(cat "$mark")" = "$hash" ]; then
      n=$(wc -w <<<"$targets")
      echo "fuzz: ${pkg#"$module"/} unchanged since its last green fuzz run here: $n target(s) not run again"
      skipped=$((skipped + n))
      continue
    fi
  fi
  for t in $targets; do
    echo "fuzz: $pkg $t ($FUZZTIME)"
    if ! $GO test -vet=off -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
      # Go 1.26's coordinator can report its own -fuzztime deadline as the target's
      # failure (fuzz-deadline.sh says how it is told from a finding); said, not hidden.
      if bash "$(dirname "$0")/fuzz-deadline.sh" "$log" "$t"; then
        echo "fuzz: $t: no input failed; Go's fuzz coordinator reported its own -fuzztime deadline at the end of the budget (golang/go#75804, fixed in Go 1.27)"
      else
        cat "$log"; exit 1
      fi
    fi
    ran=$((ran + 1))
  done
  # Every target of the package passed: remember what they passed on.
  [ -n "$hash" ] || hash=$(source_hash "$pkg")
  echo "$hash" >"$mark"
done < <($GO list -f '{{.ImportPath}} {{.Dir}}' ./...)
echo "fuzz: $ran target(s) run, $skipped skipped as unchanged"
