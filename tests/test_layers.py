"""The package's layering (see the docstring of ``spark_sensitivity``): imports go down, never up,
never sideways between io and embedders; no import circles; no private name of one module used in
another; modules and functions stay small enough to read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "spark_sensitivity"
# Layer of each top-level part of the package; a module may import its own layer or a lower one.
LAYERS = {
    "version": 0,
    "settings": 0,
    "core": 1,
    "io": 2,
    "embedders": 2,
    "ml": 3,
    "workflows": 4,
    "cli": 5,
}
SIDE_BY_SIDE = {("io", "embedders"), ("embedders", "io")}
# Modules are grouped by meaning, not by a line count: past these sizes a module or function must say
# why in its docstring (a line starting with LONG_REASON), so growth is a decision, not an accident.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
LONG_REASON = "Why this is long:"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _part(module: str) -> str | None:
    """The layer part of a module name: 'core' for spark_sensitivity.core.kmeans.cluster; None for the
    package's face (its __init__ and __main__), which may import anything."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def _imports(tree: ast.Module, importer: str) -> list[str]:
    """Every module of the package this one imports, at any depth of the code."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("spark_sensitivity")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spark_sensitivity"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append(candidate if candidate in MODULES else node.module)
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(m) for m in MODULES} - {None}
    assert parts <= set(LAYERS), f"no layer for {sorted(parts - set(LAYERS))}: add it to LAYERS and the docs"


def test_imports_only_go_down_the_layers():
    wrong = []
    for module, tree in MODULES.items():
        mine = _part(module)
        if mine is None:
            continue
        for imported in _imports(tree, module):
            theirs = _part(imported)
            if theirs is None:
                wrong.append(f"{module} imports the package face {imported}")
            elif LAYERS[theirs] > LAYERS[mine] or (mine, theirs) in SIDE_BY_SIDE:
                wrong.append(f"{module} ({mine}) imports {imported} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = {m: {i for i in _imports(t, m) if i in MODULES and i != m} for m, t in MODULES.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def _private_definitions(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_private_name_is_used_outside_its_module():
    defined = {m: _private_definitions(t) for m, t in MODULES.items()}
    wrong = []
    for module, tree in MODULES.items():
        others = set().union(*(names for m, names in defined.items() if m != module)) - defined[module]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("spark_sensitivity")
            ):
                wrong += [f"{module} imports {node.module}.{a.name}" for a in node.names if a.name in others]
            elif isinstance(node, ast.Attribute) and node.attr in others:
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    wrong.append(f"{module}:{node.lineno} uses .{node.attr}")
    assert not wrong, "\n".join(wrong)


def _gives_a_reason(node: ast.AST) -> bool:
    return LONG_REASON in (ast.get_docstring(node) or "")


def test_long_modules_and_functions_say_why():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        tree = ast.parse(path.read_text())
        if lines > MAX_MODULE_LINES and not _gives_a_reason(tree):
            wrong.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _gives_a_reason(node):
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.name}: {length} lines")
    assert not wrong, "\n".join(wrong)


def test_the_assignment_kernel_loads_without_spark_or_torch():
    """Every assignment task unpickles these modules in a fresh Python worker: pyspark.ml (with
    pandas) would cost half a second per worker, torch seconds on a host without a GPU."""
    probe = (
        "import sys, spark_sensitivity.core.kmeans.kernels, spark_sensitivity.core.kmeans.batches, "
        "spark_sensitivity.io.parquet_scan; "
        "print(sorted(m for m in ('pyspark', 'torch', 'pandas') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
