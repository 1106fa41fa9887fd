#!/usr/bin/env bash
# Prints what each failing test wrote, from a `go test -v` log: `make vm` and
# `make scenarios` show only RUN/PASS/FAIL lines on the terminal (the full log is long),
# so without this a CI failure names the test but not why it failed.
#
# usage: .ci/failed-tests.sh LOG [LINES]   (LINES: the last lines kept per test, default 80)
#
# go test -v labels interleaved output of parallel tests with "=== RUN/CONT/NAME/PAUSE
# <test>" headers, the same attribution `go tool test2json` uses; lines after a header
# belong to that test until the next header.
set -euo pipefail
log=${1:?usage: failed-tests.sh LOG [LINES]}
keep=${2:-80}
[ -r "$log" ] || { echo "failed-tests.sh: cannot read $log" >&2; exit 2; }
awk -v keep="$keep" '
/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
# A result line is not output; indented lines after it (older toolchains print the test
# output there) belong to the test it names. Package summaries (PASS, FAIL, ok) end all.
/^[ \t]*--- (FAIL|PASS|SKIP): / {
	cur = $3
	if ($2 == "FAIL:" && !(cur in failed)) { failed[cur] = 1; order[++n] = cur }
	next
}
/^(PASS|FAIL|ok )/ { cur = ""; next }
{
	if (cur == "") next
	c = count[cur]++
	buf[cur, c % keep] = $0
}
/^panic: / { panicked = 1; tailstart = NR }
panicked { ptail[NR - tailstart] = $0; plen = NR - tailstart + 1 }
END {
	for (i = 1; i <= n; i++) {
		t = order[i]
		total = count[t]
		printf "\n----- output of failed test %s (last %d of %d lines) -----\n", t, (total < keep ? total : keep), total
		start = total > keep ? total - keep : 0
		for (j = start; j < total; j++) print buf[t, j % keep]
	}
	if (panicked) {
		printf "\n----- panic (first %d lines) -----\n", (plen < 60 ? plen : 60)
		for (j = 0; j < plen && j < 60; j++) print ptail[j]
	}
}' "$log"
