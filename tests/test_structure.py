"""The shape of the code a new engineer reads: small modules, no import circle, a domain
layer without Dagster, and assets that only wire a stage (docs/architecture.md)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import dagster as dg

import trainflow

SRC = Path(trainflow.__file__).parent
MAX_MODULE_LINES = 450
MAX_ASSET_BODY_LINES = 40
# What talks to Dagster, and why; everything else in src/trainflow is the domain layer.
DAGSTER_LAYER = {
    "trainflow.defs": "the assets, checks, sensors, resources and IO manager",
    "trainflow.definitions": "the code location's entry point",
    # `trainflow status` reads the Dagster instance (SLIs, instigators), `code-versions`
    # loads the definitions, `quarantine revalidate` materializes validated_flights: each
    # imports dagster inside the command, never at module level.
    "trainflow.cli": "the terminal commands that act on the instance",
    # Only dagster_shared's warning classes, to filter them by category.
    "trainflow.quiet_warnings": "filters Dagster's BetaWarnings by class",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _module_level_imports(name: str, path: Path) -> set[str]:
    """trainflow modules imported at module level (an import inside a function runs when it
    is called, and one under `if TYPE_CHECKING` never: neither can make a circle at import
    time). `from package import name` counts as the submodule when `name` is one."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module in MODULES and module != name}


def test_no_module_is_over_450_lines() -> None:
    sizes = {
        name: len(path.read_text().splitlines())
        for name, path in MODULES.items()
        if len(path.read_text().splitlines()) > MAX_MODULE_LINES
    }
    assert not sizes, f"modules over {MAX_MODULE_LINES} lines: {sizes}"


def test_the_module_imports_form_no_circle() -> None:
    graph = {name: _module_level_imports(name, path) for name, path in MODULES.items()}
    assert graph["trainflow.defs.ingest"], "the import walk found nothing: it is broken"
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                circle = [*stack[stack.index(imported) :], imported]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if imported not in state:
                visit(imported)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_domain_layer_never_imports_dagster() -> None:
    offenders = {}
    for name, path in MODULES.items():
        if any(name == layer or name.startswith(f"{layer}.") for layer in DAGSTER_LAYER):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0].startswith("dagster") for n in names):
                offenders[name] = names
    assert not offenders, f"Dagster imported outside the Dagster layer: {offenders}"


def _body_lines(function: ast.FunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        return 0
    return (function.end_lineno or body[-1].end_lineno or 0) - body[0].lineno + 1


def test_every_asset_body_is_at_most_40_lines() -> None:
    from trainflow.definitions import defs

    measured = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not isinstance(assets_def, dg.AssetsDefinition) or not assets_def.is_executable:
            continue
        compute = getattr(assets_def.op, "compute_fn", None)
        fn = getattr(compute, "decorated_fn", None)
        if fn is None:
            continue
        fn = inspect.unwrap(fn)
        if not fn.__module__.startswith("trainflow."):
            continue  # dagster-dbt's own op body
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn)))
        measured[fn.__name__] = _body_lines(tree.body[0])  # type: ignore[arg-type]
    assert {"raw_snapshot", "model", "evaluation_report", "registry_entry"} <= set(measured)
    too_long = {name: n for name, n in measured.items() if n > MAX_ASSET_BODY_LINES}
    assert not too_long, f"asset bodies over {MAX_ASSET_BODY_LINES} lines: {too_long}"
