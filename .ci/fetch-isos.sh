#!/usr/bin/env bash
# Downloads ISOs named at workflow dispatch and verifies each against the
# sha256 given with it, then writes a bootlab candidate list (docs/bisect.md,
# "List file") naming them in the order given.
#
#   .ci/fetch-isos.sh [--lazy] [--profile NAME] [--entry LABEL] OUT_DIR 'URL#sha256=HEX [URL#sha256=HEX ...]'
#
# --lazy downloads nothing: each line is `NN-<name> url=URL sha256=HEX`, and bootlab
# bisect downloads (and verifies) each ISO only when it probes it, into its image
# cache. --profile and --entry are added to every line (profile=, entry=): how the
# ISOs log in (nixos, fixture, mini) and which boot menu entry boots.
#
# Entries are separated by whitespace; the fragment carries the digest, since
# a URL fetched here never needs a fragment of its own. Each ISO lands in
# OUT_DIR as NN-<file name>, and OUT_DIR/candidates.txt gets one line per ISO,
# `NN-<name> iso=<path>`, oldest (first given) first. A missing digest, a
# failed download or a digest mismatch stops with exit 1 and deletes the
# file, so nothing unverified is ever booted. Usage errors exit 2.
set -euo pipefail

usage() {
  echo "usage: $0 [--lazy] [--profile NAME] [--entry LABEL] OUT_DIR 'URL#sha256=HEX [URL#sha256=HEX ...]'" >&2
  exit 2
}
lazy=0 profile="" entry=""
while [ $# -gt 0 ]; do
  case "$1" in
    --lazy) lazy=1; shift ;;
    --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
    --entry) [ $# -ge 2 ] || usage; entry=$2; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
if [ $# -ne 2 ] || [ -z "${2//[[:space:]]/}" ]; then
  usage
fi
if [ -n "$profile" ] && ! [[ $profile =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
  echo "fetch-isos: --profile '$profile' is not a profile name" >&2
  exit 2
fi
out=$1
read -r -a entries <<<"$2"

# quote VALUE as a list-file value: a Go string in double quotes.
quote() {
  local v=${1//\\/\\\\}
  v=${v//\"/\\\"}
  printf '"%s"' "$v"
}
# extras: the profile= and entry= fields every line carries.
extras=""
[ -n "$profile" ] && extras+=" profile=$profile"
[ -n "$entry" ] && extras+=" entry=$(quote "$entry")"

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
if [ "$lazy" = 1 ]; then
  for e in "${entries[@]}"; do
    url=${e%%#*}
    sum=${e#*#sha256=}
    n=$((n + 1))
    base=$(basename "${url%%\?*}")
    # A local file (make ci-local's candidates, a runner's own disk) needs no
    # download: it is checked now and listed by path.
    if [[ $url =~ ^file:// ]]; then
      path=${url#file://}
      got=$(sha256sum "$path" 2>/dev/null | cut -d' ' -f1) || true
      if [ "$got" != "${sum,,}" ]; then
        rm -f "$list"
        echo "fetch-isos: $url has sha256 '${got:-unreadable}', the dispatch said $sum; refusing to boot it" >&2
        exit 1
      fi
      printf '%02d-%s iso=%s%s\n' "$n" "${base%.iso}" "$(quote "$path")" "$extras" >>"$list"
      continue
    fi
    if ! [[ $url =~ ^https?:// ]]; then
      rm -f "$list"
      echo "fetch-isos: --lazy needs http(s) or file:// URLs (bootlab downloads the first): '$url'" >&2
      exit 2
    fi
    printf '%02d-%s url=%s sha256=%s%s\n' "$n" "${base%.iso}" "$url" "${sum,,}" "$extras" >>"$list"
  done
  echo "fetch-isos: $n ISO(s) listed, none downloaded (bootlab bisect downloads each when it probes it); list: $list"
  exit 0
fi
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
  printf '%s iso=%s%s\n' "$name" "$(cd "$out" && pwd)/$name.iso" "$extras" >>"$list"
done
echo "fetch-isos: $n ISO(s) verified; list: $list"
