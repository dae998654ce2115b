#!/usr/bin/env bash
# Start, stop or inspect the local OpenSearch node: scripts/opensearch-node.sh start|stop|status [options]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python -m splade_os node "$@"
