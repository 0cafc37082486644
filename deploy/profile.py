"""``python -m deploy profile``: per-layer times of one model -> the layer-profile JSON.

Format (read by the search's latency calibration)::

    {"format": "edgekd.layer-profile/1", "model", "sha256", "backend", "batch", "device",
     "layers": [{"name", "op_type", "ms"}, ...], "total_ms", "latency_ms", "iterations", ...}

``layers`` are the kernels the runtime actually executes, in execution order (ONNX Runtime
and TensorRT both fuse, e.g. Conv+ReLU is one layer), each with the median over
``iters`` runs of its time in ms (ONNX Runtime also gives each one's ``inputs`` and
``outputs`` shapes, weights included, as its trace records them: edgekd's kernel table
matches the layers to its kernels with them); ``total_ms`` is their sum; ``latency_ms`` is the median
end-to-end time of the same runs (the difference is the runtime's per-inference overhead).

Each backend of :mod:`deploy.backends` names its profiler (ONNX Runtime's and TensorRT's are in
:mod:`deploy.layer_times`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import PROFILE_FORMAT
from .backends import backend_for, get_backend
from .bench import run_record
from .errors import DeployError
from .timing import summarize

def profile(model: str | Path, *, backend: str | None = None, batch: int = 1, warmup: int = 5,
            iters: int = 20, provider: str = "cpu", threads: int = 0) -> dict[str, Any]:
    """Per-layer profile of ``model`` (see the module docstring for the format)."""
    model = Path(model)
    if not model.is_file():
        raise DeployError(f"model file '{model}' not found: check the path")
    entry = get_backend(backend_for(model, backend))
    if entry.profile is None:
        raise DeployError(f"backend '{entry.name}' has no per-layer profiler: use 'deploy bench' for its latency")
    runner, layers, samples = entry.profile(model, batch, warmup, iters, provider, threads)
    with runner:
        if not layers:
            raise DeployError(f"the runtime reported no layer times for '{model.name}': "
                              "profile with more --iters")
        latency, _throughput = summarize(samples, batch)
        return {
            **run_record(PROFILE_FORMAT, runner, batch=batch, warmup=warmup, iters=iters),
            "layers": layers,
            "total_ms": sum(layer["ms"] for layer in layers),
            "latency_ms": latency["median"],
        }


def format_table(result: dict[str, Any], top: int = 15) -> str:
    """The ``top`` slowest layers as a plain-text table."""
    total = result["total_ms"] or 1.0
    rows = sorted(result["layers"], key=lambda layer: -layer["ms"])[:top]
    width = max([len(r["name"]) for r in rows] + [5])
    lines = [f"{result['model']} [{result['backend']} batch {result['batch']}] on {result['device']}: "
             f"layers sum {result['total_ms']:.4f} ms, end-to-end median {result['latency_ms']:.4f} ms",
             f"{'layer':<{width}}  {'op_type':<18} {'ms':>9} {'share':>6}"]
    lines += [f"{r['name']:<{width}}  {r['op_type']:<18} {r['ms']:>9.4f} {100 * r['ms'] / total:>5.1f}%"
              for r in rows]
    return "\n".join(lines)
