"""The import graph of Python packages, read from their source with :mod:`ast`, for tests of a package's layering.

Every ``import`` statement counts, those inside functions included (an import moved into a function to dodge a
cycle is still a dependency); those under ``if TYPE_CHECKING:`` do not (they never run). ``from package import
name`` is an edge to the submodule ``package.name`` when there is one, else to ``package`` itself.

    graph = import_graph(["nfkit_core"])
    assert find_cycle(graph.internal) is None

nfkit-core's contract layer (what flows are made of, and all of nf that an architecture may import; see
docs/concepts.rst) is named here once, for every package's layering tests: :func:`contract_modules`.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONTRACT_DEPENDENCIES", "ImportGraph", "contract_modules", "import_graph", "find_cycle",
           "is_standard_library"]

CONTRACT_MODULES = ("nfkit_core", "nfkit_core.errors", "nfkit_core.specs", "nfkit_core.noise", "nfkit_core.transform",
                    "nfkit_core.priors", "nfkit_core.flow", "nfkit_core.attention", "nfkit_core.validation")
CONTRACT_PACKAGES = ("nfkit_core.layers",)
CONTRACT_DEPENDENCIES = frozenset({"torch", "numpy", "einops"})
"""The distributions the contract layer (and an architecture's modules) may import, the standard library aside."""


@dataclass
class ImportGraph:
    """Who imports whom.

    Attributes:
        internal: module -> the modules of the analysed packages it imports.
        external: module -> the top-level names of other distributions it imports (``torch``, ``pluggy``, ...),
            the standard library left out.
    """

    internal: dict[str, set[str]] = field(default_factory=dict)
    external: dict[str, set[str]] = field(default_factory=dict)


def is_standard_library(name: str) -> bool:
    """Whether the top-level module ``name`` belongs to Python's standard library."""
    return name.split(".")[0] in sys.stdlib_module_names or name == "__future__"


def _package_files(package: str) -> dict[str, Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package!r} is not an importable package")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(packages: list[str]) -> ImportGraph:
    """The import graph of every module of the installed ``packages`` (import names, e.g. ``["nfkit_core"]``)."""
    files = {module: path for package in packages for module, path in _package_files(package).items()}
    graph = ImportGraph()
    for module, path in files.items():
        internal, external = set(), set()
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    anchor = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                if target in files or target.split(".")[0] in packages:
                    while target not in files and "." in target:  # `import a.b.c` of a name that is no module
                        target = target.rsplit(".", 1)[0]
                    internal.add(target)
                elif not is_standard_library(target):
                    external.add(target.split(".")[0])
        internal.discard(module)
        graph.internal[module] = internal
        graph.external[module] = external
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def contract_modules(graph: ImportGraph) -> set[str]:
    """The modules of nfkit-core's contract layer in ``graph`` (which must cover ``nfkit_core``): the core's value
    types, errors, noise, transforms, priors, flows, attention, validation and every module of its layers."""
    if "nfkit_core" not in graph.internal:
        raise ValueError("the import graph does not cover nfkit_core: build it with "
                         "import_graph(['nfkit_core', ...])")
    return {*CONTRACT_MODULES, *(module for module in graph.internal
                                 if any(module == p or module.startswith(p + ".") for p in CONTRACT_PACKAGES))}
