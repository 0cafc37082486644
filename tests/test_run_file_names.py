"""The run folder's names are spelled once, in edgekd/core/runfolder.py.

Every other module reaches a run file through ``RunDir`` or the name constants
(``RESULT_JSON``, ``TRIALS_DIR``, ...), so renaming a file or reading it with validation is a
change in one place. The scan reads each module's string constants: a run file's name
(``"result.json"``) anywhere, or a run folder's name joined to a path (``root / "trials"``),
outside runfolder.py fails. The deploy kit (deploy/) is not scanned: it is torch-free and never
imports edgekd, and names no run file.
"""

from __future__ import annotations

import ast
from pathlib import Path

from edgekd.core import runfolder

PACKAGE = Path(__file__).resolve().parents[1] / "edgekd"
OWNER = PACKAGE / "core" / "runfolder.py"
_FILE_SUFFIXES = ("_JSON", "_JSONL", "_PT", "_MD", "_HTML", "_FILE")


def _names(suffixes: tuple[str, ...]) -> set[str]:
    return {value for name, value in vars(runfolder).items()
            if name.isupper() and name.endswith(suffixes) and isinstance(value, str)}


FILE_NAMES = _names(_FILE_SUFFIXES)
FOLDER_NAMES = _names(("_DIR",))


def _spelled(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in FILE_NAMES:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in FOLDER_NAMES:
                    found.append((side.lineno, side.value))
    return found


def test_the_names_are_known() -> None:
    assert {"result.json", "summary.json", "run.json", "outcome.json", "candidates.jsonl",
            "teacher.json", "checkpoint.pt", ".lock"} <= FILE_NAMES
    assert {"trials", "export", "measurements", "report", "bundle", "supernet"} <= FOLDER_NAMES


def test_the_scan_finds_a_spelled_name() -> None:
    tree = ast.parse('x = run.root / "trials" / tid / "result.json"\ny = "trials"\n')
    assert sorted(_spelled(tree)) == [(1, "result.json"), (1, "trials")]


def test_no_module_but_the_owner_spells_a_run_file_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == OWNER:
            continue
        for line, name in _spelled(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} spells {name!r}")
    assert not offenders, "use the constants or RunDir of edgekd/core/runfolder.py:\n" + \
        "\n".join(offenders)
