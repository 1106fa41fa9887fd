#!/usr/bin/env bash
# Computes the vendorHash that flake.nix's buildGoModule expects, without Nix
# builds: buildGoModule's goModules derivation runs `go mod vendor` on the
# flake source and hashes the resulting vendor/ directory as a NAR (sha256,
# recursive); this script does the same on a copy of the tracked files.
#
#   .ci/vendor-hash.sh           print the hash (sha256-<base64>)
#   .ci/vendor-hash.sh --check   exit 1 if flake.nix holds another hash
#   .ci/vendor-hash.sh --update  rewrite the vendorHash line in flake.nix
#
# The hash changes whenever go.mod or go.sum change, and also when the code
# starts (or stops) importing a package of an already required module, since
# vendor/ only holds imported packages. Re-run --update after either.
#
# Needs go and nix-hash (apt-get install nix-bin). Uses the local module cache
# (then GOPROXY as configured) and never touches the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=print
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --update) mode=update ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "vendor-hash: unknown argument $1 (want --check or --update)" >&2; exit 2 ;;
esac

for tool in go nix-hash git; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      nix-hash) echo "vendor-hash: nix-hash not found; install it with: apt-get install nix-bin" >&2 ;;
      *) echo "vendor-hash: $tool not found" >&2 ;;
    esac
    exit 2
  fi
done

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# Tracked files as they are in the working tree: what `nix build .` copies
# (a flake in a git repository sees tracked files only, with local edits).
git ls-files -z --cached | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar -C "$root" --null -T - -cf - | tar -C "$work" -xf -

if [ -d "$work/vendor" ]; then
  echo "vendor-hash: the repository tracks a vendor/ directory; buildGoModule needs vendorHash = null then" >&2
  exit 1
fi

# The same environment buildGoModule's goModules derivation uses.
if ! (
  cd "$work"
  export GO111MODULE=on GOTOOLCHAIN=local GOWORK=off GOFLAGS=
  go mod vendor
) >&2; then
  echo "vendor-hash: go mod vendor failed on the tracked files, so nix build would fail too;" >&2
  echo "vendor-hash: often a tracked file imports a package that is not committed yet" >&2
  exit 1
fi

if [ ! -d "$work/vendor" ] || [ -z "$(ls -A "$work/vendor")" ]; then
  echo "vendor-hash: go mod vendor produced nothing; set vendorHash = null in flake.nix" >&2
  exit 1
fi

# NAR hash of the directory, as outputHashMode = "recursive" computes it.
# Debian's nix-hash (2.8) has no --sri, so convert base16 to SRI base64 here.
hex=$(nix-hash --type sha256 "$work/vendor")
hash="sha256-$(printf '%s' "$hex" | tr 'a-f' 'A-F' | basenc --base16 -d | base64 -w0)"

current=$(sed -n 's/^ *vendorHash = "\(sha256-[^"]*\)";.*/\1/p' flake.nix | head -n1)

case "$mode" in
  print)
    echo "$hash"
    ;;
  check)
    if [ "$current" != "$hash" ]; then
      echo "vendor-hash: flake.nix has vendorHash ${current:-<none>} but go.mod/go.sum and the imports give $hash" >&2
      echo "vendor-hash: run .ci/vendor-hash.sh --update and commit flake.nix" >&2
      exit 1
    fi
    echo "vendor-hash: flake.nix vendorHash is current ($hash)"
    ;;
  update)
    if [ -z "$current" ]; then
      echo "vendor-hash: no 'vendorHash = \"sha256-...\";' line in flake.nix to update" >&2
      exit 1
    fi
    if [ "$current" = "$hash" ]; then
      echo "vendor-hash: flake.nix already has $hash"
    else
      sed -i "s|^\( *vendorHash = \"\)sha256-[^\"]*\(\";.*\)|\1$hash\2|" flake.nix
      echo "vendor-hash: flake.nix vendorHash $current -> $hash"
    fi
    ;;
esac
