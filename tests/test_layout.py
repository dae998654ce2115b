"""The package's layout stays as ARCHITECTURE.md describes it: no import circle, no module past the size a reader
can hold, no lower layer importing a higher one, and nothing inside the package importing a 0.1 module path."""

from __future__ import annotations

import ast
from pathlib import Path

from splade_os._moved import MOVED, MOVED_NAMES

PACKAGE = Path(__file__).resolve().parents[1] / "splade_os"
MAX_LINES = 650
# Each layer may import only the layers before it (and itself). cli may import anything.
LAYERS = [
    {"errors", "vectors", "redaction", "_moved"},
    {"connection"},
    {"engines", "mappings", "aliases"},
    {"corpus", "df"},
    {"model"},
    {"retrieval", "indexing"},
    {"evaluation", "doctor", "stats"},
    {"node"},
    {"integrations", "serve"},
    {"cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module an import of `name` executes (a package's __init__ is a module of its own here)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """Every splade_os module `module` imports, lazy imports included, `if TYPE_CHECKING:` blocks excluded."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.update(t for a in node.names if (t := _target(a.name)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = _target(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else _target(base)
                if target:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(module)
    return {m for m in found if m.startswith("splade_os")}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    return -1  # the package root: its __init__ imports the base layer only


def test_no_import_circle() -> None:
    # Iterative DFS over the whole graph; a back edge is a circle.
    state: dict[str, int] = {}
    circles = []
    for root in sorted(GRAPH):
        if root in state:
            continue
        stack = [(root, iter(sorted(GRAPH[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                circles.append(" -> ".join([*path[path.index(child):], child]))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(GRAPH.get(child, ())))))
                path.append(child)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in GRAPH if m != "splade_os" and _layer(m) < 0]
    assert not unplaced, f"add these to LAYERS (and ARCHITECTURE.md): {unplaced}"


def test_no_import_points_up_a_layer() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if module != "splade_os" and _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_modules_stay_readable() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"


def test_the_package_uses_no_moved_path() -> None:
    old = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets if t in MOVED]
    # An old path is not a module any more, so `_target` maps it to the package root; read the source instead.
    for module, path in MODULES.items():
        text = path.read_text()
        old += [f"{module} names {name}" for name in MOVED if f"{name} import" in text or f"import {name}\n" in text]
    assert not old, "\n".join(old)


def test_old_paths_still_import_with_a_warning() -> None:
    import importlib
    import sys
    import warnings

    for old, new in MOVED.items():
        sys.modules.pop(old, None)  # an earlier import in this process would answer without asking again
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught), old


def test_moved_names_resolve_with_a_warning_and_a_miss_imports_nothing() -> None:
    import importlib
    import subprocess
    import sys
    import warnings

    for module, names in MOVED_NAMES.items():
        for name, new in names.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                found = getattr(importlib.import_module(module), name)
            assert found is getattr(importlib.import_module(new), name), f"{module}.{name}"
            assert any(f"{new}.{name}" in str(w.message) for w in caught if w.category is DeprecationWarning)
    # A name that never existed is an AttributeError at once: no submodule is imported to look for it.
    probe = (
        "import sys, splade_os.node as n; assert not hasattr(n, 'x'); print([m for m in sys.modules if '.node.' in m])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
