"""The package's import layering, read from the source with `ast` (nothing of vseam_pl is imported).

- `vseam_pl.interventions` (the hooks, replay and batched engine everything else builds on) imports nothing of the
  package outside itself except the leaf modules in `LEAVES`, at module level or inside functions, so it can be
  used, tested and reasoned about without the data, scoring or discovery layers;
- no import cycle exists among vseam_pl's modules (module-level imports; `if TYPE_CHECKING:` blocks are not run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vseam_pl"
LOW = f"{PACKAGE}.interventions"
#: What interventions/ may import from the rest of the package: the model wrapper (`VLM`, `UnsupportedModelError`)
#: and atomic file writes. Both are leaves: they import nothing of the package themselves.
LEAVES: frozenset[str] = frozenset({f"{PACKAGE}.vlm", f"{PACKAGE}.io"})


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported (`module_level`), or anywhere; never `TYPE_CHECKING`
    blocks. Function bodies are skipped for module level (class bodies run at import time and are kept)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(ast.Module(body=[other], type_ignores=[]))
                continue
            if module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package modules an import statement executes: the named module, the named submodules of a
    `from X import a`, and the packages above them that are not above `module` (those already run)."""
    is_pkg = MODULES[module].name == "__init__.py"
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        names = [stem] + [f"{stem}.{a.name}" for a in node.names if f"{stem}.{a.name}" in MODULES]
    out: set[str] = set()
    own_parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in MODULES and prefix not in own_parents and prefix != module:
                out.add(prefix)
    return out


def _graph(module_level: bool) -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = set().union(*(_targets(module, n) for n in _imports(tree, module_level)))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_graph_sees_relative_and_absolute_imports():
    """The checks below would pass vacuously on an empty graph: known edges must be found."""
    graph = _graph(module_level=True)
    assert f"{PACKAGE}.interventions.replay" in graph[f"{PACKAGE}.interventions.batched"]
    assert f"{PACKAGE}.interventions" in graph[f"{PACKAGE}.discovery.runner"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_interventions_import_nothing_above_them():
    graph = _graph(module_level=False)
    bad = {
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m == LOW or m.startswith(LOW + ".")
        for t in targets
        if not (t == LOW or t.startswith(LOW + ".") or t in LEAVES)
    }
    assert not bad, f"interventions/ may import only itself and {sorted(LEAVES)}: {sorted(bad)}"
    above = {f"{leaf} -> {t}" for leaf in LEAVES for t in graph[leaf]}
    assert not above, (
        f"the leaf modules interventions/ uses must import nothing of the package: {sorted(above)}"
    )


def test_no_import_cycles_at_module_level():
    cycles = _cycles(_graph(module_level=True))
    assert not cycles, "import cycles among vseam_pl modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)
