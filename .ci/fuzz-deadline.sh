#!/usr/bin/env bash
# fuzz-deadline.sh LOG TARGET: exits 0 when LOG (the output of one `go test -fuzz
# ^TARGET$ -fuzztime D`) failed only because Go's fuzz coordinator reported its own
# -fuzztime deadline: TARGET's one failure message is the bare "context deadline
# exceeded" and no failing input was written. Go 1.26's internal/fuzz races the end of
# a duration budget against its workers and sometimes returns that deadline as the
# target's error (golang/go#75804, fixed in Go 1.27); a real finding always writes its
# input ("Failing input written to ...") and names what failed.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LOG TARGET" >&2; exit 2; }
log=$1 target=$2
grep -q 'Failing input written to' "$log" && exit 1
grep -q '^panic:' "$log" && exit 1
[ "$(grep -c -- '--- FAIL:' "$log")" -eq 1 ] || exit 1
# The line after "--- FAIL: TARGET (...)" is the whole message.
awk -v t="--- FAIL: $target " '
  index($0, t) == 1 { getline msg; found = 1; exit }
  END { if (!found) exit 1; gsub(/^[ \t]+|[ \t]+$/, "", msg); exit (msg == "context deadline exceeded" ? 0 : 1) }
' "$log"
