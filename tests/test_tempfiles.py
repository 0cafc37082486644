"""A passing pytest run leaves nothing behind in the system temp folder (issue 15, item 10):
pytest keeps the temporary folders of failed tests only (pyproject's
``tmp_path_retention_policy``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SUITE = '''
def test_writes_a_run(tmp_path, tmp_path_factory):
    (tmp_path / "checkpoint.pt").write_bytes(b"x" * 2_000_000)
    (tmp_path_factory.mktemp("shared") / "teacher.pt").write_bytes(b"x" * 2_000_000)
'''


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_passing_tests_leave_no_temporary_files(tmp_path: Path) -> None:
    suite, temp_root = tmp_path / "suite", tmp_path / "temp-root"
    suite.mkdir()
    temp_root.mkdir()
    (suite / "test_writes.py").write_text(SUITE)
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(temp_root)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-c", str(REPO / "pyproject.toml"), "--rootdir", str(suite),
                           str(suite / "test_writes.py")],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _size(temp_root) < 100_000, f"{_size(temp_root)} bytes left in the temp folder"
