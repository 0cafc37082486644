"""ONNX export with a checker pass, a parity check against PyTorch, and optional simplification.

Exporter and opset: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based
exporter; the TorchScript exporter is deprecated since torch 2.9) writes its native opset 18;
:mod:`edgekd.ship.onnx_opset` then turns every global average pool into ``GlobalAveragePool``
and lowers the graph to **opset 17** (``DEFAULT_OPSET``). Why 17: it is the last opset
TensorRT 8.5/8.6 (JetPack 5.1 and 6.0) parse, and TensorRT 10 and 11 parse opsets 9 and up,
so one file builds on every TensorRT edgekd supports (``deploy/trt_onnx_ops.json`` holds
each version's operator table; ``python -m deploy opcheck`` and the bundle check against it).
At opset 18 ``ReduceMean`` takes its axes as an input, which the 8.x importer ignores. The
dynamo exporter also folds BatchNorm into the convolutions. A model the dynamo exporter
cannot capture (data-dependent control flow in a user's teacher), or whose graph cannot be
lowered, falls back to the TorchScript exporter at the target opset; the exporter used is
recorded in the metadata (``edgekd.exporter``), the opset in ``edgekd.opset``.

Batch: static (``batch``) by default, which is what TensorRT optimises best; a dynamic
batch ``(min, opt, max)`` exports a symbolic batch dimension that ``deploy build`` turns
into an optimisation profile.

Parity (:func:`check_parity`): the exported graph run by ONNX Runtime (through the deploy
kit's own runner) against PyTorch eager on at least 256 real, normalised samples:
``max |logits_onnx - logits_torch| <= 1e-4`` (fp32) and 100% top-1 agreement; a failure is
an :class:`EdgekdError` that prints both numbers.

Re-parameterised blocks (RepVGG's training branches) are exported fused, as one conv each
(:func:`edgekd.search.blocks.deployed`); the parity check compares that graph with the model
as trained, so it proves the fusion too.

Simplification: onnxslim (optional), kept only when the simplified graph passes the checker
and the same parity check; otherwise the plain export is kept and the reason is recorded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd_deploy import onnxmeta as meta  # the edgekd.* metadata keys (one list, the kit's)
from edgekd import __version__
from edgekd.core import fmt
from edgekd.core.errors import EdgekdError, disk_error
from edgekd.core.fileio import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch
    from edgekd.inputs.profiles import DeviceProfile
    from edgekd.inputs.data import ImageDataset, Normalization
    from edgekd.search.space import StudentSpec

DEFAULT_OPSET = 17
DYNAMO_OPSET = 18  # the dynamo exporter's native opset; lowered afterwards
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_ATOL = 1e-4
MIN_PARITY_SAMPLES = 256
TORCH_BATCH = 256


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime vs PyTorch on the same ``samples`` inputs."""

    samples: int
    max_abs_diff: float
    top1_agreement: float
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and self.top1_agreement == 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        return (f"max |logits difference| {self.max_abs_diff:.3g} (limit {self.atol:g}), "
                f"top-1 agreement {fmt.percent(self.top1_agreement)} on {self.samples} samples")


# --------------------------------------------------------------------------- parity
def torch_logits(model: "torch.nn.Module", x_float32: np.ndarray,
                 batch_size: int = TORCH_BATCH) -> np.ndarray:
    """PyTorch eager outputs of ``model`` (eval mode, no grad, CPU) on ``x_float32``."""
    import torch

    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(x_float32), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(x_float32[start:start + batch_size]))
            chunks.append(model(x).float().cpu().numpy())
    return np.concatenate(chunks)


def onnx_logits(onnx_path: str | Path, x_float32: np.ndarray, *, threads: int = 0) -> np.ndarray:
    """ONNX Runtime (CPU) outputs of ``onnx_path`` through the deploy kit's runner, in chunks
    of the model's batch (a static-batch model gets its last chunk padded)."""
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.runners import OrtRunner, run_batched

    try:
        runner = OrtRunner(onnx_path, provider="cpu", threads=threads)
        return run_batched(runner, x_float32)
    except DeployError as error:
        raise EdgekdError(str(error)) from None


def compare_logits(reference: np.ndarray, candidate: np.ndarray,
                   atol: float = PARITY_ATOL) -> ParityReport:
    if reference.shape != candidate.shape:
        raise EdgekdError(f"ONNX output shape {candidate.shape} differs from PyTorch's "
                          f"{reference.shape}: the export is broken; report it with --verbose")
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    agree = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return ParityReport(samples=len(reference), max_abs_diff=diff, top1_agreement=agree, atol=atol)


def check_parity(model: "torch.nn.Module", onnx_path: str | Path, x_float32: np.ndarray, *,
                 atol: float = PARITY_ATOL, min_samples: int = MIN_PARITY_SAMPLES) -> ParityReport:
    """Run ``onnx_path`` (ONNX Runtime CPU) and ``model`` (PyTorch) on ``x_float32`` (real,
    normalised samples, ``(N, C, H, W)``); raise :class:`EdgekdError` with the numbers unless
    ``max|diff| <= atol`` and top-1 agreement is 100%."""
    x = np.ascontiguousarray(x_float32, dtype=np.float32)
    if len(x) < min_samples:
        raise EdgekdError(f"parity needs at least {min_samples} samples, got {len(x)}: "
                          "give a data set whose test split has more images")
    report = compare_logits(torch_logits(model, x), onnx_logits(onnx_path, x), atol)
    if not report.passed:
        raise EdgekdError(f"ONNX parity failed for '{Path(onnx_path).name}': {report.describe()}; "
                          "the exported graph does not compute what PyTorch does: re-export "
                          "without --simplify, or report it with --verbose")
    return report


def parity_inputs(dataset: ImageDataset, n: int = MIN_PARITY_SAMPLES,
                  normalization: Normalization | None = None) -> np.ndarray:
    """The first ``n`` test images of ``dataset`` (an ImageDataset; topped up from the train
    split when the test split is smaller), normalised with ``normalization`` (default: the
    data set's), float32."""
    from edgekd.inputs.data import to_tensor

    x = dataset.x_test[:n]
    if len(x) < n:
        x = np.concatenate([x, dataset.x_train[: n - len(x)]])
    return to_tensor(x, normalization or dataset.normalization).numpy()


# --------------------------------------------------------------------------- export
def _example_and_shapes(input_shape: tuple[int, ...], batch: int,
                        dynamic_batch: tuple[int, int, int] | None) -> tuple[Any, Any]:
    import torch

    if dynamic_batch is None:
        if batch < 1:
            raise EdgekdError(f"batch {batch}: use a batch of at least 1")
        return torch.randn(batch, *input_shape), None
    low, opt, high = (int(v) for v in dynamic_batch)
    if not 1 <= low <= opt <= high:
        raise EdgekdError(f"dynamic batch {dynamic_batch}: need 1 <= MIN <= OPT <= MAX, "
                          "e.g. --dynamic-batch 1,8,32")
    # torch.export specialises a dimension whose example size is 1, so trace with >= 2.
    example = max(2, opt)
    return torch.randn(example, *input_shape), (low, high)


def _torch_export(model: "torch.nn.Module", example: "torch.Tensor", path: Path, opset: int,
                  bounds: tuple[int, int] | None, exporter: str = "auto") -> str:
    """Export to ``path``; return the exporter used ("dynamo" or "torchscript").
    ``exporter="torchscript"`` skips the dynamo exporter (see :func:`export_onnx`)."""
    import torch

    errors: list[str] = []
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        if exporter != "torchscript":
            dynamic_shapes = None
            if bounds is not None:
                low, high = bounds
                batch_dim = torch.export.Dim("batch", min=max(1, low), max=high)
                dynamic_shapes = ({0: batch_dim},)
            try:
                torch.onnx.export(model, (example,), str(path), dynamo=True,
                                  opset_version=max(opset, DYNAMO_OPSET),
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_shapes=dynamic_shapes, external_data=False,
                                  verbose=False)
                return "dynamo"
            except Exception as error:  # noqa: BLE001 - any capture failure -> fallback
                if disk_error(error):
                    raise  # a full or read-only disk, not an untraceable model
                errors.append(f"dynamo: {str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__}")
        try:
            dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if bounds else None
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
            return "torchscript"
        except Exception as error:  # noqa: BLE001
            if disk_error(error):
                raise
            errors.append(f"torchscript: {str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__}")
    raise EdgekdError(f"cannot export the model to ONNX ({'; '.join(errors)}): make its forward "
                      "traceable (no data-dependent Python control flow), or rerun with --verbose")


def _export_for_tensorrt(model: "torch.nn.Module", example: "torch.Tensor", path: Path, opset: int,
                         bounds: tuple[int, int] | None, exporter: str) -> tuple[Any, str]:
    """Export, then the graph in the form every TensorRT parses at ``opset``
    (:func:`edgekd.ship.onnx_opset.for_tensorrt`); a dynamo graph that cannot be lowered is
    exported again by the TorchScript exporter at ``opset``. Returns (model, exporter used)."""
    import onnx
    import torch

    from edgekd.ship.onnx_opset import for_tensorrt

    with torch.no_grad():
        used = _torch_export(model, example, path, opset, bounds, exporter)
    try:
        return for_tensorrt(onnx.load(str(path)), opset), used
    except EdgekdError:
        if used != "dynamo":
            raise
    with torch.no_grad():
        used = _torch_export(model, example, path, opset, bounds, "torchscript")
    return for_tensorrt(onnx.load(str(path)), opset), used


def _metadata_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def set_metadata(model_proto: "onnx.ModelProto", metadata: dict[str, Any]) -> None:
    """Set (replace) ``metadata_props`` entries; non-string values are stored as JSON."""
    import onnx

    merged = {p.key: p.value for p in model_proto.metadata_props}
    merged.update({k: _metadata_value(v) for k, v in metadata.items() if v is not None})
    del model_proto.metadata_props[:]
    onnx.helper.set_model_props(model_proto, merged)


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (read without loading the graph)."""
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.onnxmeta import read_onnx_header

    try:
        return dict(read_onnx_header(onnx_path).metadata)
    except DeployError as error:
        raise EdgekdError(str(error)) from None


def _check_model(model_proto: "onnx.ModelProto", what: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model_proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first = str(error).strip().splitlines()[0][:200]
        raise EdgekdError(f"onnx.checker rejects the {what} ({first}): report it with --verbose") from None


def _simplify(model_proto: "onnx.ModelProto") -> tuple["onnx.ModelProto | None", str]:
    """onnxslim's simplified copy, or (None, why not)."""
    try:
        import onnxslim
    except ImportError:
        return None, "skipped: onnxslim is not installed (pip install 'edgekd[simplify]')"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return onnxslim.slim(model_proto), ""
    except Exception as error:  # noqa: BLE001 - a simplifier failure keeps the plain export
        return None, f"skipped: onnxslim failed ({str(error).strip()[:120]})"


def export_onnx(model: "torch.nn.Module", input_shape: tuple[int, ...], path: str | Path, *,
                batch: int = 1, dynamic_batch: tuple[int, int, int] | None = None,
                opset: int = DEFAULT_OPSET, metadata: dict[str, Any] | None = None,
                simplify: bool = False, parity_x: np.ndarray | None = None,
                parity_min: int = MIN_PARITY_SAMPLES, exporter: str = "auto") -> Path:
    """Export ``model`` (one ``(N, *input_shape)`` float input named "input", output
    "logits") to ``path`` atomically; see the module docstring for exporter, opset, batch,
    parity and simplification. ``metadata`` goes into ``metadata_props`` (non-strings as
    JSON) with ``edgekd.version``, ``edgekd.opset``, ``edgekd.exporter``, ``edgekd.batch``,
    ``edgekd.parity`` and ``edgekd.simplified``. With ``parity_x`` the export is checked
    against PyTorch (:func:`check_parity`, at least ``parity_min`` samples) and a failure raises.
    ``exporter="torchscript"`` uses the TorchScript exporter directly: 20-50x faster on small
    CNNs (0.1-0.3 s instead of 5-12 s), for the hundreds of throw-away students of a latency
    calibration, whose runtime graph is the same (BN folded, the same fused convolutions)."""
    if exporter not in ("auto", "torchscript"):
        raise ValueError(f"exporter {exporter!r}: use 'auto' or 'torchscript'")
    from edgekd.search.blocks import deployed

    path = Path(path)
    input_shape = tuple(int(v) for v in input_shape)
    model = model.eval().cpu()
    example, bounds = _example_and_shapes(input_shape, batch, dynamic_batch)
    if parity_x is not None and tuple(parity_x.shape[1:]) != input_shape:
        raise EdgekdError(f"parity samples of shape {tuple(parity_x.shape[1:])} do not match the "
                          f"model input {input_shape}: pass data of the model's input shape")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proto, exporter = _export_for_tensorrt(deployed(model), example, tmp, opset, bounds, exporter)
        set_metadata(proto, {
            **(metadata or {}),
            meta.VERSION: __version__,
            meta.OPSET: next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset),
            meta.EXPORTER: exporter,
            meta.BATCH: {"static": batch} if bounds is None else
                        {"min": dynamic_batch[0], "opt": dynamic_batch[1], "max": dynamic_batch[2]},
        })
        _check_model(proto, "exported model")
        tmp.write_bytes(proto.SerializeToString())
        report = check_parity(model, tmp, parity_x, min_samples=parity_min) if parity_x is not None else None
        simplified = "no"
        if simplify:
            proto, simplified, report = _simplified(model, proto, tmp, parity_x, parity_min, report)
        set_metadata(proto, {meta.SIMPLIFIED: simplified,
                             meta.PARITY: report.to_dict() if report else "not checked"})
        atomic_write_bytes(path, proto.SerializeToString())
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _simplified(model: "torch.nn.Module", proto: Any, tmp: Path, parity_x: np.ndarray | None,
                parity_min: int, report: "ParityReport | None") -> tuple[Any, str, "ParityReport | None"]:
    """The onnxslim-simplified model when it passes the checker and parity (re-checked on
    ``parity_x``), else ``proto`` unchanged; with what happened (``edgekd.simplified``) and
    the parity report of the model returned."""
    slim, why = _simplify(proto)
    if slim is None:
        return proto, why, report
    set_metadata(slim, {p.key: p.value for p in proto.metadata_props})
    slim_tmp = tmp.with_suffix(".slim.onnx")
    try:
        _check_model(slim, "simplified model")
        slim_tmp.write_bytes(slim.SerializeToString())
        if parity_x is not None:
            report = check_parity(model, slim_tmp, parity_x, min_samples=parity_min)
        return slim, "yes (onnxslim)", report
    except EdgekdError as error:
        return proto, f"rejected: {error}", report
    finally:
        slim_tmp.unlink(missing_ok=True)


def student_metadata(*, spec: StudentSpec | None = None, classes: list[str] | None = None,
                     input_shape: tuple[int, ...] | None = None,
                     normalization: Normalization | None = None,
                     accuracy: float | None = None, profile: str | None = None,
                     model_id: str | None = None, method: str | None = None) -> dict[str, Any]:
    """The standard ``metadata_props`` of an edgekd export (``edgekd.version`` is added by
    :func:`export_onnx`). ``deploy check`` reads ``edgekd.normalization`` to normalise uint8
    images on the device; ``deploy bench`` copies ``edgekd.id`` and ``edgekd.profile`` into
    the Measurement."""
    norm = normalization.to_dict() if hasattr(normalization, "to_dict") else normalization
    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else spec
    return {
        meta.SPEC: spec_dict,
        meta.ID: model_id,
        meta.CLASSES: list(classes) if classes is not None else None,
        meta.INPUT_SHAPE: list(input_shape) if input_shape is not None else None,
        meta.NORMALIZATION: norm,
        meta.ACCURACY: accuracy,
        meta.PROFILE: profile,
        meta.METHOD: method,
    }


