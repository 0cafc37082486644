"""benchmarks/results/README.md names every results file, and names no file that is gone.

A row's first cell names one file (``name.md``) or a file and its siblings of the same stem
(``name.md, .json``); the headline file of a study is in bold.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _named_files(index: str) -> set[str]:
    named: set[str] = set()
    for line in index.splitlines():
        if not line.startswith("|"):
            continue
        first = line.split("|")[1].replace("*", "").strip()
        if first in ("file", "---") or not first:
            continue
        parts = [part.strip() for part in first.split(",")]
        stem = Path(parts[0]).stem
        named.add(parts[0])
        named |= {stem + part for part in parts[1:] if part.startswith(".")}
    return named


def test_every_results_file_is_in_the_index() -> None:
    named = _named_files((RESULTS / "README.md").read_text(encoding="utf-8"))
    present = {p.name for p in RESULTS.iterdir() if p.is_file() and p.name != "README.md"}
    assert present - named == set(), "results files missing from benchmarks/results/README.md"
    assert named - present == set(), "benchmarks/results/README.md names files that do not exist"


def test_the_index_parser_reads_sibling_suffixes() -> None:
    rows = "| file | what |\n|---|---|\n| **a.md**, .json | x |\n| b.json | y |\n"
    assert _named_files(rows) == {"a.md", "a.json", "b.json"}
