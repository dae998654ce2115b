"""The module paths of splade-os 0.1 that moved into sub-packages in 0.2, kept importable for one release.

`import splade_os.search` (and every other old path below) still works: it returns the module at its new path,
with a DeprecationWarning that names it. See CHANGELOG.md.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

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
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
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
