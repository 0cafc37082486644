"""Atomic writes: a file written through edgekd.core.fileio or the deploy kit gets the mode a plain
``open()`` gives it (0666 minus the umask), not mkstemp's 0600 (issue 15, item 4)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgekd_deploy.files import write_bytes_atomic, write_json
from edgekd.core.fileio import atomic_torch_save, atomic_write_bytes, atomic_write_json, write_jsonl


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = 0o666 & ~umask
    assert _mode(plain) == expected
    written = [atomic_write_bytes(tmp_path / "a.bin", b"x"),
               atomic_write_json(tmp_path / "b.json", {"a": 1}),
               write_jsonl(tmp_path / "c.jsonl", [{"a": 1}]),
               atomic_torch_save(tmp_path / "d.pt", {"a": 1}),
               write_bytes_atomic(tmp_path / "e.bin", b"x"),
               write_json(tmp_path / "f.json", {"a": 1})]
    for path in written:
        assert _mode(path) == expected, f"{path.name}: {oct(_mode(path))}"
    # overwriting keeps following the umask, and leaves no temporary file behind
    atomic_write_bytes(tmp_path / "a.bin", b"y")
    assert _mode(tmp_path / "a.bin") == expected
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
