"""Imports point down the layers: core → ops → render → geometry → model / data → train / infer →
calibration → eval → cli (docs/design.md, "Layers").

An AST walk over every module of ``ntdm_cli`` (function-local imports included) fails on

* an import of a higher layer;
* a cycle: between units of one layer (e.g. train ↔ infer) or between modules of one package
  (e.g. infer.classify ↔ infer.pipeline through a function-local import);
* a private name (``_x``) imported from another unit.

A *unit* is a top-level module or subpackage of ``ntdm_cli`` (``ntdm_cli.render``, ``ntdm_cli.errors``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ntdm_cli"

#: layer of each unit; a unit may import units of a lower layer, and of its own layer without a cycle
LAYERS: dict[str, int] = {
    # core: errors, output, config, artifacts and the conventions every layer shares
    "ntdm_cli": 0, "ntdm_cli._C": 0, "ntdm_cli.errors": 0, "ntdm_cli.console": 0, "ntdm_cli.config": 0,
    "ntdm_cli.fsutil": 0, "ntdm_cli.artifacts": 0, "ntdm_cli.conventions": 0, "ntdm_cli.metrics": 0,
    "ntdm_cli.ops": 1,
    "ntdm_cli.render": 2,
    "ntdm_cli.geometry": 3,
    "ntdm_cli.model": 4, "ntdm_cli.data": 4, "ntdm_cli.bench": 4,
    "ntdm_cli.train": 5, "ntdm_cli.infer": 5,
    "ntdm_cli.calibration": 6,
    "ntdm_cli.eval": 7,
    "ntdm_cli.cli": 8, "ntdm_cli.__main__": 8,
}

#: private names that may cross units, with the reason
PRIVATE_ALLOWED = {
    ("ntdm_cli.ops", "ntdm_cli"): "ntdm_cli._C, the compiled extension's module name is fixed by the build (setup.py)",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def imports_of(module: str, source: str, is_package: bool, modules: set[str]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every ntdm_cli import in ``source``.

    ``from pkg import sub`` counts as an import of the submodule ``pkg.sub`` when it is one."""
    here = module if is_package else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "ntdm_cli"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ntdm_cli":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, "", node.lineno) if sub in modules else (target, a.name, node.lineno))
    return out


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (or a self-loop), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every layering problem of the modules ``sources`` (name → (source text, is a package))."""
    modules = set(sources)
    problems: list[str] = []
    module_graph: dict[str, set[str]] = {m: set() for m in modules}
    unit_graph: dict[str, set[str]] = {}
    for mod, (text, is_pkg) in sorted(sources.items()):
        src_unit = unit_of(mod)
        if src_unit not in LAYERS:
            problems.append(f"{mod}: unit {src_unit} has no layer (add it to LAYERS)")
            continue
        for target, name, line in imports_of(mod, text, is_pkg, modules):
            dst_unit = unit_of(target)
            where = f"{mod}:{line} imports {target}{'.' + name if name else ''}"
            if dst_unit not in LAYERS:
                problems.append(f"{where}: unit {dst_unit} has no layer")
                continue
            if LAYERS[dst_unit] > LAYERS[src_unit]:
                problems.append(f"{where}: upward ({src_unit} is layer {LAYERS[src_unit]}, "
                                f"{dst_unit} layer {LAYERS[dst_unit]})")
            if dst_unit != src_unit:
                unit_graph.setdefault(src_unit, set()).add(dst_unit)
                private = is_private(name) or any(is_private(p) for p in target.split(".")[1:])
                if private and (src_unit, dst_unit) not in PRIVATE_ALLOWED:
                    problems.append(f"{where}: private name across units")
            if target in modules and target != mod:
                module_graph[mod].add(target)
    for comp in find_cycles(unit_graph):
        problems.append(f"import cycle between units: {' ↔ '.join(comp)}")
    # within a package; a package's __init__ importing its own submodules is how it re-exports them
    inner = {m: {t for t in ts if unit_of(t) == unit_of(m)} for m, ts in module_graph.items()}
    for comp in find_cycles(inner):
        problems.append(f"import cycle between modules: {' ↔ '.join(comp)}")
    return problems


def package_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p, PACKAGE): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_imports_point_down_the_layers():
    problems = violations(package_sources())
    assert not problems, "\n".join(problems)


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in package_sources()}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


@pytest.mark.parametrize("module, text, expected", [
    ("ntdm_cli.render.fake", "def f():\n    from ntdm_cli.cli.main import main\n", "upward"),
    ("ntdm_cli.geometry.fake", "from ntdm_cli.infer.outputs import vertex_visibility\n", "upward"),
    ("ntdm_cli.eval.fake", "from ntdm_cli.metrics import _secret\n", "private name"),
    ("ntdm_cli.render.fake", "from ntdm_cli.ops import _ext\n", "private name"),
])
def test_the_walker_flags_a_synthetic_violation(module, text, expected):
    sources = package_sources()
    sources[module] = (text, False)
    assert any(expected in p and module in p for p in violations(sources))


def test_the_walker_flags_a_cycle():
    sources = package_sources()
    sources["ntdm_cli.infer.fake_a"] = ("def f():\n    from ntdm_cli.infer.fake_b import g\n", False)
    sources["ntdm_cli.infer.fake_b"] = ("from ntdm_cli.infer.fake_a import f\n", False)
    assert any("cycle between modules" in p and "fake_a" in p for p in violations(sources))
    sources = package_sources()
    sources["ntdm_cli.data.fake"] = ("from ntdm_cli.model.io import NTDMModel\n", False)
    sources["ntdm_cli.model.fake"] = ("from ntdm_cli.data.pascal3d import load_image\n", False)
    assert any("cycle between units" in p and "ntdm_cli.data" in p for p in violations(sources))
