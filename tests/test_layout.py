"""The package's layout stays as ARCHITECTURE.md describes it: no import circle, no module past the size a reader
can hold, no lower layer importing a higher one and no part importing a sibling of its own layer (imports under
`if TYPE_CHECKING:` count too), node/ importing only what it needs, and nothing inside the package importing an old
module path."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from splade_os._moved import MOVED, MOVED_NAMES

PACKAGE = Path(__file__).resolve().parents[1] / "splade_os"
MAX_LINES = 650
# A part (a folder, or a module at the top) may import itself and the layers before its own; never a sibling in its
# own layer, so that siblings stay independent of each other. cli may import anything below it.
LAYERS = [
    {"errors", "vectors", "redaction", "words", "_moved"},
    {"connection", "model"},  # settings, and the model: neither knows a cluster, a corpus or a mapping
    {"engines"},
    {"mappings", "aliases"},
    {"corpus", "df"},
    {"indexing", "retrieval"},
    {"evaluation", "doctor", "stats"},
    {"node"},
    {"integrations", "serve"},
    {"cli"},
    {"__main__"},
]
# Parts that may import no more than these (besides themselves), whatever their layer allows.
NEEDS = {"node": {"splade_os.errors", "splade_os._moved", "splade_os.engines.roles"}}


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


def _imports(module: str, path: Path, *, type_checking: bool) -> set[str]:
    """Every splade_os module `module` imports, lazy imports included, and `if TYPE_CHECKING:` blocks when asked."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and not type_checking:
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


# What runs (for circles: a TYPE_CHECKING import never executes) and what a module depends on (for the layers).
GRAPH = {name: _imports(name, path, type_checking=False) for name, path in MODULES.items()}
DEPENDS = {name: _imports(name, path, type_checking=True) for name, path in MODULES.items()}


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _layer(module: str) -> int:
    top = _part(module)
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
                circles.append(" -> ".join([*path[path.index(child) :], child]))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(GRAPH.get(child, ())))))
                path.append(child)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in GRAPH if m != "splade_os" and _layer(m) < 0]
    assert not unplaced, f"add these to LAYERS (and ARCHITECTURE.md): {unplaced}"


def _arrows(keep: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """(module, target) for each import inside the package, the package root's own left out, that `keep` keeps."""
    return [(m, t) for m, targets in DEPENDS.items() for t in sorted(targets) if m != "splade_os" and keep(m, t)]


def test_no_import_points_up_a_layer() -> None:
    upward = _arrows(lambda m, t: _layer(t) > _layer(m))
    assert not upward, "\n".join(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})" for m, t in upward)


def test_no_part_imports_a_sibling_of_its_layer() -> None:
    sideways = _arrows(lambda m, t: _part(t) != _part(m) and _layer(t) == _layer(m))
    lines = [f"{m} imports {t}, a sibling in its layer: move what both need a layer up" for m, t in sideways]
    assert not sideways, "\n".join(lines)


def test_node_imports_only_what_it_needs() -> None:
    extra = _arrows(lambda m, t: _part(m) in NEEDS and _part(t) != _part(m) and t not in NEEDS[_part(m)])
    assert not extra, "\n".join(f"{m} imports {t}" for m, t in extra)


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


def test_architecture_md_draws_the_same_layers() -> None:
    import re

    drawn: dict[int, set[str]] = {}
    for line in (PACKAGE.parent / "ARCHITECTURE.md").read_text().splitlines():
        row = re.match(r"\| (\d+) \| ([^|]+) \|", line)
        if row:
            parts = {name.rstrip("/").removesuffix(".py") for name in re.findall(r"`([^`]+)`", row[2])}
            drawn.setdefault(int(row[1]), set()).update(parts)
    assert drawn == dict(enumerate(LAYERS))
