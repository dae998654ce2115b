#!/usr/bin/env bash
# The README's main command: install splade-os, start (or find) an OpenSearch or Elasticsearch node, index the bundled demo
# corpus with the bundled SPLADE model, and run a few searches that show expansion terms and explanations.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MODEL=models/splade-tiny
INDEX=${SPLADE_OS_DEMO_INDEX:-splade-demo}

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[elasticsearch]'
if [ -z "${OPENSEARCH_URL:-}${ELASTICSEARCH_URL:-}" ]; then
  "$PYTHON" -m splade_os node start   # SPLADE_OS_ENGINE=elasticsearch starts Elasticsearch instead
  if [ "${SPLADE_OS_ENGINE:-}" = elasticsearch ]; then
    export SPLADE_OS_ANALYZER=${SPLADE_OS_ANALYZER:-standard}  # the local test distribution has no `english`
  fi
fi
"$PYTHON" -m splade_os index examples/demo-corpus.jsonl --index "$INDEX" --model "$MODEL" --recreate

for query in "what causes a heart attack" "how do planets form around other stars" "renewable electricity" \
             "U.S. founding documents"; do
  echo
  echo "=== splade-os search \"$query\""
  "$PYTHON" -m splade_os search "$query" --index "$INDEX" --model "$MODEL" --k 3
done

for mode in bm25 hybrid; do
  echo
  echo "=== splade-os search \"renewable electricity\" --mode $mode"
  "$PYTHON" -m splade_os search "renewable electricity" --index "$INDEX" --model "$MODEL" --k 3 --mode "$mode"
done
echo
echo "=== splade-os search \"what causes a heart attack\" --explain (each matching token's share of the score)"
"$PYTHON" -m splade_os search "what causes a heart attack" --index "$INDEX" --model "$MODEL" --k 1 --explain
