"""The import layers of issue 10, checked by reading every module's imports with ``ast``.

Layer order (a package may import only itself and the packages to its left):

    core <- inputs <- search <- distill <- ship <- report <- run <- cli

``deploy/`` is independent: it imports neither torch nor edgekd. Imports inside functions and
under ``TYPE_CHECKING`` count too. The known exceptions are listed below, each marked with a
``# layering: known exception`` comment at the import; the test fails when a new one appears and
when a listed one is gone (so that the list only shrinks).
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

#: (importing module, imported module) pairs that break the order today. issue 10 removes them.
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


#: The modules that may print (issue 10.6): the CLI, and the two progress modules.
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
