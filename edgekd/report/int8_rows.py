"""The report's INT8 rows: the Q/DQ copy ``edgekd export RUN --int8`` records in RUN/export/
(``ID.int8.onnx`` + ``ID.int8.json``, see :mod:`edgekd.ship.int8`; ``edgekd compress`` makes one
for every finalist when the target runs TensorRT), shown under its FP32 student with the host ONNX
Runtime accuracy of both on the same test images and the INT8-minus-FP32 delta in points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.core import fmt


def int8_entry(onnx: Path, measured: dict[str, dict[str, dict]], target_is_host: bool,
               teacher_latency: dict[str, dict | None]) -> dict[str, Any] | None:
    """The INT8 (Q/DQ) copy made by ``edgekd export RUN --int8``: its host ONNX Runtime accuracy
    next to the FP32 ONNX's on the same images, size, and latency when a measurement of it exists."""
    from edgekd.report.report import _model_latency, _size_mb
    from edgekd.report.tables import _speed
    from edgekd.ship.int8 import recorded_int8

    found = recorded_int8(onnx)
    if found is None:
        return None
    path, record = found
    check = record["check"]
    latency = _model_latency(path, measured, None, target_is_host)
    return {"onnx": path.name, "accuracy": float(check["accuracy"]),
            "fp32_onnx_accuracy": float(check["fp32_accuracy"]), "samples": int(check["samples"]),
            "delta_points": round(100 * (float(check["accuracy"]) - float(check["fp32_accuracy"])), 2),
            "top1_agreement": float(check["top1_agreement"]), "size_mb": _size_mb(path, None),
            "latency": latency, **_speed(latency, teacher_latency)}


def int8_row(s: dict) -> list[str]:
    """The INT8 row under its FP32 student's row (accuracy from ONNX Runtime on the host)."""
    from edgekd.report.tables import _latency, family_of

    q = s["int8"]
    delta = q.get("delta_points", round(100 * (q["accuracy"] - q["fp32_onnx_accuracy"]), 2))
    acc = (f"{fmt.percent(q['accuracy'])} (fp32 ONNX {fmt.percent(q['fp32_onnx_accuracy'])}, "
           f"{delta:+.2f} points, {q['samples']} images)")
    return [f"{s['trial']} int8", family_of(s), s["method"], str(s["depth"] or "-"), fmt.count(s["macs"]),
            fmt.count(s["params"]), fmt.size_mb(q["size_mb"]), str(s["epochs"]), "-", acc, "",
            _latency(q["latency"]["host"]), fmt.rate(q["fps"]["host"]),
            fmt.speedup(q["speedup"]["host"]), _latency(q["latency"]["target"]),
            fmt.rate(q["fps"]["target"]), fmt.speedup(q["speedup"]["target"])]
