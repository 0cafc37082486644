"""Host latency measurement through the deploy kit, in a subprocess.

:func:`measure_onnx` runs ``python -m deploy bench`` (the project's one timing routine, the
same code a Jetson runs) in a fresh interpreter, so the figure is not disturbed by the
parent's torch threads or memory, and host and device numbers come from the same code path.
It returns the Measurement dict that the kit wrote (see deploy/bench.py and DESIGN.md).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.fileio import read_json

LATENCY_KEYS = ("mean", "median", "p90", "p99", "min", "std")


def _deploy_root() -> Path:
    """The folder that contains the ``deploy`` package (found without importing it)."""
    spec = importlib.util.find_spec("deploy")
    if spec is None or not spec.submodule_search_locations:
        raise EdgekdError("the deploy kit is not installed: reinstall edgekd (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))).parent


def run_deploy(args: list[str], *, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """``python -m deploy ARGS`` in a subprocess; its one-line error becomes an EdgekdError."""
    env = dict(os.environ)
    root = str(_deploy_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "deploy", *args], capture_output=True,
                              text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EdgekdError(f"'python -m deploy {args[0]}' took longer than {timeout:.0f} s: "
                          "lower --iters or check the machine's load") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise EdgekdError(last.removeprefix("error: "))
    return proc


def measure_onnx(onnx_path: str | Path, *, batch: int = 1, backend: str = "ort", warmup: int = 10,
                 iters: int = 50, out: Path | None = None, provider: str = "cpu",
                 threads: int = 0, timeout: float = 600.0) -> dict[str, Any]:
    """Measure ``onnx_path`` (or an engine with ``backend="trt"``) with ``python -m deploy
    bench`` and return its Measurement dict; the JSON is kept at ``out`` when given."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EdgekdError(f"model file '{onnx_path}' not found: check the path")
    with tempfile.TemporaryDirectory(prefix="edgekd-measure-") as tmp:
        target = Path(out) if out is not None else Path(tmp) / "measurement.json"
        run_deploy(["bench", str(onnx_path), "--backend", backend, "--batch", str(batch),
                    "--warmup", str(warmup), "--iters", str(iters), "--provider", provider,
                    "--threads", str(threads), "--out", str(target)], timeout=timeout)
        return read_json(target)


def measurement_rows(measurement: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows for printing a Measurement."""
    latency = measurement["latency_ms"]
    rows = [("model", measurement["model"]), ("sha256", measurement["sha256"][:16]),
            ("backend", f"{measurement['backend']} ({measurement.get('provider', '')})"),
            ("precision", measurement["precision"]), ("batch", str(measurement["batch"])),
            ("device", measurement["device"]),
            ("iterations", f"{measurement['iterations']} (+{measurement['warmup']} warm-up)")]
    rows += [(f"latency {key} (ms)", f"{latency[key]:.4f}") for key in LATENCY_KEYS]
    rows.append(("throughput (samples/s)", f"{measurement['throughput']:.1f}"))
    return rows
