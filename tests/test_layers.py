"""The package's floors: a lower layer never imports a higher one, and no two modules import each other.

Read from the source with ``ast`` (imports at the top and inside functions alike), as
``test_registry.py`` checks the model family modules; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kerasimg"


def module_files(package: str) -> dict[str, Path]:
    """``kerasimg.<package>``'s modules by dotted name (a package's ``__init__`` under the package's name)."""
    root = PACKAGE.parent
    files = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_modules(path: Path) -> set[str]:
    """Every ``kerasimg`` module a file imports, at the top or inside functions, as dotted names.

    ``from kerasimg.training import reports`` imports the module ``reports``; ``from
    kerasimg.training import fit`` the package's name ``fit``, so the package.
    """
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / (name.replace(".", "/") + ".py")).exists()
                modules.add(name if is_module else node.module)
    return {name for name in modules if name.split(".")[0] == "kerasimg"}


def cycles(package: str) -> list[list[str]]:
    """The groups of ``package``'s modules that import one another, directly or around a circle (Tarjan)."""
    files = module_files(package)
    graph = {name: sorted(imported_modules(path) & files.keys() - {name}) for name, path in files.items()}
    index, low, stack, found = {}, {}, [], []

    def visit(name):
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in graph[name]:
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while not group or group[-1] != name:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return found


def test_training_imports_no_higher_layer():
    """Evaluation after training is diagnosis's, registered as an after-fit step (training/after_fit.py)."""
    higher = ("kerasimg.diagnose", "kerasimg.serving", "kerasimg.experiments")
    files = module_files("kerasimg.training")
    assert "kerasimg.training.driver" in files
    reaching_up = {
        name: sorted(m for m in imported_modules(path) if m.startswith(higher))
        for name, path in files.items()
    }
    assert {name: found for name, found in reaching_up.items() if found} == {}


@pytest.mark.parametrize("package", ["kerasimg.data", "kerasimg.tuning", "kerasimg.training"])
def test_no_import_circles(package):
    assert cycles(package) == []


def test_cycles_finds_a_circle(tmp_path, monkeypatch):
    """The checker itself: two modules importing each other are one group."""
    (tmp_path / "kerasimg" / "loop").mkdir(parents=True)
    (tmp_path / "kerasimg" / "loop" / "a.py").write_text("from kerasimg.loop.b import x\n")
    (tmp_path / "kerasimg" / "loop" / "b.py").write_text("def f():\n    from kerasimg.loop import a\n")
    (tmp_path / "kerasimg" / "loop" / "__init__.py").write_text("from kerasimg.loop.c import y\n")
    (tmp_path / "kerasimg" / "loop" / "c.py").write_text("import kerasimg.loop.a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "kerasimg")
    assert cycles("kerasimg.loop") == [["kerasimg.loop.a", "kerasimg.loop.b"]]


def branch_tests(tree: ast.AST) -> list[ast.expr]:
    """Every expression a branch depends on: ``if``/``elif``, ``x if c else y``, ``while``, ``assert``,
    comprehension filters, and the operands of an ``and``/``or`` outside them."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
            found.append(node.test)
        elif isinstance(node, ast.comprehension):
            found.extend(node.ifs)
    inside = {id(node) for test in found for node in ast.walk(test)}
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp) and id(node) not in inside:
            found.extend(node.values)
    return found


def multihost_branches(source: str) -> list[str]:
    """The branches of ``source`` that read a cluster, and the ``multihost`` functions it calls other than
    ``processes`` (which returns the cluster; its methods are the collectives)."""
    tree = ast.parse(source)
    branches = [
        ast.unparse(test)
        for test in branch_tests(tree)
        if any(
            "cluster" in (node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")).lower()
            for node in ast.walk(test)
        )
    ]
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "multihost"
    }
    used |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("multihost")
        for alias in node.names
    }
    return branches + sorted(f"multihost.{name}" for name in used - {"processes"})


def test_the_driver_has_no_multihost_branches():
    """One process is a ``Cluster`` whose collectives do nothing (training/multihost.py): the driver's
    phase loop asks its cluster and never branches on it."""
    assert multihost_branches((PACKAGE / "training" / "driver.py").read_text()) == []


def test_multihost_branches_finds_them():
    """The checker itself, on the branches the driver had."""
    source = (
        "from kerasimg.training import multihost\n"
        "cluster = multihost.processes('none')\n"
        "if not cluster.writes:\n    pass\n"
        "final = load() if run.has_model or self.cluster.evaluates_saved_model else model\n"
        "path = multihost.from_process_zero(path)\n"
        "if resume and run.exists:\n    pass\n"
    )
    assert multihost_branches(source) == [
        "not cluster.writes",
        "run.has_model or self.cluster.evaluates_saved_model",
        "multihost.from_process_zero",
    ]
