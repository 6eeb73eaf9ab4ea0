"""The package, the benches and the scripts import what they need as packages (issue 26.5): no file edits
`sys.path` to find code, and nothing outside `tests/` imports from it (shared test-free code lives in `vseam_pl`,
e.g. the tiny models in `vseam_pl.tiny`). Read as source (AST), nothing is run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("bench", "scripts", "vseam_pl", "callbacks", "train.py", "evaluate.py")
MUTATORS = {
    "insert",
    "append",
    "extend",
    "remove",
    "pop",
    "clear",
    "reverse",
    "sort",
    "__setitem__",
    "__iadd__",
}


def sources() -> list[Path]:
    files: list[Path] = []
    for name in CHECKED:
        path = REPO / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _is_tests(module: str | None) -> bool:
    return module is not None and (module == "tests" or module.startswith("tests."))


def violations(source: str, filename: str) -> list[str]:
    """`file:line what` for every `sys.path` mutation and every import from `tests` in `source`."""
    tree = ast.parse(source, filename)
    sys_names = {"sys"} | {
        a.asname or a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for a in n.names
        if a.name == "sys"
    }

    def is_sys_path(node: ast.AST) -> bool:
        while isinstance(node, ast.Subscript):  # sys.path[0] = ..., sys.path[:0] = ...
            node = node.value
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id in sys_names
        )

    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import) and any(_is_tests(a.name) for a in node.names):
            what = "imports from tests"
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if _is_tests(node.module):
                what = "imports from tests"
            elif node.module == "sys" and any(a.name == "path" for a in node.names):
                what = "binds sys.path to a name"
            elif node.module == "site" and any(a.name == "addsitedir" for a in node.names):
                what = "adds a site dir"
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in MUTATORS and is_sys_path(func.value):
                what = f"sys.path.{func.attr}(...)"
            elif isinstance(func, ast.Attribute) and func.attr == "addsitedir":
                what = "adds a site dir"
            elif (
                (isinstance(func, ast.Name) and func.id in ("__import__", "import_module"))
                or (isinstance(func, ast.Attribute) and func.attr == "import_module")
            ) and any(isinstance(a, ast.Constant) and _is_tests(str(a.value)) for a in node.args):
                what = "imports from tests"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            if any(is_sys_path(t) for t in targets):
                what = "assigns to sys.path"
        if what:
            found.append(f"{filename}:{node.lineno} {what}")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "import sys\nsys.path.insert(0, 'x')",
        "import sys\nsys.path[:0] = ['x']",
        "import sys as s\ns.path.append('x')",
        "import sys\nsys.path += ['x']",
        "import sys\nsys.path = ['x']",
        "from sys import path",
        "import site\nsite.addsitedir('x')",
        "from tests.helpers import x",
        "import tests.conftest",
        "import importlib\nimportlib.import_module('tests.helpers')",
    ],
)
def test_the_check_sees_each_kind(snippet):
    assert violations(snippet, "snippet.py"), snippet


def test_reading_sys_path_and_relative_imports_are_fine():
    clean = "import sys\nprint(sys.path[0], len(sys.path))\nfrom .tests import x\nfrom vseam_pl import tests"
    assert violations(clean, "clean.py") == []


def test_no_code_edits_sys_path_or_imports_from_tests():
    files = sources()
    assert {p.relative_to(REPO).parts[0] for p in files} == set(CHECKED)  # every place was read
    found = [v for p in files for v in violations(p.read_text(), str(p.relative_to(REPO)))]
    assert found == [], "\n".join(found)
