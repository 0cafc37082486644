"""Per-layer times from each runtime's own profiler, for ``python -m deploy profile``.

* ONNX Runtime: ``SessionOptions.enable_profiling``; the Chrome-trace JSON it writes has one
  ``cat == "Node"`` event per kernel run (``dur`` in us, ``args.op_name``).
* TensorRT: an ``IProfiler`` subclass receives ``report_layer_time(name, ms)`` for every
  layer of every run; the layer type comes from the engine inspector.

Each profiler returns ``(runner, layers, samples)``: the open runner (the caller closes it), the
layers in execution order with their median ms, and the end-to-end times of runs made without
the profiler (its own overhead would otherwise count as the runtime's).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

from .files import read_json
from .runners import OrtRunner, TrtRunner
from .timing import time_callable
from .trtapi import import_tensorrt

__all__ = ["parse_ort_trace", "profile_ort", "profile_trt"]


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


def profile_ort(model: Path, batch: int, warmup: int, iters: int, provider: str,
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


def profile_trt(model: Path, batch: int, warmup: int, iters: int
                ) -> tuple[Any, list[dict[str, Any]], list[float]]:
    trt = import_tensorrt()
    runner = TrtRunner(model, batch=batch)  # closed by the caller (deploy.profile.profile)
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
