"""INT8 by explicit quantization: insert QuantizeLinear/DequantizeLinear (Q/DQ) pairs with
scales calibrated on real images, using ONNX Runtime's static quantizer.

Why this route: TensorRT 10 deprecates implicit quantization (``IInt8EntropyCalibrator2``
and friends) in favour of explicit Q/DQ networks, where the scales are part of the ONNX
graph. A Q/DQ model is also an ordinary ONNX model, so the host checks its accuracy with
ONNX Runtime before it reaches the device, and every backend uses the same scales.

The settings follow TensorRT's explicit-quantization rules: QDQ format, signed int8,
symmetric activations and weights (zero point 0), per-channel weight scales, biases left
in float (TensorRT fuses them; an int32-quantized bias is not what its parser expects), and
only the compute-heavy ops quantized (Conv, Gemm, MatMul, and Add for residual joins).
Q/DQ pairs sit on the *inputs* of those ops, never on their outputs (TensorRT's placement
recommendation for explicit quantization: it fuses the next op's input Q back into the
producer, across a ReLU; an output Q/DQ after the last Gemm would round the logits themselves
to 256 levels, which flips the top-1 of close calls for nothing).
Calibration: min/max of the activations over the calibration images.

Needs ``onnxruntime`` and ``onnx`` (the quantizer's own dependency) — on the host always,
on the device only if the model is quantized there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import onnxmeta
from .files import sha256_file
from .check import load_data, normalization_of, prepare_inputs
from .errors import DeployError
from .runners import OrtRunner

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Add"]
DEFAULT_SAMPLES = 512


def quantize_qdq(onnx_path: str | Path, calib: str | Path | np.ndarray, out_path: str | Path, *,
                 normalization: tuple[list[float], list[float]] | None = None,
                 max_samples: int = DEFAULT_SAMPLES) -> Path:
    """Write a Q/DQ INT8 copy of ``onnx_path`` to ``out_path``, calibrated on ``calib`` (an
    .npz with uint8 images ``x``, or the images themselves); returns ``out_path``. uint8
    images are normalised with the model's metadata, else ``normalization`` (mean, std),
    else the npz's ``mean``/``std``."""
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                              QuantFormat, QuantType, quantize_static)
    except ImportError:
        raise DeployError("INT8 quantization needs 'onnx' and 'onnxruntime' (pip install onnx "
                          "onnxruntime), or build the bundle's ready-made model.int8.onnx") from None
    runner = OrtRunner(onnx_path)
    x, source = _calibration_inputs(runner, calib, normalization, max_samples)
    step = runner.fixed_batch or 32
    if len(x) < step:
        raise DeployError(f"'{source}' has {len(x)} calibration images, fewer than the model's "
                          f"batch {step}: give at least {step}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.chunks = iter([x[i:i + step] for i in range(0, len(x) - step + 1, step)])

        def get_next(self) -> dict[str, Any] | None:
            chunk = next(self.chunks, None)
            return None if chunk is None else {runner.input_name: chunk}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice is noise here
    try:
        quantize_static(str(onnx_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "QuantizeBias": False,
                                       "OpTypesToExcludeOutputQuantization": QUANTIZED_OPS})
        _mark_int8(onnx, tmp, onnx_path, f"{len(x) - len(x) % step} images")
        tmp.replace(out_path)
    except DeployError:
        raise
    except Exception as error:  # noqa: BLE001 - the quantizer's own failure, in one line
        raise DeployError(f"ONNX Runtime could not quantize '{Path(onnx_path).name}' "
                          f"({str(error).strip().splitlines()[0][:160]}): build without --int8") from None
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    return out_path


def _calibration_inputs(runner: OrtRunner, calib: str | Path | np.ndarray,
                        normalization: tuple[list[float], list[float]] | None,
                        max_samples: int) -> tuple[np.ndarray, str]:
    """Model-ready calibration images (at most ``max_samples``) and where they came from;
    uint8 images normalised with the model's metadata, else ``normalization``, else the file's."""
    file_norm = None
    if isinstance(calib, (str, Path)):
        loaded = load_data(calib)
        x_raw, file_norm, source = loaded.x, loaded.normalization, str(calib)
    else:
        x_raw, source = np.asarray(calib), "calibration images"
    x = prepare_inputs(x_raw[:max_samples], runner.sample_shape,
                       normalization_of(runner) or normalization or file_norm, source)
    return x, source


def _mark_int8(onnx: Any, path: Path, onnx_path: str | Path, calibrated_on: str) -> None:
    """Rewrite the quantized model at ``path`` with its metadata: precision int8, the fp32
    source's sha256 (device measurements of the INT8 engine map back onto the fp32 export),
    and how it was quantized."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({onnxmeta.PRECISION: "int8",
                  "edgekd.source_sha256": props.get("edgekd.source_sha256") or sha256_file(onnx_path),
                  onnxmeta.QUANTIZATION: f"QDQ int8 symmetric per-channel, MinMax on {calibrated_on}"})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
