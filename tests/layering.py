"""The import rules of the layout, as a checker over source trees (used by tests/unit/test_layers.py).

Every `import` and `from ... import` is read with `ast`, including those inside functions and under
`if TYPE_CHECKING:`, so a lazy import cannot hide a dependency. A rule names the modules it
applies to and the modules they must not import (prefix match on dotted names: `worker.sim`
covers `worker.sim.dense`). Besides the rules: no module imports another module's `_private`
name, and the graph of imports between the checked modules has no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    """Modules matching `where` (and none of `unless`) must not import anything in `banned`."""

    name: str
    where: tuple[str, ...]
    banned: tuple[str, ...]
    unless: tuple[str, ...] = ()


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from `module` (line `line`)."""

    module: str  # importing module
    target: str  # the module imported (a submodule when `from pkg import sub` names one)
    names: tuple[str, ...]  # names taken from `target` (empty for `import target`)
    line: int


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def modules_of(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `packages` below `root`."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: Iterable[str]) -> list[Import]:
    """Every import in `path`, with relative imports resolved against `module`."""
    known_set = set(known)
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend(Import(module, a.name, (), node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            plain: list[str] = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known_set:  # `from pkg import submodule`
                    out.append(Import(module, sub, (), node.lineno))
                else:
                    plain.append(alias.name)
            if plain:
                out.append(Import(module, base, tuple(plain), node.lineno))
    return out


def violations(root: Path, packages: Sequence[str], rules: Sequence[Rule]) -> list[str]:
    """One line per broken rule, private import and cycle; empty when the tree is clean."""
    modules = modules_of(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems: list[str] = []
    for module, path in modules.items():
        for imp in imports_of(module, path, modules):
            where = f"{path.relative_to(root)}:{imp.line}"
            for rule in rules:
                if (
                    _under(module, rule.where)
                    and not _under(module, rule.unless)
                    and _under(imp.target, rule.banned)
                ):
                    problems.append(f"{where}: {rule.name}: {module} imports {imp.target}")
            if imp.target in modules:
                if imp.target != module:
                    graph[module].add(imp.target)
                private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
                if private and imp.target != module:
                    problems.append(
                        f"{where}: private name: {module} imports {', '.join(private)} "
                        f"from {imp.target}"
                    )
    problems.extend(f"import cycle: {' -> '.join(c)}" for c in cycles(graph))
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# The project's rules (ARCHITECTURE.md, "Import rules").
NUMPY_ONLY = (
    "worker.contract",
    "worker.schemes",
    "worker.stats",
    "worker.histogram",
    "worker.seeding",
    "worker.memory",
    "worker.errors",
    "worker.target",
)
STORAGE = (
    "scheduler.store",
    "scheduler.activity",
    "scheduler.growth",
    "scheduler.reconcile",
    "worker.persist",
    "worker.aggregate",
    "worker.stat_columns",
)
ORM_MODULES = (
    "models.base",
    "models.chunk",
    "models.configuration",
    "models.stats",
    "models.sweep",
)
ORM_CLASSES = frozenset(
    {
        "Base",
        "Chunk",
        "ChunkStat",
        "Configuration",
        "LayerStat",
        "LayerStatPack",
        "Sweep",
        "SweepConfiguration",
    }
)

RULES: tuple[Rule, ...] = (
    Rule("models is the bottom layer", ("models",), ("worker", "scheduler", "initsweep")),
    Rule("initsweep is the top: the public face", ("worker", "scheduler"), ("initsweep",)),
    Rule(
        "the Python API starts without TensorFlow and sends by task name",
        ("initsweep",),
        ("tensorflow", "keras", "worker.sim", "worker.tasks", "worker.execute", "worker.persist"),
    ),
    Rule(
        "numpy-only worker modules",
        NUMPY_ONLY,
        ("tensorflow", "keras", "celery", "kombu", "sqlalchemy", "models"),
    ),
    Rule(
        "worker.sim is pure compute", ("worker.sim",), ("celery", "kombu", "sqlalchemy", "models")
    ),
    Rule(
        "only worker.sim imports TensorFlow",
        ("worker", "scheduler", "models"),
        ("tensorflow", "keras"),
        unless=("worker.sim",),
    ),
    Rule("worker never imports scheduler", ("worker",), ("scheduler",)),
    Rule(
        "scheduler sends by task name",
        ("scheduler",),
        ("worker.sim", "worker.tasks", "worker.execute", "worker.persist"),
    ),
    Rule(
        "analysis takes values",
        ("scheduler.analysis",),
        ("sqlalchemy", "models", "click", "rich", "scheduler.store", "scheduler.query"),
    ),
    Rule(
        "ORM modules only in storage",
        ("worker", "scheduler", "initsweep"),
        ORM_MODULES,
        unless=STORAGE,
    ),
)


def orm_violations(root: Path, packages: Sequence[str]) -> list[str]:
    """`from models import Chunk` (an ORM class) outside the storage modules."""
    modules = modules_of(root, packages)
    problems: list[str] = []
    for module, path in modules.items():
        if _under(module, ("models", *STORAGE)):
            continue
        for imp in imports_of(module, path, modules):
            if imp.target == "models" and ORM_CLASSES.intersection(imp.names):
                names = ", ".join(sorted(ORM_CLASSES.intersection(imp.names)))
                problems.append(
                    f"{path.relative_to(root)}:{imp.line}: ORM classes only in storage: "
                    f"{module} imports {names}"
                )
    return problems
