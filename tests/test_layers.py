"""The import layers, checked by reading every module's imports with ``ast``.

Layer order (a package may import only itself and the packages to its left):

    core <- inputs <- search <- distill <- ship <- report <- run <- cli

``deploy/`` is independent: it imports neither torch nor edgekd. Imports inside functions and
under ``TYPE_CHECKING`` count too. The known exceptions are listed below, each marked with a
``# layering: known exception`` comment at the import; the test fails when a new one appears and
when a listed one is gone (so that the list only shrinks).

Inside a package, modules import one another without circles: the modules of ``edgekd/`` and
``deploy/`` form a directed acyclic graph (:func:`test_no_import_circle_between_modules`). There
every executed import counts, at the top of a module and inside a function alike; an import under
``if TYPE_CHECKING:`` does not (it never runs: annotations may name each other's types), and
``from package import submodule`` is an import of the submodule, not of the package's
``__init__`` (which Python runs before any of its submodules anyway).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EDGEKD = REPO / "edgekd"
DEPLOY = REPO / "deploy"

LAYERS = ["core", "inputs", "search", "distill", "ship", "report", "run", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}
#: packages outside the stage order: the data assets sit with core
OTHER_RANK = {"assets": 0, "device_profiles": 0}

#: (importing module, imported module) pairs that break the order today.
KNOWN_EXCEPTIONS = {
    # checkpoint.load_student rebuilds a student from its spec
    ("edgekd.core.checkpoint", "edgekd.search.space"),
}


def _module_name(file: Path) -> str:
    parts = list(file.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(file: Path) -> set[str]:
    """Absolute module names ``file`` imports (``from a.b import c`` gives ``a.b.c`` and ``a.b``)."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    package = _module_name(file) if file.name == "__init__.py" else _module_name(file).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "edgekd" or len(parts) < 2:
        return None
    return parts[1]


def _rank(layer: str) -> int:
    return RANK[layer] if layer in RANK else OTHER_RANK[layer]


def _edgekd_modules() -> list[Path]:
    return sorted(EDGEKD.rglob("*.py"))


def _violations() -> set[tuple[str, str]]:
    known_modules = {_module_name(f) for f in _edgekd_modules()}
    found = set()
    for file in _edgekd_modules():
        importer = _module_name(file)
        own = _layer(importer)
        if own is None or own == "__main__":
            continue
        for imported in _imports(file):
            target = _layer(imported)
            if target is None or target == own or imported not in known_modules:
                continue  # third party, the top-level edgekd package, the same package, or a name
            if target == "cli" or target == "__main__" or _rank(target) > _rank(own):
                found.add((importer, imported))
    return found


def test_every_module_sits_in_a_layer() -> None:
    top = sorted(f.name for f in EDGEKD.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], f"modules at the top of edgekd/: {top}; put them in a stage package"
    packages = {p.name for p in EDGEKD.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS) | {"assets"}, packages
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse((EDGEKD / name / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"edgekd/{name}/__init__.py: say what it owns and what it may import"


def test_no_stage_imports_the_cli_or_a_downstream_stage() -> None:
    found = _violations()
    new = found - KNOWN_EXCEPTIONS
    assert not new, ("imports against the layer order " + " <- ".join(LAYERS) + ": "
                     + ", ".join(f"{a} imports {b}" for a, b in sorted(new)))
    gone = KNOWN_EXCEPTIONS - found
    assert not gone, f"fixed, remove from KNOWN_EXCEPTIONS: {sorted(gone)}"


def test_known_exceptions_are_marked_in_the_code() -> None:
    for importer, imported in KNOWN_EXCEPTIONS:
        file = REPO / (importer.replace(".", "/") + ".py")
        lines = [line for line in file.read_text().splitlines()
                 if f"from {imported} import" in line or line.strip().startswith(f"import {imported}")]
        assert lines and all("# layering: known exception" in line for line in lines), (importer, imported, lines)


def test_deploy_imports_neither_torch_nor_edgekd() -> None:
    files = sorted(DEPLOY.rglob("*.py"))
    assert files
    for file in files:
        roots = {name.split(".")[0] for name in _imports(file)}
        assert not roots & {"torch", "torchvision", "edgekd"}, f"{file.relative_to(REPO)} imports {roots}"


#: The modules that may print: the CLI, and the two progress modules.
PRESENTERS = ("edgekd.cli", "edgekd.core.progress", "edgekd.run.progress")


def test_only_the_cli_and_the_progress_modules_print() -> None:
    """Stage modules return data; ``print``, click and rich belong to the presenters."""
    found = []
    for file in _edgekd_modules():
        module = _module_name(file)
        if module.startswith(PRESENTERS) or module == "edgekd.__main__":
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                found.append(f"{module}:{node.lineno} calls print")
        found += [f"{module} imports {name}" for name in _imports(file)
                  if name.split(".")[0] in ("click", "rich")]
    assert not found, "; ".join(found) + ": return data and print in edgekd.cli (or a progress module)"


# --------------------------------------------------------------------------- module circles
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _executed_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def _module_files() -> dict[str, Path]:
    files = [*sorted(EDGEKD.rglob("*.py")), *sorted(DEPLOY.rglob("*.py"))]
    return {_module_name(file): file for file in files}


def _module_imports(file: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``file`` imports when it runs (see the module docstring)."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    own = _module_name(file)
    package = own if file.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in _executed_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if name in modules}
            if any(name not in modules for name in names):
                found.add(module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
    return {name for name in found if name in modules and name != own}


def _import_graph() -> dict[str, set[str]]:
    modules = _module_files()
    return {name: _module_imports(file, modules) for name, file in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """The strongly connected components of more than one module (Tarjan): each as its modules
    and one circle ``a -> b -> ... -> a`` through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(start: str) -> None:  # iterative: no recursion limit on a long chain
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [(sorted(component), _one_circle(graph, component)) for component in components]


def _one_circle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest import path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no circle through {start}")  # pragma: no cover - a component has one


def test_no_import_circle_between_modules() -> None:
    """A module never imports, directly or through others, a module that imports it."""
    circles = _circles(_import_graph())
    assert not circles, "modules that import one another (move the shared part to a lower module, or the " + (
        "caller up): ") + "; ".join(f"{', '.join(members)} (e.g. {' -> '.join(circle)})" for members, circle in circles)


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert _circles(graph) == [(["a", "b", "c"], ["a", "b", "c", "a"])]
