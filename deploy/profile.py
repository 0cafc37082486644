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

* ONNX Runtime: ``SessionOptions.enable_profiling``; the Chrome-trace JSON it writes has one
  ``cat == "Node"`` event per kernel run (``dur`` in us, ``args.op_name``).
* TensorRT: an ``IProfiler`` subclass receives ``report_layer_time(name, ms)`` for every
  layer of every run; the layer type comes from the engine inspector.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

from deploy import PROFILE_FORMAT
from deploy.bench import run_record
from deploy.errors import DeployError
from deploy.files import read_json
from deploy.backends import get_backend
from deploy.runners import OrtRunner, TrtRunner, backend_for
from deploy.trtapi import import_tensorrt
from deploy.timing import summarize, time_callable

KERNEL_SUFFIX = "_kernel_time"


def parse_ort_trace(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-node median ms (in first-execution order) from ONNX Runtime's profiling trace."""
    times: dict[str, list[float]] = defaultdict(list)
    first: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith(KERNEL_SUFFIX):
            continue
        name = event["name"][: -len(KERNEL_SUFFIX)]
        times[name].append(float(event.get("dur", 0)) / 1000.0)
        first.setdefault(name, event.get("args", {}))
    return [{"name": n, "op_type": str(first[n].get("op_name", "unknown")), "ms": median(v),
             "inputs": _shapes(first[n].get("input_type_shape")),
             "outputs": _shapes(first[n].get("output_type_shape"))} for n, v in times.items()]


def _shapes(entries: Any) -> list[list[int]]:
    """``[{"float": [2, 32, 16, 16]}, ...]`` (ORT's trace) -> ``[[2, 32, 16, 16], ...]``."""
    if not isinstance(entries, list):
        return []
    return [[int(d) for d in next(iter(e.values()), [])] for e in entries if isinstance(e, dict)]


def _profile_ort(model: Path, batch: int, warmup: int, iters: int, provider: str,
                 threads: int) -> tuple[Any, list[dict[str, Any]], list[float]]:
    # end-to-end latency from a session without profiling: the profiler's own overhead would
    # otherwise land in the calibration's per-inference intercept
    timer = OrtRunner(model, provider=provider, threads=threads)
    timer.prepare(timer.random_feed(batch))
    samples = time_callable(timer.run_prepared, warmup=warmup, iters=iters)
    with tempfile.TemporaryDirectory(prefix="deploy-profile-") as tmp:
        runner = OrtRunner(model, provider=provider, threads=threads,
                           profile_prefix=str(Path(tmp) / "ort"))
        runner.prepare(runner.random_feed(batch))
        time_callable(runner.run_prepared, warmup=0, iters=warmup + iters)
        trace = Path(runner.end_profiling())
        events = read_json(trace)
    # drop the warm-up runs: keep each node's last ``iters`` records
    layers_all: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith(KERNEL_SUFFIX):
            layers_all[event["name"]].append(event)
    kept = [e for records in layers_all.values() for e in records[-iters:]]
    kept.sort(key=lambda e: e.get("ts", 0))
    return runner, parse_ort_trace(kept), samples


def _profile_trt(model: Path, batch: int, warmup: int, iters: int
                 ) -> tuple[Any, list[dict[str, Any]], list[float]]:
    trt = import_tensorrt()
    runner = TrtRunner(model, batch=batch)  # closed by profile()
    try:
        runner.prepare(runner.random_feed(batch))
        # end-to-end latency first, without the profiler (an IProfiler slows execution down)
        samples = time_callable(runner.run_prepared, warmup=warmup, iters=iters)

        class LayerTimes(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.times: dict[str, list[float]] = defaultdict(list)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.times[layer_name].append(float(ms))

        profiler = LayerTimes()
        runner.context.profiler = profiler
        time_callable(runner.run_prepared, warmup=0, iters=iters)  # layer times only
        types = runner.layer_types()
        layers = [{"name": name, "op_type": types.get(name, "unknown"), "ms": median(values)}
                  for name, values in profiler.times.items()]
    except BaseException:
        runner.close()
        raise
    return runner, layers, samples


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
