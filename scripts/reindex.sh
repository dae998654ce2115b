#!/usr/bin/env bash
# Zero-downtime re-index of ALIAS: build ALIAS-v<next> from CORPUS (or from the current version when CORPUS is
# omitted), verify it, move the alias, then show health and stats of the result. The old version is kept for a
# rollback (scripts/rollback.sh) unless DELETE_PREVIOUS=1.
#   usage: scripts/reindex.sh ALIAS MODEL_DIR [CORPUS]
# Connection: OPENSEARCH_URL, OPENSEARCH_USERNAME/OPENSEARCH_PASSWORD, OPENSEARCH_CA_CERTS ... or SPLADE_OS_CONFIG.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 ALIAS MODEL_DIR [CORPUS]" >&2
  exit 2
fi
alias_name=$1 model=$2 corpus=${3:-}
SPLADE_OS=${SPLADE_OS:-splade-os}
source_args=(--from-index)
[ -n "$corpus" ] && source_args=("$corpus")
delete_args=()
[ "${DELETE_PREVIOUS:-0}" = 1 ] && delete_args=(--delete-previous)

$SPLADE_OS doctor --model "$model"
$SPLADE_OS reindex "$alias_name" "${source_args[@]}" --model "$model" "${delete_args[@]}"
$SPLADE_OS stats "$alias_name" --model "$model" --no-bm25
