"""One way to print numbers, for the CLI, the report and the deploy kit: percent, ms,
significant and rate are the kit's (``deploy/fmt.py``, which may not depend on edgekd), reused
here; the rest are edgekd's own.

Rules, so one figure reads the same wherever it is printed:

* accuracy: a percentage with 2 decimals, ``97.20%`` (a test set of 2,000 images moves in
  steps of 0.05 points, so 2 decimals lose nothing);
* latency: milliseconds with 3 decimals below 100 ms (``0.032 ms``: microsecond resolution,
  which is what a timer of this kind resolves), 1 decimal above;
* throughput (FPS, samples/s): 3 significant digits with thousands separators
  (``30,900``): it is ``1000 * batch / latency_ms`` and the latency itself has about 3
  significant digits, so more digits would be noise;
* speed-up: 2 decimals and ``x`` (``2.86x``);
* accuracy gap to the teacher: percentage points with 2 decimals, ``(1.35 points below the teacher)``;
* sizes: MB = 10^6 bytes, 3 decimals (``0.051 MB``);
* counts (MACs, parameters): K/M/G with one decimal (:func:`edgekd.core.units.format_count`);
* stored floats (summary.json): :func:`clean` rounds away float32 noise
  (0.39899998903274536 -> 0.399), to 7 significant digits.
"""

from __future__ import annotations

from typing import Any

from edgekd_deploy.fmt import MISSING, ms, percent, rate, significant  # the one implementation
from edgekd.core.units import format_count

__all__ = ["MISSING", "percent", "ms", "significant", "rate", "fps", "speedup", "size_mb", "count",
           "clean", "epoch_line", "gap_points"]


def fps(latency_ms: float | None, batch: int = 1) -> str:
    """Images per second of a batch taking ``latency_ms``: ``1000 * batch / latency_ms``."""
    if not latency_ms:
        return MISSING
    return rate(1000.0 * batch / float(latency_ms))


def speedup(value: float | None) -> str:
    return MISSING if value is None else f"{float(value):.2f}x"


def size_mb(value: float | None) -> str:
    """A size already in MB (10^6 bytes): ``0.0512 -> "0.051"``."""
    return MISSING if value is None else f"{float(value):.3f}"


def count(value: int | None) -> str:
    """MACs and parameters: ``462300 -> "462.3K"``."""
    return MISSING if value is None else format_count(int(value))


def clean(value: Any, digits: int = 7) -> Any:
    """``value`` with every float (in dicts and lists too) rounded to ``digits`` significant
    digits: float32 carries about 7, so JSON written from float32 results loses its noise
    (0.39899998903274536 -> 0.399) and small values (latencies of 0.02 ms) keep their precision."""
    if isinstance(value, float):
        return significant(value, digits)
    if isinstance(value, dict):
        return {k: clean(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, digits) for v in value]
    return value


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One line per trained epoch, for logs and pipes, e.g.
    ``epoch 3/10 (kd): loss 0.512, train 95.10%, val 97.20%, 12.3 s``."""
    parts = [f"loss {record['loss']:.4g}"]
    if record.get("train_acc") is not None:
        parts.append(f"train {percent(record['train_acc'])}")
    if record.get("val_acc") is not None and record["val_acc"] == record["val_acc"]:  # not nan
        parts.append(f"val {percent(record['val_acc'])}")
    parts.append(f"{record.get('seconds', 0):.1f} s")
    return f"epoch {record['epoch']}/{epochs} ({record.get('stage', 'train')}): {', '.join(parts)}"


def gap_points(teacher_acc: float | None, student_acc: float | None) -> str:
    """`` (1.35 points below the teacher)``: the top-1 gap a user trades for the speed-up,
    ``100 * (teacher - student)`` percentage points on the same test images; empty when either
    accuracy is unknown."""
    if teacher_acc is None or student_acc is None:
        return ""
    points = round(100 * (teacher_acc - student_acc), 2)
    if points == 0:
        return " (the teacher's accuracy)"
    return f" ({abs(points):.2f} points {'below' if points > 0 else 'above'} the teacher)"
