"""The layer table of gatewayd, and no import cycles: so neither can come back.

Layers, lowest first (README's "Layout" and ../shared/STYLE.md): a module may import
its own layer and the ones below, never one above.

Decisions the table encodes:
* Every import counts for the layer check, wherever it stands: inside a function
  (a lazy import is still a dependency) and inside `if TYPE_CHECKING:` (a type from a
  higher layer couples the code all the same; pass a small Protocol instead).
* The cycle check looks at imports that run when a module is imported: the module's
  top level, not function bodies and not `if TYPE_CHECKING:` blocks, which never run.
* compile and classify share a floor (so do apply and explain): the layer rule lets
  them import each other, the cycle check keeps that one-way. Today neither imports
  the other.
* gatewayd/__init__.py runs before every gatewayd module, so it stands on the ground
  floor; __main__.py is the `python -m gatewayd` entry point beside cli.
* lab/ (the namespace office for the demo, the tests and the benchmarks) sits on top:
  no daemon module may depend on test tooling. tests/ and bench/ are outside the
  package and above all of it; nothing in gatewayd imports them (checked too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "gatewayd"

LAYERS: dict[str, int] = {
    "gatewayd": 0,  # the package's own __init__
    "gatewayd.policy": 0,
    "gatewayd.compile": 1,
    "gatewayd.classify": 1,
    "gatewayd.apply": 2,
    "gatewayd.explain": 2,
    "gatewayd.metrics": 3,
    "gatewayd.report": 3,  # reads Prometheus, not the kernel: beside the metrics it reports on
    "gatewayd.control": 4,
    "gatewayd.daemon": 5,
    "gatewayd.cli": 6,
    "gatewayd.__main__": 6,
    "gatewayd.lab": 7,
}
OUTSIDE_THE_PACKAGE = ("tests", "bench")  # test and benchmark code: never imported by gatewayd


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    at_import_time: bool  # top level, outside `if TYPE_CHECKING:`


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    line: int
    importer_layer: int
    imported_layer: int

    def __str__(self) -> str:
        return (f"{self.importer} (layer {self.importer_layer}) imports {self.imported} "
                f"(layer {self.imported_layer}) at line {self.line}")


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package directory `root`."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking_guard(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute name `from <level dots><module> import ...` refers to."""
    if level == 0:
        return module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[:len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(importer: str, path: Path, known: Mapping[str, Path]) -> Iterator[Import]:
    """Every import statement of the module, at any depth, as absolute module names.

    `from a.b import c` names the module a.b.c when that is a module, else a.b."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, at_import_time: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(importer, alias.name, child.lineno, at_import_time)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(child.module, child.level, importer, is_package)
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    yield Import(importer, submodule if submodule in known else base, child.lineno, at_import_time)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking_guard(child):
                for statement in child.body:
                    yield from visit(ast.Module(body=[statement], type_ignores=[]), False)
                for statement in child.orelse:
                    yield from visit(ast.Module(body=[statement], type_ignores=[]), at_import_time)
            else:
                yield from visit(child, at_import_time)

    yield from visit(tree, True)


def layer_of(module: str, layers: Mapping[str, int]) -> int | None:
    """The layer of the longest table entry that is `module` or a package above it.

    The top package's own entry ("gatewayd", its __init__) holds for itself only, so that
    a new subpackage missing from the table is reported instead of landing on floor 0."""
    parts = module.split(".")
    if len(parts) == 1:
        return layers.get(module)
    for length in range(len(parts), 1, -1):
        layer = layers.get(".".join(parts[:length]))
        if layer is not None:
            return layer
    return None


def all_imports(root: Path) -> list[Import]:
    known = module_names(root)
    return [found for name, path in known.items() for found in imports_of(name, path, known)]


def unplaced_modules(root: Path, layers: Mapping[str, int]) -> list[str]:
    return [name for name in module_names(root) if layer_of(name, layers) is None]


def upward_imports(root: Path, layers: Mapping[str, int]) -> list[Violation]:
    """Imports of a gatewayd module from a higher layer (imports of other packages are not ours to rank)."""
    violations = []
    for found in all_imports(root):
        if found.imported.split(".")[0] != root.name:
            continue
        mine, theirs = layer_of(found.importer, layers), layer_of(found.imported, layers)
        if mine is not None and theirs is not None and theirs > mine:
            violations.append(Violation(found.importer, found.imported, found.line, mine, theirs))
    return violations


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected components (Tarjan) of more than one module, or a module importing
    itself, in the graph of imports that run at import time; each sorted, the list sorted."""
    known = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for found in all_imports(root):
        if found.at_import_time and found.imported in known:
            graph[found.importer].add(found.imported)

    index_of: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        # Recursion depth is bounded by the number of modules (~130), well under Python's limit.
        index_of[module] = lowlink[module] = len(index_of)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index_of:
                connect(target)
                lowlink[module] = min(lowlink[module], lowlink[target])
            elif target in on_stack:
                lowlink[module] = min(lowlink[module], index_of[target])
        if lowlink[module] == index_of[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in graph[module]:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index_of:
            connect(module)
    return sorted(cycles)


# --- the real package --------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    assert module_names(PACKAGE_ROOT), f"no modules found under {PACKAGE_ROOT}"
    unplaced = unplaced_modules(PACKAGE_ROOT, LAYERS)
    assert not unplaced, f"modules in no layer (add their package to LAYERS in {__file__}): {unplaced}"


def test_no_module_imports_from_a_higher_layer() -> None:
    violations = upward_imports(PACKAGE_ROOT, LAYERS)
    assert not violations, "imports from a higher layer:\n" + "\n".join(str(v) for v in violations)


def test_no_import_cycles_between_modules() -> None:
    cycles = import_cycles(PACKAGE_ROOT)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


def test_the_package_never_imports_tests_or_benchmarks() -> None:
    found = [f"{i.importer} imports {i.imported} at line {i.line}" for i in all_imports(PACKAGE_ROOT)
             if i.imported.split(".")[0] in OUTSIDE_THE_PACKAGE]
    assert not found, found


def test_the_checker_sees_the_real_graph() -> None:
    """Guards against a checker that reads nothing: known edges of the real package are found."""
    edges = {(i.importer, i.imported) for i in all_imports(PACKAGE_ROOT)}
    assert ("gatewayd.compile.plan", "gatewayd.policy.model") in edges
    assert ("gatewayd.__main__", "gatewayd.cli") in edges
    assert len(edges) > 200


# --- the checker itself, on a fake package -------------------------------------------------------


def _fake_package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "gatewayd"
    for relative, text in {"__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for package in path.relative_to(root).parents:
            (root / package / "__init__.py").touch()
    return root


def test_checker_finds_upward_imports_at_any_depth(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "policy/model.py": "import os\nfrom gatewayd.daemon import reactor\n",
        "compile/plan.py": "from gatewayd.policy.model import X\n"
                           "def later():\n    from gatewayd.metrics.base import Y\n",
        "classify/engine.py": "from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from gatewayd.cli import main\n",
        "daemon/reactor.py": "from ..compile import plan\nfrom . import verdicts\n",
        "daemon/verdicts.py": "",
        "metrics/base.py": "",
        "cli/__init__.py": "",
    })
    found = {(v.importer, v.imported, v.importer_layer, v.imported_layer) for v in upward_imports(root, LAYERS)}
    assert found == {
        ("gatewayd.policy.model", "gatewayd.daemon.reactor", 0, 5),
        ("gatewayd.compile.plan", "gatewayd.metrics.base", 1, 3),  # inside a function
        ("gatewayd.classify.engine", "gatewayd.cli", 1, 6),  # under TYPE_CHECKING
    }


def test_checker_allows_the_same_floor_and_resolves_relative_imports(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "compile/ruleset.py": "from gatewayd.classify import tables\n",
        "classify/tables.py": "from ..policy import model\n",
        "policy/model.py": "",
        "apply/nft.py": "from gatewayd.explain.rules import R\n",
        "explain/rules.py": "",
    })
    assert upward_imports(root, LAYERS) == []
    edges = {(i.importer, i.imported) for i in all_imports(root)}
    assert ("gatewayd.classify.tables", "gatewayd.policy.model") in edges


def test_checker_reports_a_package_missing_from_the_table(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {"policy/model.py": "", "wan/links.py": ""})
    assert unplaced_modules(root, LAYERS) == ["gatewayd.wan", "gatewayd.wan.links"]


def test_checker_finds_cycles_but_not_through_functions_or_type_checking(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "policy/a.py": "from gatewayd.policy import b\n",
        "policy/b.py": "import gatewayd.policy.c\n",
        "policy/c.py": "from gatewayd.policy.a import thing\n",
        "policy/d.py": "from gatewayd.policy import e\n",
        "policy/e.py": "def lazy():\n    from gatewayd.policy import d\n",
        "policy/f.py": "from typing import TYPE_CHECKING\nimport gatewayd.policy.g\n",
        "policy/g.py": "import typing\nif typing.TYPE_CHECKING:\n    from gatewayd.policy import f\n",
        "policy/h.py": "from gatewayd.policy import h\n",
    })
    assert import_cycles(root) == [
        ["gatewayd.policy.a", "gatewayd.policy.b", "gatewayd.policy.c"],
        ["gatewayd.policy.h"],
    ]


@pytest.mark.parametrize(("module", "layer"), [
    ("gatewayd", 0), ("gatewayd.policy.model", 0), ("gatewayd.classify.engine", 1),
    ("gatewayd.explain", 2), ("gatewayd.__main__", 6), ("gatewayd.lab.topology", 7), ("gatewayd.wan", None),
])
def test_layer_of_uses_the_closest_package(module: str, layer: int | None) -> None:
    assert layer_of(module, LAYERS) == layer
