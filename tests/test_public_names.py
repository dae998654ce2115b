"""The names `splade_os` exports: the set users import, each resolving at run time to what type checkers are told it
is, and the README's Python examples type-checking against them (py.typed promises users that)."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import splade_os

REPO = Path(__file__).resolve().parents[1]
EXPORTED = {
    # the library's entry points, imported on first use
    "SpladeEncoder",
    "EncoderSettings",
    "Searcher",
    "AsyncSearcher",
    "HybridParams",
    "SearchOptions",
    "SearchResult",
    "Pruning",
    "TwoPhaseSettings",
    "ConnectionSettings",
    "connect",
    "index_corpus",
    "reencode_index",
    "BulkOptions",
    "LoadOptions",
    # imported with the package
    "ConfigError",
    "EncoderClosedError",
    "EncoderMismatchError",
    "EngineError",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "NodeError",
    "SpladeOSError",
    "SparseVector",
    "escape_token",
    "unescape_token",
    "__version__",
}


def _type_checking_imports() -> dict[str, str]:
    """name -> module of each import under `if TYPE_CHECKING:` in splade_os/__init__.py."""
    tree = ast.parse((REPO / "splade_os" / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module
                found.update({alias.name: statement.module for alias in statement.names})
    return found


def test_the_exported_names_are_the_documented_set() -> None:
    assert set(splade_os.__all__) == EXPORTED and len(splade_os.__all__) == len(EXPORTED)
    for name in EXPORTED:
        assert getattr(splade_os, name) is not None, name


def test_type_checkers_see_each_lazy_name_where_it_is_loaded_from() -> None:
    declared = _type_checking_imports()
    assert declared == splade_os._LAZY
    for name, module in declared.items():
        assert getattr(splade_os, name) is getattr(importlib.import_module(module), name), name


def test_importing_the_package_loads_no_model_runtime_and_no_client() -> None:
    probe = "import sys, splade_os; print(sorted(m for m in ('onnxruntime', 'opensearchpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_the_readme_examples_type_check(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no Python example"
    source = tmp_path / "readme_examples.py"
    source.write_text("\n".join(blocks), encoding="utf-8")
    # The package from this checkout, with the project's mypy settings (pyproject.toml) and its cache.
    env = {**os.environ, "MYPYPATH": str(REPO)}
    command = [sys.executable, "-m", "mypy", "--no-error-summary", str(source)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
