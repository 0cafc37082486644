"""``edgekd export --int8``: the explicit Q/DQ INT8 copy of an export, with its host accuracy.

The quantizer is the deploy kit's (:func:`deploy.quantize.quantize_qdq`: QDQ format, signed
int8, symmetric, per-channel weight scales, MinMax calibration), the same one
:mod:`edgekd.ship.bundle` uses for int8 profiles. Calibration uses the run's training images;
both models are then run by ONNX Runtime (CPU) on the same test images
(:func:`edgekd.ship.fp16.compare_precision`: top-1 accuracy of each and their agreement).
The figures are recorded next to the model in ``ID.int8.json`` (the sidecar ``edgekd report``
reads to show the INT8 row next to the FP32 one). Unlike FP16, INT8 is never refused here:
the drop is measured and reported, the user decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, read_json, sha256_file

if TYPE_CHECKING:
    from edgekd.inputs.data import ImageDataset, Normalization

SIDECAR_FORMAT = "edgekd.int8/1"
CALIB_SAMPLES = 512
VAL_SAMPLES = 1000


def quantize_int8(onnx_path: Path, out_path: Path, calib: np.ndarray,
                  norm_pair: tuple[list[float], list[float]]) -> Path:
    """The deploy kit's Q/DQ quantizer, its failures as one-line EdgekdErrors."""
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.quantize import quantize_qdq

    try:
        return quantize_qdq(onnx_path, calib, out_path, normalization=norm_pair)
    except DeployError as error:
        raise EdgekdError(str(error)) from None


def sidecar_path(int8_onnx: Path) -> Path:
    return int8_onnx.with_suffix(".json")


def export_int8(onnx_path: Path, dataset: ImageDataset, norm: Normalization, *, calib_samples: int = CALIB_SAMPLES,
                val_samples: int = VAL_SAMPLES) -> dict[str, Any]:
    """Write ``ID.int8.onnx`` beside ``onnx_path`` (``ID.onnx``) and its sidecar ``ID.int8.json``;
    returns the sidecar's content (``check``: the PrecisionCheck of INT8 vs FP32)."""
    from edgekd_deploy.check import prepare_inputs
    from edgekd.ship.export import onnx_logits
    from edgekd.ship.fp16 import compare_precision

    out = onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")
    norm_pair = ([float(v) for v in norm.mean], [float(v) for v in norm.std])
    quantize_int8(onnx_path, out, dataset.x_train[:calib_samples], norm_pair)
    x_val, y_val = dataset.x_test[:val_samples], dataset.y_test[:val_samples]
    x_float = prepare_inputs(x_val, tuple(dataset.input_shape), norm_pair, "the test split")
    check = compare_precision("int8", onnx_logits(onnx_path, x_float),
                              onnx_logits(out, x_float), np.asarray(y_val))
    record = {"format": SIDECAR_FORMAT, "onnx": out.name, "onnx_sha256": sha256_file(out),
              "source": onnx_path.name, "source_sha256": sha256_file(onnx_path),
              "calibration_images": int(min(calib_samples, len(dataset.x_train))),
              "backend": "onnxruntime-cpu", "check": check.to_dict(), "line": check.line()}
    atomic_write_json(sidecar_path(out), record)
    return record


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar at ``path``, or None when absent; a damaged one is one line naming it."""
    if not path.is_file():
        return None
    try:
        record = read_json(path)
        check = record["check"]
        float(check["accuracy"]), float(check["fp32_accuracy"]), int(check["samples"])
        if record.get("format") != SIDECAR_FORMAT:
            raise ValueError
    except (EdgekdError, KeyError, TypeError, ValueError):
        raise EdgekdError(f"{path} is not an {SIDECAR_FORMAT} sidecar: remove it, or make it "
                          "again with 'edgekd export RUN --int8'") from None
    return record


def recorded_int8(fp32_onnx: Path) -> tuple[Path, dict[str, Any]] | None:
    """The INT8 copy recorded beside ``fp32_onnx`` (``ID.int8.onnx`` + ``ID.int8.json``) and its
    sidecar, or None when there is none or it was made from another FP32 file (stale)."""
    int8_onnx = fp32_onnx.with_name(f"{fp32_onnx.stem}.int8.onnx")
    record = read_sidecar(sidecar_path(int8_onnx))
    if record is None or not int8_onnx.is_file() or not fp32_onnx.is_file():
        return None
    if sha256_file(fp32_onnx) != record.get("source_sha256"):
        return None
    return int8_onnx, record
