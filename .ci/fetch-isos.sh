#!/usr/bin/env bash
# Downloads ISOs named at workflow dispatch and verifies each against the
# sha256 given with it, then writes a bootlab candidate list (docs/bisect.md,
# "List file") naming them in the order given.
#
#   .ci/fetch-isos.sh OUT_DIR 'URL#sha256=HEX [URL#sha256=HEX ...]'
#
# Entries are separated by whitespace; the fragment carries the digest, since
# a URL fetched here never needs a fragment of its own. Each ISO lands in
# OUT_DIR as NN-<file name>, and OUT_DIR/candidates.txt gets one line per ISO,
# `NN-<name> iso=<path>`, oldest (first given) first. A missing digest, a
# failed download or a digest mismatch stops with exit 1 and deletes the
# file, so nothing unverified is ever booted. Usage errors exit 2.
set -euo pipefail

if [ $# -ne 2 ] || [ -z "${2//[[:space:]]/}" ]; then
  echo "usage: $0 OUT_DIR 'URL#sha256=HEX [URL#sha256=HEX ...]'" >&2
  exit 2
fi
out=$1
read -r -a entries <<<"$2"

# Check every entry before downloading anything.
for e in "${entries[@]}"; do
  url=${e%%#*}
  sum=${e#*#sha256=}
  if [ "$url" = "$e" ] || [ "$sum" = "$e" ] || ! [[ $sum =~ ^[0-9a-fA-F]{64}$ ]]; then
    echo "fetch-isos: '$e' is not URL#sha256=<64 hex digits>" >&2
    exit 2
  fi
done

mkdir -p "$out"
list="$out/candidates.txt"
: >"$list"
n=0
for e in "${entries[@]}"; do
  url=${e%%#*}
  sum=${e#*#sha256=}
  n=$((n + 1))
  base=$(basename "${url%%\?*}")
  name=$(printf '%02d-%s' "$n" "${base%.iso}")
  path="$out/$name.iso"
  echo "fetch-isos: $url -> $path"
  if ! curl -fsSL --retry 3 -o "$path" "$url"; then
    rm -f "$path"
    echo "fetch-isos: downloading $url failed" >&2
    exit 1
  fi
  got=$(sha256sum "$path" | cut -d' ' -f1)
  if [ "$got" != "${sum,,}" ]; then
    rm -f "$path"
    echo "fetch-isos: $url has sha256 $got, the dispatch said $sum; refusing to boot it" >&2
    exit 1
  fi
  printf '%s iso=%s\n' "$name" "$(cd "$out" && pwd)/$name.iso" >>"$list"
done
echo "fetch-isos: $n ISO(s) verified; list: $list"
