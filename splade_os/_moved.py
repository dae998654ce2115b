"""Module paths and names that moved, kept importable until REMOVE_AFTER with a DeprecationWarning naming the new
place (no release was ever tagged or published with the old paths, but clones used them).

`import splade_os.search` (and every other old path in MOVED) returns the module at its new path. A name that left a
module that still stands (`splade_os.connection.connect`, `from splade_os.node import start_node`) is answered by that
module's `__getattr__` through `moved_name`. Delete this module and the calls to it after REMOVE_AFTER. See
CHANGELOG.md.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

REMOVE_AFTER = "2027-03-31"
_GOES = f"the old path is removed after {REMOVE_AFTER}"

MOVED = {
    "splade_os.encoder": "splade_os.model.encoder",
    "splade_os.export": "splade_os.model.export",
    "splade_os.torch_encoder": "splade_os.model.torch_runner",
    "splade_os.pooling": "splade_os.model.pooling",
    "splade_os.encode_file": "splade_os.indexing.encode_file",
    "splade_os.model.encode_file": "splade_os.indexing.encode_file",
    "splade_os.model.precomputed": "splade_os.indexing.precomputed",
    "splade_os.retrieval.df": "splade_os.df",
    "splade_os.security_roles": "splade_os.engines.roles",
    "splade_os.permissions": "splade_os.engines.refusals",
    "splade_os.reindex": "splade_os.indexing.reindex",
    "splade_os.query": "splade_os.retrieval.query",
    "splade_os.search": "splade_os.retrieval.search",
    "splade_os.fusion": "splade_os.retrieval.fusion",
    "splade_os.evaluate": "splade_os.evaluation.evaluate",
    "splade_os.tuning": "splade_os.evaluation.tuning",
    "splade_os.node_dist": "splade_os.node.distributions",
    "splade_os.node_java": "splade_os.node.java",
    "splade_os.node_security": "splade_os.node.security",
}

# 0.1's one-module `splade_os.node`: each public name that still exists, and the module that holds it now.
_NODE_NAMES = {
    "distributions": "DEFAULT_ENGINE DEFAULT_VERSION DESCRIPTOR_KEYS ELASTICSEARCH MARKER MODULES OPENSEARCH Module "
    "assemble_modules classname coordinates descriptor dist_dir ensure_distribution fetch_artifacts pom",
    "spec": "DEFAULT_PORT ENV_ENGINE ENV_PORT ENV_VERSION NodeInfo NodeSpec default_home render_config "
    "render_jvm_options resolve run_dir",
    "run": "node_status read_pid start_node stop_node target_node",
    "probe": "node_version",
}
MOVED_NAMES: dict[str, dict[str, str]] = {
    "splade_os.connection": {"connect": "splade_os.engines.clients", "describe_error": "splade_os.engines.errors"},
    "splade_os.node": {
        name: f"splade_os.node.{module}" for module, names in _NODE_NAMES.items() for name in names.split()
    },
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new path (the same module object, not a copy)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; {_GOES}", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[new] = module.__spec__  # the import system sets the old path's spec on it next
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module at the new path is already executed: give it its own spec back (reload, pickle and
        importlib.resources read it)."""
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())  # before any finder that could still see an old file


def moved_name(module: str, name: str) -> Any:
    """`module.name` from where it lives now, with a warning; AttributeError, importing nothing, for any other name."""
    new = MOVED_NAMES.get(module, {}).get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    # stacklevel 3: the frame that asked for the name, past the module's __getattr__ and this function.
    warnings.warn(f"{module}.{name} moved to {new}.{name}; {_GOES}", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(new), name)
