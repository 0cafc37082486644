"""``python -m deploy bench``: latency of one model on this machine -> the Measurement JSON.

The Measurement holds the model file and its sha256, backend, provider,
precision, batch, device name, runtime versions, warm-up and iteration counts, latency
statistics in ms (mean, median, p90, p99, min, max, std, mad; see deploy.timing),
throughput in samples/s (batch / median) and when it was taken.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from . import onnxmeta
from .backends import get_backend, open_runner
from .files import sha256_file
from .fmt import ms, rate
from .timing import summarize, time_callable, time_for

from . import MEASUREMENT_FORMAT


def model_fields(runner: Any) -> dict[str, Any]:
    """The fields that identify the measured model in a Measurement or a profile. ``sha256``
    is the ONNX file's: for an engine, the one ``deploy build`` was given (recorded in its
    ``.engine.json``), so device figures map back onto the host's export."""
    own_sha = sha256_file(runner.path)
    info = getattr(runner, "info", {})  # a TensorRT engine's .engine.json
    return {
        "model": runner.path.name,
        "model_path": str(runner.path.resolve()),
        # an engine is identified by the ONNX file it was built from (what the host exported)
        "sha256": info.get("onnx_sha256") or runner.metadata.get("edgekd.source_sha256") or own_sha,
        "file_sha256": own_sha,
        "model_id": runner.metadata.get(onnxmeta.ID),
        "profile": runner.metadata.get(onnxmeta.PROFILE),
        "input_shape": list(runner.sample_shape),
    }


def bench(model: str | Path, *, backend: str | None = None, batch: int = 1, warmup: int = 10,
          iters: int = 50, provider: str = "cpu", threads: int = 0) -> dict[str, Any]:
    """Measure ``model`` and return the Measurement dict (see the module docstring)."""
    with open_runner(model, backend, provider=provider, threads=threads, batch=batch) as runner:
        runner.prepare(runner.random_feed(batch))
        samples = time_callable(runner.run_prepared, warmup=warmup, iters=iters)
        latency, throughput = summarize(samples, batch)
        return {
            **run_record(MEASUREMENT_FORMAT, runner, batch=batch, warmup=warmup, iters=iters),
            "latency_ms": latency,
            "throughput": throughput,
            "statistic": "median",
            "timing": get_backend(runner.backend).timing,
        }


def bench_interleaved(models: list[str | Path], *, backend: str | None = None, batch: int = 1,
                      warmup: int = 10, min_seconds: float = 0.5, rounds: int = 5,
                      provider: str = "cpu", threads: int = 1,
                      spinning: bool = False, min_iters: int = 0) -> list[dict[str, Any]]:
    """Measure several models under one protocol and return one Measurement each.

    Every model is opened (``threads`` intra-op threads, spinning off by default) and warmed
    up and run for one untimed round (without it the first timed round ran slower than the
    others); then, ``rounds`` times, each model in turn is timed for ``min_seconds / rounds``
    seconds, so slow drifts of a shared machine (other jobs, clock changes) hit every model
    alike instead of whichever was timed during the disturbance. Each model is timed for at
    least ``min_seconds`` in total (and for at least ``min_iters`` runs, 3 per round at
    least). The Measurement reports median and p25 and names the statistic to use
    (``"statistic": "median"``) and the protocol; ``round_ms`` holds the median latency of
    each round, and ``protocol.session`` is shared by the models timed together, so a ratio
    of two of them can be taken round by round (its spread over the rounds is how far a
    speed-up repeats).

    With one intra-op thread on the CPU provider, ONNX Runtime computes in the calling thread,
    so the thread's CPU time per run (``time.thread_time_ns`` around each model's turn in a
    round, divided by its runs) is the run's latency without the time other processes held
    the core: ``cpu_ms`` (median and min over the rounds) is recorded next to the wall-clock
    figures. On a loaded shared machine it is the steadier estimate of the idle latency (at
    load 12 on 2 cores a batch-32 run's wall-clock minimum was 5.7x its CPU time; on an idle
    core the two agree within a few %); cache and memory-bandwidth contention still show.
    """
    if rounds < 1 or min_seconds < 0:
        raise ValueError("rounds must be >= 1 and min_seconds >= 0")
    with contextlib.ExitStack() as stack:
        runners = [stack.enter_context(open_runner(m, backend, provider=provider, threads=threads,
                                                   batch=batch, spinning=spinning)) for m in models]
        return _interleave(runners, batch=batch, warmup=warmup, min_seconds=min_seconds,
                           rounds=rounds, threads=threads, spinning=spinning,
                           per_round=max(3, -(-min_iters // rounds)))


def _interleave(runners: list[Any], *, batch: int, warmup: int, min_seconds: float, rounds: int,
                threads: int, spinning: bool, per_round: int = 3) -> list[dict[str, Any]]:
    """The timing loop of :func:`bench_interleaved` over open runners."""
    for runner in runners:
        runner.prepare(runner.random_feed(batch))
        time_callable(runner.run_prepared, warmup=warmup, iters=1)
    for runner in runners:  # one untimed round: the first timed round ran slower than the others
        time_for(runner.run_prepared, seconds=min_seconds / rounds, min_iters=per_round)
    samples: list[list[float]] = [[] for _ in runners]
    cpu: list[list[float]] = [[] for _ in runners]  # per round: thread CPU ms per run
    per_round_ms: list[list[float]] = [[] for _ in runners]  # per round: median wall-clock ms
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            start = time.thread_time_ns()
            taken = time_for(runner.run_prepared, seconds=min_seconds / rounds, min_iters=per_round)
            cpu[i].append((time.thread_time_ns() - start) / 1e6 / len(taken))
            per_round_ms[i].append(float(statistics.median(taken)))
            samples[i] += taken
    protocol = {"min_seconds": min_seconds, "rounds": rounds, "threads": threads,
                "spinning": spinning, "interleaved_with": len(runners), "warm_round": True,
                "session": uuid.uuid4().hex[:16]}
    results = []
    for runner, times, cpu_times, round_ms in zip(runners, samples, cpu, per_round_ms):
        latency, throughput = summarize(times, batch)
        results.append({
            **run_record(MEASUREMENT_FORMAT, runner, batch=batch, warmup=warmup, iters=len(times)),
            "latency_ms": latency, "throughput": throughput, "statistic": "median",
            "protocol": protocol, "round_ms": round_ms,
            "timing": "perf_counter around each synchronous run, rounds interleaved across models"})
        if threads == 1 and runner.backend == "ort" and getattr(runner, "provider", "") == "cpu":
            results[-1]["cpu_ms"] = {"median": float(statistics.median(cpu_times)),
                                     "min": float(min(cpu_times)), "rounds": cpu_times}
    return results


def run_record(record_format: str, runner: Any, *, batch: int, warmup: int, iters: int) -> dict[str, Any]:
    """The fields every timed record shares (Measurement and layer profile): format, the
    model's identity, the runtime and device, the run's settings and when it was taken."""
    return {
        "format": record_format,
        **model_fields(runner),
        **runner.describe(),
        "batch": batch,
        "warmup": warmup,
        "iterations": iters,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def default_out(measurement: dict[str, Any]) -> Path:
    stem = Path(measurement["model"]).stem
    return Path(f"{stem}.{measurement['backend']}.{measurement['precision']}.b{measurement['batch']}.json")


def format_line(m: dict[str, Any]) -> str:
    lat = m["latency_ms"]
    return (f"{m['model']} [{m['backend']} {m['precision']} batch {m['batch']}] on {m['device']}: "
            f"median {ms(lat['median'])} ms, p90 {ms(lat['p90'])}, p99 {ms(lat['p99'])}, "
            f"min {ms(lat['min'])}, mean {ms(lat['mean'])} +- {ms(lat['std'])}; "
            f"{rate(m['throughput'])} samples/s")
