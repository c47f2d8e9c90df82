"""Code versions derived from the code itself, not from a hand-kept string.

Dagster's code versions are strings a person must remember to bump (dagster#15242 asks for
derived ones); a forgotten bump reuses stale outputs forever. Here an asset's code version is
a hash of
- the normalised source of its function (its decorator included: partition mappings and
  deps shape the output too) and of every module-level helper or constant of its own
  module that it uses, followed transitively;
- the whole normalised source of every trainflow module it imports a name from, and of
  every trainflow module those import, transitively (module granularity: a helper deep in
  `features/flights.py` is covered although the asset never names it);
- the versions of the libraries that compute its output (an upgrade is a cache miss), and
- an optional human version for a deliberate bump (a change the code cannot show, such as
  a fixed bug in a library's behaviour).

"Normalised" is the AST without docstrings, so comments, formatting and docstrings never
change a version, while any change of logic does. Dagster-free; `defs/code_versions.py`
applies it to the assets. Over-inclusion (a module imported for a type only) costs a
recompute; under-inclusion would be silently wrong, so the closure errs on the first side.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

PACKAGE = "trainflow"
# The modules that compute versions (and the table of human versions) are mechanism, not
# logic: including them would make a bump of one asset's human version change every asset.
# The pod-size table (`defs/pods.py`) says where a step runs, not what it computes: a
# resized pod must not invalidate the cache.
EXCLUDED_MODULES = frozenset(
    {"trainflow.code_version", "trainflow.defs.code_versions", "trainflow.defs.pods"}
)


class CodeVersionError(ValueError):
    """A code version cannot be derived (a name or module that does not exist)."""


@dataclass(frozen=True)
class CodeVersion:
    """A derived code version and what went into it (shown in the UI beside the version)."""

    version: str
    human: str
    sources: tuple[str, ...]
    libraries: Mapping[str, str] = field(default_factory=dict)


_WithBody = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def normalised_dump(node: ast.AST) -> str:
    """The AST as text, without docstrings or positions: comments and layout vanish.

    The docstrings are taken out in place and put back after the dump, not stripped from a
    deep copy: copying the trees took half the time of deriving every code version."""
    taken_out: list[tuple[_WithBody, list[ast.stmt]]] = []
    try:
        for child in ast.walk(node):
            if (
                isinstance(child, _WithBody)
                and child.body
                and isinstance(child.body[0], ast.Expr)
                and isinstance(child.body[0].value, ast.Constant)
                and isinstance(child.body[0].value.value, str)
            ):
                taken_out.append((child, child.body))
                child.body = child.body[1:] or [ast.Pass()]
        return ast.dump(node, annotate_fields=True, include_attributes=False)
    finally:
        for child, body in taken_out:
            child.body = body


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the named distributions ("absent" for one not installed)."""
    found = {}
    for name in sorted(set(names)):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


class SourceTree:
    """trainflow's source as files under `root` (the folder holding the `trainflow` package).

    Reading files rather than imported objects lets a test derive the versions of an edited
    copy of the tree without importing it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._trees: dict[str, ast.Module] = {}
        self._dumps: dict[str, str] = {}
        self._imports: dict[str, set[str]] = {}

    @classmethod
    def installed(cls) -> SourceTree:
        return cls(Path(__file__).resolve().parent.parent)

    def path_of(self, module: str) -> Path | None:
        base = self.root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def is_module(self, module: str) -> bool:
        return module.split(".")[0] == PACKAGE and self.path_of(module) is not None

    def tree(self, module: str) -> ast.Module:
        if module not in self._trees:
            path = self.path_of(module)
            if path is None:
                raise CodeVersionError(f"module {module} not found under {self.root}")
            self._trees[module] = ast.parse(path.read_text(), filename=str(path))
        return self._trees[module]

    def module_dump(self, module: str) -> str:
        """`normalised_dump` of a whole module, once per module: every asset that imports
        it shares the text (about 2 s of the code location's load time otherwise)."""
        if module not in self._dumps:
            self._dumps[module] = normalised_dump(self.tree(module))
        return self._dumps[module]

    def imported_modules(self, module: str) -> set[str]:
        """trainflow modules that `module` imports anywhere (function-level imports too)."""
        if module not in self._imports:
            self._imports[module] = self._imports_within(module, self.tree(module))
        return self._imports[module]

    def module_closure(self, modules: Iterable[str]) -> set[str]:
        """The modules plus everything they import from trainflow, and their packages."""
        todo, seen = list(modules), set()
        while todo:
            module = todo.pop()
            if module in seen or module in EXCLUDED_MODULES:
                continue
            seen.add(module)
            parts = module.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # package __init__s
            todo += sorted(self.imported_modules(module))
        return seen

    def function_sources(self, module: str, name: str) -> tuple[dict[str, str], set[str]]:
        """Normalised sources of `module:name` and of the same-module helpers and constants
        it uses (transitively); plus the trainflow modules it takes names from."""
        sources: dict[str, str] = {}
        modules: set[str] = set()
        tree = self.tree(module)
        definitions = _top_level_definitions(tree)
        imports = self._import_map(module, tree)
        todo = [name]
        while todo:
            current = todo.pop()
            if f"{module}:{current}" in sources:
                continue
            if current not in definitions:
                raise CodeVersionError(f"{module} has no top-level definition {current!r}")
            statement = definitions[current]
            sources[f"{module}:{current}"] = normalised_dump(statement)
            modules |= self._imports_within(module, statement)
            for used in sorted(_names_used(statement)):
                if used in imports:
                    modules |= imports[used]
                elif used in definitions and used != current:
                    todo.append(used)
        return sources, modules

    def _imports_within(self, module: str, statement: ast.AST) -> set[str]:
        """trainflow modules imported inside a definition (a function-level import)."""
        found: set[str] = set()
        for node in ast.walk(statement):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if self.is_module(alias.name)}
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(module, node)
                for alias in node.names:
                    found |= self._targets(source, alias.name)
        return found

    def _absolute(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = module.split(".")
        if self.path_of(module) != self.root.joinpath(*package) / "__init__.py":
            package = package[:-1]
        base = package[: len(package) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def _targets(self, source: str, name: str) -> set[str]:
        """The trainflow module(s) that `from source import name` depends on."""
        if self.is_module(f"{source}.{name}"):
            return {f"{source}.{name}"}
        return {source} if self.is_module(source) else set()

    def _import_map(self, module: str, tree: ast.Module) -> dict[str, set[str]]:
        """Local name -> the trainflow modules it was imported from (module level)."""
        mapping: dict[str, set[str]] = {}
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if self.is_module(alias.name):
                        local = alias.asname or alias.name.split(".")[0]
                        mapping.setdefault(local, set()).add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(module, node)
                for alias in node.names:
                    targets = self._targets(source, alias.name)
                    if targets:
                        mapping.setdefault(alias.asname or alias.name, set()).update(targets)
        return mapping


def _top_level_definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """name -> the module-level statement that defines it (def, class or assignment)."""
    found: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found[name.id] = node
    return found


def _names_used(statement: ast.stmt) -> set[str]:
    """Global names a definition uses: every name read, less those it binds itself
    (parameters, assignments, loop and comprehension targets), so a parameter named like
    an upstream asset is not taken for that asset's function."""
    read: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(statement):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias) and node is not statement:
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return read - bound


def derive_code_version(
    tree: SourceTree,
    module: str,
    function: str,
    *,
    human: str = "1",
    libraries: Iterable[str] = (),
    installed: Mapping[str, str] | None = None,
) -> CodeVersion:
    """The code version of `module:function`: `<human>-<16 hex digits>`.

    `installed` overrides the library lookup (a test's stand-in for an upgrade).
    """
    sources, modules = tree.function_sources(module, function)
    # Not the asset's own module as a whole (its other assets' code is not this one's), but
    # the packages it sits in, whose __init__ runs when it is imported.
    parts = module.split(".")
    packages = {".".join(parts[:i]) for i in range(1, len(parts))}
    for name in tree.module_closure(modules | packages) - {module}:
        sources[name] = tree.module_dump(name)
    versions = dict(installed) if installed is not None else library_versions(libraries)
    payload = json.dumps(
        {"human": human, "sources": sources, "libraries": versions}, sort_keys=True
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return CodeVersion(
        version=f"{human}-{digest[:16]}",
        human=human,
        sources=tuple(sorted(sources)),
        libraries=versions,
    )
