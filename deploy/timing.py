"""The one timing routine of edgekd (host and device both measure through it).

``time_callable`` runs ``warmup`` untimed calls, then ``iters`` timed calls of a function that
returns only when its work is finished (ONNX Runtime's ``run`` is synchronous; the TensorRT
runner synchronises its CUDA stream before returning), reading ``time.perf_counter_ns`` around
each call. :func:`summarize` turns the samples into robust statistics: median and
percentiles (linear interpolation, as ``numpy.percentile``) are insensitive to the few
outliers that a shared or thermally throttled machine produces; mean and std are kept for
completeness; ``mad`` is the median absolute deviation from the median.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_callable(fn: Callable[[], object], *, warmup: int = 10, iters: int = 50) -> list[float]:
    """Latency samples in milliseconds of ``iters`` synchronous calls of ``fn`` after
    ``warmup`` untimed calls (which let allocators, caches, cuDNN/TensorRT tactics and CPU
    frequency settle)."""
    if iters < 1:
        raise ValueError("iters must be >= 1")
    for _ in range(max(0, warmup)):
        fn()
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(iters):
        start = clock()
        fn()
        samples.append((clock() - start) / 1e6)
    return samples


def time_for(fn: Callable[[], object], *, seconds: float, min_iters: int = 1) -> list[float]:
    """Latency samples in milliseconds of synchronous calls of ``fn`` (no warm-up), repeated
    until at least ``seconds`` of timed calls and ``min_iters`` calls have accumulated: a
    fixed time, not a fixed count, so a 20 us model gets as steady a figure as a 2 ms one."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    spent = 0
    while spent < seconds * 1e9 or len(samples) < min_iters:
        start = clock()
        fn()
        took = clock() - start
        spent += took
        samples.append(took / 1e6)
    return samples


def summarize(samples_ms: list[float], batch: int) -> tuple[dict[str, float], float]:
    """``(latency_ms, throughput)``: latency statistics in ms and throughput in samples/s
    (``batch / median latency``)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    median = float(np.median(values))
    latency = {
        "mean": float(values.mean()),
        "median": median,
        "p25": float(np.percentile(values, 25)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "min": float(values.min()),
        "max": float(values.max()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "mad": float(np.median(np.abs(values - median))),
    }
    throughput = batch * 1000.0 / median if median > 0 else float("inf")
    return latency, throughput
