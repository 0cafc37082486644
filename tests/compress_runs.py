"""Tiny real inputs for the ``edgekd compress`` tests, and one reference run per test session.

The data is a slice of the shipped MNIST subset (real images), the teacher the built-in CNN
trained for two epochs on it (a real, if weak, teacher), the budget the host-cpu profile's
latency with a MACs cap that leaves a few dozen students. Training runs on a few hundred
samples for 1-2 epochs: small, but every stage runs for real.

The reference run (:func:`reference_run`) is made once per pytest process and shared by
test_compress.py, test_resume.py, test_ray_executor.py, test_report.py and
test_report_html.py (each copies it before changing anything).

Every trial trains with ONE torch thread (``--threads-per-trial 1``), as a Ray trial on one CPU
does: a trial's numbers depend slightly on its thread count, and the Ray test compares winners.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.fileio import read_json

REPO = Path(__file__).resolve().parents[1]
#: The tiny search: 3 shortlisted students, rungs (3 x 2 epochs, kd) then (1 x 3 epochs, the default
#: method fitnet, fresh);
#: one finalist and no augmentation keep it short (the defaults are 2 finalists and auto).
TINY = ["--candidates", "3", "--epochs", "3", "--eta", "3", "--max-train-samples", "1000",
        "--batch-size", "32", "--max-macs", "500K", "--measure-iters", "20", "--seed", "0",
        "--threads-per-trial", "1", "--finalists", "1", "--min-epochs", "2", "--augment", "none"]
TEACHER_EPOCHS = 2
_MEMO: dict[str, Path] = {}


def tiny_inputs(base: Path) -> tuple[Path, Path]:
    """``(data.npz, teacher.pt)`` under ``base`` (made once per folder)."""
    data_path, teacher_path = base / "tiny.npz", base / "teacher.pt"
    if data_path.exists() and teacher_path.exists():
        return data_path, teacher_path
    from edgekd.inputs.loaders import load_dataset
    from edgekd.distill.builtin_teacher import TeacherRecipe, builtin_teacher, builtin_teacher_path

    full = load_dataset(None)
    np.savez(data_path, x_train=full.x_train[:2000], y_train=full.y_train[:2000],
             x_test=full.x_test[:500], y_test=full.y_test[:500],
             classes=np.array(full.classes))
    tiny = load_dataset(str(data_path))
    builtin_teacher(tiny, cache_dir=base / "cache", epochs=TEACHER_EPOCHS, progress=False)
    cached = builtin_teacher_path(tiny, TeacherRecipe(epochs=TEACHER_EPOCHS), cache_dir=base / "cache")
    shutil.copyfile(cached, teacher_path)
    return data_path, teacher_path


def compress_args(data: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return ["compress", "--data", str(data), "--teacher", str(teacher), "--out", str(out),
            *TINY, *extra]


def cli_env(base: Path) -> dict[str, str]:
    """The environment of a compress subprocess: its own cache folder, 2 threads at most, and
    this checkout first on the import path (the code under test, not whichever edgekd is installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["EDGEKD_CACHE_DIR"] = str(base / "cache")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_cli(args: list[str], base: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], cwd=base, env=cli_env(base),
                          capture_output=True, text=True, timeout=timeout)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], poll_s: float = 0.05,
              timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (a crash at that point of the run); fails
    when the process finished before it could be killed."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                break
            time.sleep(poll_s)
        assert proc.poll() is None, "compress finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def shared_base(factory) -> Path:
    """One folder per pytest process holding the tiny inputs and the teacher cache."""
    if "base" not in _MEMO:
        _MEMO["base"] = factory.mktemp("compress")
        tiny_inputs(_MEMO["base"])
    return _MEMO["base"]


def reference_run(factory) -> Path:
    """The uninterrupted tiny run (local executor), made once per pytest process."""
    if "ref" not in _MEMO:
        base = shared_base(factory)
        data, teacher = tiny_inputs(base)
        out = base / "runs" / "ref"
        proc = run_cli(compress_args(data, teacher, out, "--baselines"), base)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (base / "stdout.txt").write_text(proc.stdout)
        (base / "stderr.txt").write_text(proc.stderr)
        _MEMO["ref"] = out
    return _MEMO["ref"]


def summary_of(run: Path) -> dict:
    return read_json(run / "report" / "summary.json")


#: Keys whose values depend on the clock or the machine's load (the Pareto front too: it
#: is taken over measured latencies); :func:`deterministic_view` drops them so two runs with
#: the same seed on CPU compare equal.
VOLATILE_KEYS = frozenset({"latency", "fps", "speedup", "speedup_spread", "pareto", "timing", "seconds",
                           "job_seconds", "created", "measurement_files"})


def deterministic_view(summary: dict) -> Any:
    """The summary without clock- and load-dependent values (latency, FPS, speed-up, the
    Pareto flags, seconds, timestamps): what two runs with the same seed on CPU must agree on."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    view = strip(summary)
    view["run"].pop("command", None)
    return view
