#!/usr/bin/env bash
# Health of the cluster and, when given, of INDEX: `splade-os doctor` then `splade-os stats` (no BM25 copy, so it
# is cheap enough for a cron job). Exit code 1 when a doctor check failed.
#   usage: scripts/health.sh [INDEX [MODEL_DIR]]
set -euo pipefail
SPLADE_OS=${SPLADE_OS:-splade-os}
index=${1:-} model=${2:-}
model_args=()
[ -n "$model" ] && model_args=(--model "$model")
if [ -z "$index" ]; then
  exec $SPLADE_OS doctor "${model_args[@]}"
fi
$SPLADE_OS doctor --index "$index" "${model_args[@]}"
$SPLADE_OS stats "$index" --no-bm25 "${model_args[@]}"
