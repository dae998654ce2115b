#!/usr/bin/env bash
# Point ALIAS back at an earlier version, atomically: INDEX when given, else the newest version older than the
# current one (kept by `splade-os reindex` unless --delete-previous).
#   usage: scripts/rollback.sh ALIAS [INDEX]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 ALIAS [INDEX]" >&2
  exit 2
fi
alias_name=$1 target=${2:-}
SPLADE_OS=${SPLADE_OS:-splade-os}
if [ -z "$target" ]; then
  # `splade-os alias ALIAS` prints "ALIAS (alias) -> CURRENT" and, oldest first, "other versions: A, B".
  listing=$($SPLADE_OS alias "$alias_name")
  current=$(sed -n '1s/.* -> //p' <<<"$listing")
  for version in $(sed -n 's/^other versions: //p' <<<"$listing" | tr -d ','); do
    if (( ${version##*-v} < ${current##*-v} )); then target=$version; fi
  done
fi
if [ -z "$target" ]; then
  echo "no earlier version of $alias_name to roll back to: pass the index name" >&2
  exit 1
fi
$SPLADE_OS alias "$alias_name" "$target"
