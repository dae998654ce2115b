"""Real single-node OpenSearch and Elasticsearch on 127.0.0.1, assembled from Maven Central without Docker.

`distributions` assembles an engine's zip per version, `java` finds a Java that version runs on, `spec` says what a
node is and renders its configuration, `security` sets up the secured nodes, and `run` starts, finds and stops
the processes. `from splade_os.node.run import start_node` (the 0.1 module path) still works for one release.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MODULES = ("run", "spec", "distributions", "java")


def __getattr__(name: str) -> Any:
    # 0.1 had one module `splade_os.node.run` holding all of this: its names still resolve, with a warning.
    for module in _MODULES:
        found = importlib.import_module(f"{__name__}.{module}")
        if hasattr(found, name):
            warnings.warn(f"splade_os.node.run.{name} moved to splade_os.node.run.{module}.{name}", DeprecationWarning,
                          stacklevel=2)  # fmt: skip
            return getattr(found, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
