"""``python -m deploy check``: accuracy on labelled data and agreement with reference outputs.

The data file is an ``.npz`` with images ``x`` — uint8 ``(N, C, H, W)`` (or ``(N, H, W)`` for
one channel), normalised here as ``(x/255 - mean[c]) / std[c]`` with the statistics stored in
the model's own metadata (``edgekd.normalization``; for an engine, in the ``.engine.json``
that ``deploy build`` wrote) or else in the npz's ``mean``/``std`` arrays, or float32 already
normalised — labels ``y`` (int), and
optionally ``logits``: the ONNX model's outputs computed on the host, so a device without
ONNX Runtime can still check that its engine computes the same thing. ``--reference
MODEL.onnx`` computes the reference here instead (ONNX Runtime CPU).

Agreement = the fraction of samples whose top-1 class matches the reference's; the largest
absolute logit difference is reported too (fp16/int8 engines differ by design; top-1
agreement is the number to watch).
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bench import model_fields
from .errors import DeployError
from .fmt import percent
from .backends import open_runner
from .runners import OrtRunner, run_batched

X_KEYS = ("x", "x_test", "images")
Y_KEYS = ("y", "y_test", "labels")


def _pick(archive: Any, keys: tuple[str, ...]) -> np.ndarray | None:
    for key in keys:
        if key in archive.files:
            return archive[key]
    return None


@dataclass(frozen=True)
class Data:
    """A data file's arrays; ``normalization`` = its ``mean``/``std`` arrays when stored."""

    x: np.ndarray
    y: np.ndarray | None
    logits: np.ndarray | None
    normalization: tuple[list[float], list[float]] | None


def load_data(path: str | Path) -> Data:
    """The arrays of a data .npz (see the module docstring); y/logits/mean+std are optional."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"data file '{path}' not found: check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = _pick(archive, X_KEYS), _pick(archive, Y_KEYS)
            logits = archive["logits"] if "logits" in archive.files else None
            norm = None
            if "mean" in archive.files and "std" in archive.files:
                norm = ([float(v) for v in np.ravel(archive["mean"])],
                        [float(v) for v in np.ravel(archive["std"])])
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DeployError(f"'{path}' is not a readable .npz ({error}): pass the bundle's val.npz "
                          "or an npz with arrays 'x' and 'y'") from None
    if x is None:
        raise DeployError(f"'{path}' has no images (looked for {', '.join(X_KEYS)}): "
                          "store them as 'x', shaped (N, C, H, W)")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise DeployError(f"'{path}': labels shaped {y.shape} for {len(x)} images: store one "
                          "integer label per image as 'y'")
    if y is not None and len(y) and (not np.issubdtype(y.dtype, np.integer) or int(y.min()) < 0):
        raise DeployError(f"'{path}': labels must be class indices 0, 1, ... (found dtype "
                          f"{y.dtype}, smallest {y.min()}): store them as non-negative integers")
    if logits is not None and len(logits) != len(x):
        raise DeployError(f"'{path}': {len(logits)} reference logits for {len(x)} images: "
                          "regenerate the file")
    return Data(x, y, logits, norm)


def prepare_inputs(x: np.ndarray, sample_shape: tuple[int, ...],
                   normalization: tuple[list[float], list[float]] | None, source: str) -> np.ndarray:
    """Model-ready float32 ``(N, C, H, W)``: uint8 images are normalised with the model's
    statistics; float data is taken as already normalised."""
    if x.ndim == len(sample_shape) and sample_shape[0] == 1:
        x = x[:, None]  # (N, H, W) grey images
    if tuple(x.shape[1:]) != tuple(sample_shape):
        raise DeployError(f"'{source}' holds inputs shaped {tuple(x.shape[1:])}, the model takes "
                          f"{tuple(sample_shape)}: pass data made for this model (N, "
                          f"{', '.join(map(str, sample_shape))})")
    if x.dtype == np.uint8:
        if normalization is None:
            raise DeployError("the model carries no 'edgekd.normalization' metadata, so uint8 "
                              "images cannot be normalised: pass float32 inputs already normalised")
        mean, std = normalization
        if len(mean) != x.shape[1]:
            raise DeployError(f"normalisation has {len(mean)} channels, the data {x.shape[1]}: "
                              "re-export the model with the right data set")
        mean_a = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std_a = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        return ((x.astype(np.float32) / np.float32(255.0)) - mean_a) / std_a
    if np.issubdtype(x.dtype, np.floating):
        return np.ascontiguousarray(x, dtype=np.float32)
    raise DeployError(f"'{source}' images have dtype {x.dtype}: use uint8 images or float32 inputs")


def normalization_of(runner: Any) -> tuple[list[float], list[float]] | None:
    """The model's ``edgekd.normalization`` (checked: see deploy.onnxmeta.normalization_of)."""
    from . import onnxmeta

    return onnxmeta.normalization_of(runner.metadata, f"model '{getattr(runner, 'path', 'model')}'")


def check(model: str | Path, data: str | Path, *, backend: str | None = None,
          provider: str = "cpu", batch: int | None = None,
          reference: str | Path | None = None) -> dict[str, Any]:
    """Accuracy of ``model`` on ``data`` and top-1 agreement with the reference outputs."""
    loaded = load_data(data)
    with open_runner(model, backend, provider=provider) as runner:
        return check_runner(runner, loaded, data, batch=batch, reference=reference)


def check_runner(runner: Any, loaded: Data, data: str | Path, *, batch: int | None = None,
                 reference: str | Path | None = None) -> dict[str, Any]:
    """:func:`check` on an open runner and loaded arrays (``data`` names them in messages);
    ``edgekd measure --data`` calls it with a data set's test split."""
    y, ref_logits = loaded.y, loaded.logits
    x = prepare_inputs(loaded.x, runner.sample_shape,
                       normalization_of(runner) or loaded.normalization, str(data))
    logits = run_batched(runner, x, batch_size=batch or 64)
    if y is not None and len(y) and logits.ndim == 2 and int(y.max()) >= logits.shape[1]:
        raise DeployError(f"'{data}': label {int(y.max())} is out of range for a model with "
                          f"{logits.shape[1]} classes: pass the data set the model was trained on")
    result: dict[str, Any] = {
        **model_fields(runner),
        **runner.describe(),
        "data": str(data),
        "samples": int(len(x)),
        "classes": int(logits.shape[1]) if logits.ndim == 2 else None,
        "accuracy": float(np.mean(logits.argmax(1) == y)) if y is not None else None,
        "reference": None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    source = None
    if reference is not None:
        with OrtRunner(reference) as ref_runner:
            ref_logits = run_batched(ref_runner, x, batch_size=batch or 64)
        source = f"ONNX Runtime on {Path(reference).name}"
    elif ref_logits is not None:
        source = f"'logits' stored in {Path(data).name}"
    if ref_logits is not None:
        if ref_logits.shape != logits.shape:
            raise DeployError(f"reference logits shaped {ref_logits.shape}, the model gives "
                              f"{logits.shape}: the data file was made for another model")
        result["reference"] = {
            "source": source,
            "top1_agreement": float(np.mean(logits.argmax(1) == ref_logits.argmax(1))),
            "max_abs_diff": float(np.max(np.abs(logits.astype(np.float64) - ref_logits))),
            "reference_accuracy": float(np.mean(ref_logits.argmax(1) == y)) if y is not None else None,
        }
    return result


def format_check(result: dict[str, Any]) -> str:
    head = (f"{result['model']} [{result['backend']} {result['precision']}] on {result['device']}: "
            f"{result['samples']} samples")
    lines = [head]
    ref = result["reference"]
    if result["accuracy"] is not None:
        line = f"accuracy {percent(result['accuracy'])}"
        if ref and ref.get("reference_accuracy") is not None:
            # the value to compare with: the reference outputs on the same images
            line += (f" (expected {percent(ref['reference_accuracy'])}: {ref['source']} on the "
                     f"same {result['samples']:,} images)")
        lines.append(line)
    if ref:
        lines.append(f"agreement with {ref['source']}: top-1 {percent(ref['top1_agreement'])}, "
                     f"max |logit difference| {ref['max_abs_diff']:.3g}")
    else:
        lines.append("no reference outputs (store 'logits' in the data or pass --reference model.onnx)")
    return "\n".join(lines)
