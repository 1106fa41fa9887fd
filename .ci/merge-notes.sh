#!/usr/bin/env bash
# Merges the per-shard work-note artifacts of a nightly run into one notes
# directory that `bootlab report` reads, and carries the ledger across nights.
#
#   .ci/merge-notes.sh SHARDS_DIR NOTES_DIR [HISTORY_LEDGER]
#
# SHARDS_DIR holds one directory per downloaded artifact (download-artifact
# without merge-multiple), each laid out like a notes directory: run
# directories plus ledger.jsonl. Merging by hand instead of merge-multiple
# because every shard has its own ledger.jsonl and a plain merge would keep
# only one of them.
#
# Run directories move to NOTES_DIR (a name taken already gets the shard's
# name appended). NOTES_DIR/ledger.jsonl becomes HISTORY_LEDGER's lines, then
# the lines already in NOTES_DIR/ledger.jsonl, then every shard's new lines,
# each line once, in that order; HISTORY_LEDGER is rewritten with the result
# so the next night's trend includes tonight.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 SHARDS_DIR NOTES_DIR [HISTORY_LEDGER]" >&2
  exit 2
fi
shards=$1 notes=$2 history=${3:-}

if [ ! -d "$shards" ]; then
  echo "ci-merge-notes: $shards does not exist (no shard uploaded anything?)" >&2
  exit 1
fi
mkdir -p "$notes"

ledgers=()
[ -n "$history" ] && [ -f "$history" ] && ledgers+=("$history")
[ -f "$notes/ledger.jsonl" ] && ledgers+=("$notes/ledger.jsonl")

moved=0
for shard in "$shards"/*/; do
  [ -d "$shard" ] || continue
  name=$(basename "$shard")
  for entry in "$shard"* "$shard".[!.]*; do
    [ -e "$entry" ] || continue
    base=$(basename "$entry")
    if [ "$base" = ledger.jsonl ]; then
      ledgers+=("$entry")
      continue
    fi
    dest="$notes/$base"
    if [ -e "$dest" ]; then
      dest="$notes/$base-$name"
    fi
    if [ -e "$dest" ]; then
      echo "ci-merge-notes: both $notes/$base and $dest exist; refusing to overwrite" >&2
      exit 1
    fi
    mv "$entry" "$dest"
    moved=$((moved + 1))
  done
done

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
if [ ${#ledgers[@]} -gt 0 ]; then
  # First occurrence wins, so history keeps its order and tonight follows.
  awk 'NF && !seen[$0]++' "${ledgers[@]}" >"$tmp"
fi
cp "$tmp" "$notes/ledger.jsonl"
if [ -n "$history" ]; then
  mkdir -p "$(dirname "$history")"
  cp "$tmp" "$history"
fi

echo "ci-merge-notes: $moved entries into $notes; ledger has $(wc -l <"$tmp") line(s)"
