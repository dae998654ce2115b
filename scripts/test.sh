#!/usr/bin/env bash
# The test command of the README: installs splade-os with its test and export extras, starts (or finds) an
# OpenSearch or Elasticsearch node, and runs the whole test suite against it. Extra arguments go to pytest.
# The secured tests (tests/test_secured_nodes.py) start their own secured nodes, on ports 9210 and 9212, when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[dev,export]'
# The playground test (tests/test_serve_playground_engine.py) drives a real headless Chromium through chromedriver.
if ! command -v chromedriver > /dev/null || ! { command -v chromium > /dev/null || command -v chromium-browser > /dev/null; }; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver > /dev/null
fi
if [ -z "${OPENSEARCH_URL:-}${ELASTICSEARCH_URL:-}" ]; then
  "$PYTHON" -m splade_os node start
fi
"$PYTHON" -m pytest "$@"
