"""The report's INT8 rows, as data: the Q/DQ copy ``edgekd export RUN --int8`` records in
RUN/export/ (``ID.int8.onnx`` + ``ID.int8.json``, see :mod:`edgekd.ship.int8`; ``edgekd compress``
makes one for every finalist when the target runs TensorRT), the summary's entry under its FP32
student with the host ONNX Runtime accuracy of both on the same test images and the
INT8-minus-FP32 delta in points (:func:`edgekd.report.tables.int8_row` draws it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd.report.measured import model_latency, model_size_mb
from edgekd.report.tables import _speed


def int8_entry(onnx: Path, measured: dict[str, dict[str, dict]], target_is_host: bool,
               teacher_latency: dict[str, dict | None]) -> dict[str, Any] | None:
    """The INT8 (Q/DQ) copy made by ``edgekd export RUN --int8``: its host ONNX Runtime accuracy
    next to the FP32 ONNX's on the same images, size, and latency when a measurement of it exists."""
    from edgekd.ship.int8 import recorded_int8

    found = recorded_int8(onnx)
    if found is None:
        return None
    path, record = found
    check = record["check"]
    latency = model_latency(path, measured, None, target_is_host)
    return {"onnx": path.name, "accuracy": float(check["accuracy"]),
            "fp32_onnx_accuracy": float(check["fp32_accuracy"]), "samples": int(check["samples"]),
            "delta_points": round(100 * (float(check["accuracy"]) - float(check["fp32_accuracy"])), 2),
            "top1_agreement": float(check["top1_agreement"]), "size_mb": model_size_mb(path, None),
            "latency": latency, **_speed(latency, teacher_latency)}


