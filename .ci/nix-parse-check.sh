#!/usr/bin/env bash
# Syntax-checks every tracked *.nix file with `nix-instantiate --parse`.
# This machine (and CI) has no Nix binary cache, so nothing can be built or
# evaluated against nixpkgs; parsing is the check that always runs. Files
# that are new but not yet tracked are included too (git ls-files --others),
# so a mistake is caught before the commit, not after.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix-instantiate >/dev/null 2>&1; then
  echo "nix-parse-check: nix-instantiate not found; install it with: apt-get install nix-bin" >&2
  exit 2
fi

mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard -- '*.nix')

# A repository whose flake.nix went missing must not pass by having nothing
# to check.
if [ "${#files[@]}" -eq 0 ]; then
  echo "nix-parse-check: no *.nix files found (flake.nix is expected at the repository root)" >&2
  exit 1
fi

# nix-instantiate wants a state directory even for --parse; keep it private
# so the check works unprivileged and leaves nothing behind.
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
export NIX_STATE_DIR="$state/state" NIX_LOG_DIR="$state/log" NIX_CONF_DIR="$state/conf"
mkdir -p "$NIX_CONF_DIR"

failed=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue # deleted in the working tree but still in the index
  if ! out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
    echo "nix-parse-check: FAIL $f" >&2
    while IFS= read -r line; do printf '  %s\n' "$line"; done <<<"$out" >&2
    failed=$((failed + 1))
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "nix-parse-check: $failed of ${#files[@]} file(s) failed to parse" >&2
  exit 1
fi
echo "nix-parse-check: ${#files[@]} file(s) parse: ${files[*]}"
