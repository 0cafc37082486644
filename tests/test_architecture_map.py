"""docs/architecture.md is the map of the tree: its Modules section lists every module of the
package and of the deploy kit (no more, no fewer), and every file path it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
#: a cited repository path: `edgekd/...`, `deploy/...`, `tests/...`, `benchmarks/...`, `docs/...`, `profiles/...`
CITED_PATH = re.compile(r"`((?:edgekd|deploy|tests|benchmarks|docs|profiles)/[\w./-]*\.(?:py|md|toml|json))`")


def _modules_in_tree() -> set[str]:
    files = [*(REPO / "edgekd").rglob("*.py"), *(REPO / "deploy").rglob("*.py")]
    return {f.relative_to(REPO).as_posix() for f in files if f.name != "__init__.py"}


def _modules_in_map(text: str) -> set[str]:
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", section, flags=re.MULTILINE))


def test_the_module_table_matches_the_tree() -> None:
    in_map = _modules_in_map(ARCHITECTURE.read_text(encoding="utf-8"))
    in_tree = _modules_in_tree()
    assert in_tree - in_map == set(), "modules missing from docs/architecture.md's Modules section"
    assert in_map - in_tree == set(), "docs/architecture.md lists modules that do not exist"


def test_every_cited_path_exists() -> None:
    cited = set(CITED_PATH.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    assert cited, "the map cites no file: the pattern no longer matches its format"
    missing = sorted(path for path in cited if not (REPO / path).exists())
    assert missing == []


def test_the_package_cites_no_file_outside_the_repository() -> None:
    """The design notes (DESIGN.md) are not in the repository: code must not send a reader there."""
    offenders = [f.relative_to(REPO).as_posix()
                 for f in [*(REPO / "edgekd").rglob("*.py"), *(REPO / "deploy").rglob("*.py")]
                 if "DESIGN.md" in f.read_text(encoding="utf-8")]
    assert offenders == []
