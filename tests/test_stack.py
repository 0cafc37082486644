"""A broken PyTorch install (a CUDA torchvision next to a CPU-only torch, as pip leaves it when
PyTorch's CPU index cannot be reached) is one line with the fix at start-up, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.core import stack
from edgekd.core.errors import EdgekdError

REPO = Path(__file__).resolve().parents[1]

#: What importing a CUDA torchvision next to a CPU-only torch raises.
BROKEN_TORCHVISION = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


def _broken_torchvision(tmp_path: Path) -> Path:
    package = tmp_path / "shadow" / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BROKEN_TORCHVISION)
    return package.parent


def test_compress_on_a_broken_torchvision_is_one_line_with_the_fix(tmp_path: Path) -> None:
    shadow = _broken_torchvision(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    proc = subprocess.run([sys.executable, "-m", "edgekd", "compress", "--out", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "torchvision" in lines[0] and "operator torchvision::nms does not exist" in lines[0]
    assert stack.CPU_FIX in lines[0] or stack.CUDA_FIX in lines[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_torchvision_built_for_another_torch_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision pins the torch release it was built for: a different one is found from the
    packages' metadata, before anything is imported."""
    dist = tmp_path / "torchvision-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.1.0\n"
                                   "Requires-Dist: torch==1.0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EdgekdError, match=r"torchvision 0\.1\.0 was built for torch 1\.0\.0 but torch \S+ is installed"):
        stack.check_stack()


def test_a_sound_install_passes() -> None:
    assert stack.stack_problem() is None
