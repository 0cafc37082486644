"""Downstream code asks the registries; it does not key on a method's or a family's name.

A registered method's name (``"kd"``) or family's (``"residual"``) spelled as a string in the
package outside its registry module means a behaviour that a newly registered method or family
cannot get: the ablation arms, the selection rungs' method, the plot colours, the default
families, the calibration set and the spec options are attributes of the registry entries
(:class:`edgekd.distill.methods.Method`, :class:`edgekd.search.families.Family`). Docstrings are
not scanned. The few justified spellings are listed in ALLOWED with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

from edgekd.distill.methods import METHODS
from edgekd.search.families import family_names

PACKAGE = Path(__file__).resolve().parents[1] / "edgekd"
#: The registry modules: where the entries (and their drivers) are defined.
REGISTRIES = {"distill/methods.py", "distill/method_catalog.py", "search/families.py",
              "search/reference.py"}
#: (module, name): why it may be spelled there.
ALLOWED = {
    ("distill/ban.py", "ban"): "the ban method's own driver (its result and metrics)",
    ("distill/ban.py", "kd"): "born-again generations are kd runs by definition (Furlanello et al.)",
    ("distill/ban.py", "scratch"): "the first born-again generation trains from labels",
    ("distill/builtin_teacher.py", "scratch"): "the built-in teacher learns from labels alone",
    ("distill/config.py", "fitnet"): "TrainConfig's default method, the one place it lives",
    ("run/config.py", "fitnet"): "CompressConfig's default method, the one place it lives",
    ("distill/objectives.py", "kd"): "the name of a loss part in the metrics, not a method key",
    ("distill/objectives.py", "lskd"): "the name of a loss part in the metrics, not a method key",
    ("distill/objectives.py", "mimic"): "the name of a loss part in the metrics, not a method key",
    ("distill/feature_objectives.py", "at"): "the name of a loss part in the metrics",
    ("report/plots.py", "reference"): "the outcome role of reference students, not the family",
    ("report/references.py", "reference"): "the outcome role of reference students",
    ("run/references.py", "reference"): "the outcome role and the candidate key of reference students",
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant):
            found.add(id(node.body[0].value))
    return found


def _spelled(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in names and id(node) not in skip]


def test_the_scan_finds_a_spelled_name() -> None:
    tree = ast.parse('"""kd in a docstring"""\nARMS = ("scratch", "kd")\n')
    assert _spelled(tree, {"kd", "scratch"}) == [(2, "scratch"), (2, "kd")]


def test_no_module_keys_on_a_registered_name() -> None:
    names = set(METHODS) | set(family_names())
    assert {"fitnet", "kd", "scratch", "plain", "residual", "repvgg"} <= names
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module in REGISTRIES:
            continue
        for line, name in _spelled(ast.parse(path.read_text(encoding="utf-8")), names):
            if (module, name) not in ALLOWED:
                offenders.append(f"edgekd/{module}:{line} spells {name!r}")
    assert not offenders, "ask the registry entry instead:\n" + "\n".join(offenders)


def test_every_allowance_is_still_needed() -> None:
    names = set(METHODS) | set(family_names())
    used = set()
    for module, name in ALLOWED:
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        if any(found == name for _, found in _spelled(tree, names)):
            used.add((module, name))
    assert used == set(ALLOWED), f"drop these from ALLOWED: {sorted(set(ALLOWED) - used)}"
