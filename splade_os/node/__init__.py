"""Real single-node OpenSearch and Elasticsearch on 127.0.0.1, assembled from Maven Central without Docker.

`distributions` assembles an engine's zip per version, `java` finds a Java that version runs on, `spec` says what a
node is and renders its configuration, `security` sets up the secured nodes, `probe` asks what answers on a port, and
`run` starts, finds and stops the processes. Import from those modules; the names of 0.1's one-module
`splade_os.node` (`from splade_os.node import start_node`) still resolve, with a warning (see `splade_os._moved`).
"""

from __future__ import annotations

from typing import Any

from splade_os import _moved


def __getattr__(name: str) -> Any:
    return _moved.moved_name(__name__, name)
