"""The latency model: how long a student takes on a device, without running it there.

Every latency is carried with its label (:class:`LatencyEstimate`):

* ``predicted`` (roofline): per layer ``max(MACs / peak, bytes moved / bandwidth) + overhead``
  summed over layers, where peak = the profile's rate at its runtime precision (1 MAC = 2 ops),
  bytes moved = (input + output activations) * batch + weights, at the precision's bytes per
  element, and overhead = the profile's ``layer_overhead_us``.
* ``calibrated``: the linear model ``t = c + sum_k (a_k * C_k + m_k * M_k + o_k * N_k)`` where,
  for layer kind ``k``, ``C_k`` / ``M_k`` are the ideal compute / memory times of its layers (the
  roofline terms above), ``N_k`` the number of its layers; ``1 / a_k`` is the kind's compute
  efficiency, ``1 / m_k`` its memory efficiency, ``o_k`` its per-layer overhead and ``c`` the
  per-inference overhead. The coefficients are fitted by non-negative least squares on relative
  error (each row divided by its measured time; timing outliers beyond 3 MADs are dropped and
  the fit redone) to a table of measurements, separately per batch when there are enough rows,
  saved as JSON and reused (:class:`Calibration`). Conv compute may be counted on channel
  blocks (vectorised kernels pad channels to a multiple of 8 or 16); the block size is chosen
  per fit by cross-validation (:func:`blocked_compute_ms`).
* ``measured`` figures come from the ship stage (:func:`edgekd.ship.measure.measured_latency`).

Layers and MACs come from :mod:`edgekd.search.cost`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from edgekd.search.cost import KINDS, Layer, ModelCost, spec_cost
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, read_json
from edgekd.search.space import StudentSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgekd.inputs.profiles import DeviceProfile, Hardware

LABELS: tuple[str, ...] = ("measured", "predicted", "calibrated")
BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
CALIBRATION_FORMAT = "edgekd.calibration/1"
#: Channel block sizes the calibration tries (1 = no blocking); see :func:`blocked_compute_ms`.
CHANNEL_BLOCKS: tuple[int, ...] = (1, 4, 8, 16, 32)


# ---------------------------------------------------------------------------- latency
@dataclass(frozen=True)
class LatencyEstimate:
    """A latency in milliseconds for one batch, with where it came from."""

    ms: float
    label: str
    batch: int

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"latency label {self.label!r} not in {LABELS}")

    def to_dict(self) -> dict[str, Any]:
        return {"ms": self.ms, "label": self.label, "batch": self.batch}

    def __str__(self) -> str:
        return f"{self.ms:.4g} ms ({self.label})"


@dataclass(frozen=True)
class Roofline:
    """The hardware figures the latency model uses, at one precision."""

    peak_macs_per_s: float
    bandwidth_bytes_per_s: float
    bytes_per_element: int
    layer_overhead_ms: float

    @classmethod
    def of(cls, hardware: "Hardware", precision: str) -> "Roofline":
        if precision not in BYTES_PER_ELEMENT:
            raise EdgekdError(f"unknown precision {precision!r}: use one of "
                              f"{', '.join(BYTES_PER_ELEMENT)}")
        return cls(peak_macs_per_s=hardware.peak_ops(precision) / 2,
                   bandwidth_bytes_per_s=hardware.memory_bandwidth_gbs * 1e9,
                   bytes_per_element=BYTES_PER_ELEMENT[precision],
                   layer_overhead_ms=hardware.layer_overhead_us / 1e3)

    def compute_ms(self, layer: Layer, batch: int) -> float:
        return 1e3 * layer.macs * batch / self.peak_macs_per_s

    def memory_ms(self, layer: Layer, batch: int) -> float:
        elements = (layer.in_elems + layer.out_elems) * batch + layer.weights
        return 1e3 * elements * self.bytes_per_element / self.bandwidth_bytes_per_s


def layers_of(model: "StudentSpec | ModelCost | Sequence[Layer]") -> Sequence[Layer]:
    if isinstance(model, StudentSpec):
        return spec_cost(model).layers
    if isinstance(model, ModelCost):
        return model.layers
    return model


def predict_latency(model: "StudentSpec | ModelCost | Sequence[Layer]", profile: "DeviceProfile",
                    batch: int | None = None) -> LatencyEstimate:
    """Roofline prediction: sum over layers of max(compute, memory) + per-layer overhead."""
    batch = batch or profile.budget.batch
    roof = Roofline.of(profile.hardware, profile.runtime.precision)
    ms = sum(max(roof.compute_ms(layer, batch), roof.memory_ms(layer, batch)) + roof.layer_overhead_ms
             for layer in layers_of(model))
    return LatencyEstimate(ms=ms, label="predicted", batch=batch)


def feature_names() -> list[str]:
    """Columns of :func:`latency_features`: per kind compute ms, memory ms, layer count; then 1."""
    return [f"{k}.{term}" for k in KINDS for term in ("compute", "memory", "count")] + ["intercept"]


def blocked_compute_ms(layer: Layer, roof: Roofline, batch: int, block: int) -> float:
    """Ideal compute time of a conv layer whose kernel works on channel blocks of ``block``
    (e.g. ONNX Runtime's NCHWc convolutions: 8 channels with AVX2, 16 with AVX-512): output
    channels are padded up to a multiple of the block, input channels too when the input has
    at least one block (a thinner input, like the image, is read directly). Other layers and
    ``block == 1``: the plain compute time."""
    ms = roof.compute_ms(layer, batch)
    if block <= 1 or layer.kind not in ("conv", "depthwise") or not layer.out_channels:
        return ms
    pad = lambda c: -(-c // block) * block  # noqa: E731
    factor = pad(layer.out_channels) / layer.out_channels
    if layer.kind == "conv" and layer.in_channels >= block:
        factor *= pad(layer.in_channels) / layer.in_channels
    return ms * factor


def latency_features(layers: Sequence[Layer], roof: Roofline, batch: int,
                     channel_block: int = 1) -> list[float]:
    """One row of the calibration design matrix (see the module docstring); conv compute is
    counted on channel blocks of ``channel_block`` (:func:`blocked_compute_ms`)."""
    row = {name: 0.0 for name in feature_names()}
    for layer in layers:
        row[f"{layer.kind}.compute"] += blocked_compute_ms(layer, roof, batch, channel_block)
        row[f"{layer.kind}.memory"] += roof.memory_ms(layer, batch)
        row[f"{layer.kind}.count"] += 1.0
    row["intercept"] = 1.0
    return list(row.values())


@dataclass
class Calibration:
    """Fitted coefficients of the calibrated latency model (see the module docstring).

    ``fits`` maps a batch size (as a string, for JSON) or ``"all"`` to a coefficient dict
    keyed by :func:`feature_names`. ``hardware`` and ``precision`` are the figures the features
    were computed with, so a saved calibration predicts the same way wherever it is loaded.
    """

    profile: str
    precision: str
    hardware: dict[str, float]
    fits: dict[str, dict[str, float]]
    samples: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def roofline(self) -> Roofline:
        from edgekd.inputs.profiles import Hardware

        return Roofline.of(Hardware(**self.hardware), self.precision)

    def coefficients(self, batch: int) -> dict[str, float]:
        return self.fits.get(str(batch)) or self.fits["all"]

    def predict_ms(self, model: "StudentSpec | ModelCost | Sequence[Layer]", batch: int) -> float:
        coef = self.coefficients(batch)
        row = latency_features(layers_of(model), self.roofline(), batch,
                               int(coef.get("channel_block", 1)))
        return float(sum(c * x for c, x in zip((coef.get(n, 0.0) for n in feature_names()), row)))

    def predict(self, model: "StudentSpec | ModelCost | Sequence[Layer]", batch: int) -> LatencyEstimate:
        return LatencyEstimate(ms=self.predict_ms(model, batch), label="calibrated", batch=batch)

    def to_dict(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, **dataclasses.asdict(self)}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        """The calibration file at ``path`` (:func:`read_model_file`, then :meth:`from_document`)."""
        return cls.from_document(read_model_file(path, "calibration file", _CALIBRATION_FIX), path)

    @classmethod
    def from_document(cls, data: dict[str, Any], path: str | Path) -> "Calibration":
        """The calibration in ``data``, read from ``path``; one error line when it is not one."""
        data = dict(data)
        if data.pop("format", None) != CALIBRATION_FORMAT:
            raise EdgekdError(f"calibration file {path} is not an edgekd calibration "
                              f"(format {CALIBRATION_FORMAT}): recreate it")
        try:
            calibration = cls(**data)
            calibration.roofline()
            if "all" not in calibration.fits:
                raise KeyError("all")
            bad = [f"{batch}.{name} = {value!r}" for batch, coef in calibration.fits.items()
                   for name, value in coef.items() if not _non_negative(value)]
        except (TypeError, KeyError, AttributeError, EdgekdError) as error:
            raise EdgekdError(f"calibration file {path} is malformed ({error}): recreate it") from None
        if bad:  # the fit is non-negative least squares: a negative time was edited in
            raise EdgekdError(f"calibration file {path} has coefficients that are negative, not "
                              f"numbers or not finite ({', '.join(bad[:3])}): recreate it")
        return calibration


_CALIBRATION_FIX = "recreate it (edgekd search --measure, benchmarks/latency_predictor.py)"


def read_model_file(path: str | Path, what: str, fix: str) -> dict[str, Any]:
    """The JSON object of a latency-model file (a per-kind :class:`Calibration` or a kernel
    table, :class:`edgekd.search.kernel_model.KernelTable`): one error line naming the file as
    ``what`` and the ``fix`` when it is missing, unreadable or not an object."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise EdgekdError(f"{what} {path} not found: check the path, or {fix}") from None
    except (OSError, ValueError) as error:
        raise EdgekdError(f"{what} {path} is not valid JSON ({getattr(error, 'reason', error)}): "
                          f"{fix}") from None
    if not isinstance(data, dict):
        raise EdgekdError(f"{what} {path} holds {type(data).__name__}, not an object: {fix}")
    return data


def _non_negative(value: Any) -> bool:
    """A real, finite, non-negative number (a time or a time per unit); not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def nnls_relative(rows: "np.ndarray", measured: "np.ndarray", *, rounds: int = 3) -> "np.ndarray":
    """Non-negative least squares on relative error, min ||(A x - y) / y||, x >= 0, made
    robust to the timing outliers of a shared machine: after each fit, rows whose relative
    residual is more than 3 scaled MADs (and 5%) from the median are dropped and the fit is
    redone (``rounds`` times at most). Noise-free data keep every row."""
    import numpy as np
    from scipy.optimize import nnls

    keep = np.ones(len(measured), dtype=bool)
    coef = np.zeros(rows.shape[1])
    for _ in range(max(1, rounds)):
        a, y = rows[keep], measured[keep]
        used = np.flatnonzero(np.abs(a).sum(axis=0) > 0)
        scale = a[:, used].max(axis=0)  # column scaling for conditioning
        solution, _ = nnls(a[:, used] / scale / y[:, None], np.ones_like(y),
                           maxiter=50 * rows.shape[1])
        coef = np.zeros(rows.shape[1])
        coef[used] = solution / scale
        rel = rows @ coef / measured - 1
        center = np.median(rel[keep])
        spread = 1.4826 * np.median(np.abs(rel[keep] - center))
        new_keep = np.abs(rel - center) <= max(3 * spread, 0.05)
        if new_keep.sum() < max(rows.shape[1], len(measured) // 2) or (new_keep == keep).all():
            break
        keep = new_keep
    return coef


def _fit_with_block(layer_rows: list[Sequence[Layer]], batches: "np.ndarray", measured: "np.ndarray",
                    roof: Roofline, blocks: Sequence[int]) -> dict[str, float]:
    """Fit the coefficients for each channel block in ``blocks``; keep the block whose 2-fold
    cross-validated median relative error is lowest (ties: the smaller block)."""
    import numpy as np

    order = np.random.default_rng(0).permutation(len(measured))
    folds = (order[::2], order[1::2])
    best: tuple[float, int, "np.ndarray"] | None = None
    for block in blocks:
        a = np.asarray([latency_features(layers, roof, int(b), block)
                        for layers, b in zip(layer_rows, batches)], dtype=float)
        score = 0.0
        if len(blocks) > 1 and min(map(len, folds)) >= 2:
            errors = []
            for train, test in (folds, folds[::-1]):
                coef = nnls_relative(a[train], measured[train])
                errors.append(np.abs(a[test] @ coef / measured[test] - 1))
            score = float(np.median(np.concatenate(errors)))
        if best is None or score < best[0] - 1e-12:
            best = (score, block, a)
    _score, block, a = best  # type: ignore[misc]
    coef = dict(zip(feature_names(), map(float, nnls_relative(a, measured))))
    coef["channel_block"] = float(block)
    return coef


def fit_calibration(table: Iterable[tuple["StudentSpec | ModelCost | Sequence[Layer]", int, float]],
                    profile: "DeviceProfile", *, min_rows_per_batch: int | None = None,
                    channel_blocks: Sequence[int] = CHANNEL_BLOCKS, source: str = "") -> Calibration:
    """Fit the calibrated latency model to ``table`` rows ``(model, batch, measured_ms)``.

    One fit on all rows (``"all"``) and one per batch size that has at least
    ``min_rows_per_batch`` rows (default: twice the number of non-zero feature columns). Each
    fit also picks the conv channel block (:func:`blocked_compute_ms`) from
    ``channel_blocks`` by 2-fold cross-validation on its own rows; it is stored as the
    coefficient ``channel_block``.
    """
    import numpy as np

    roof = Roofline.of(profile.hardware, profile.runtime.precision)
    layer_rows, batches, measured = [], [], []
    for model, batch, ms in table:
        if not ms > 0:
            raise EdgekdError(f"calibration: measured latency {ms} ms is not positive: "
                              "drop that measurement")
        layer_rows.append(layers_of(model))
        batches.append(batch)
        measured.append(ms)
    if not layer_rows:
        raise EdgekdError("calibration: the measurement table is empty: measure some models first")
    y, b = np.asarray(measured, dtype=float), np.asarray(batches)
    plain = np.asarray([latency_features(layers, roof, int(bb)) for layers, bb in zip(layer_rows, b)])
    active = int((np.abs(plain).sum(axis=0) > 0).sum())
    min_rows = min_rows_per_batch if min_rows_per_batch is not None else 2 * active
    blocks = tuple(channel_blocks) or (1,)
    fits = {"all": _fit_with_block(layer_rows, b, y, roof, blocks)}
    samples = {"all": len(y)}
    for batch in sorted(set(batches)):
        mask = b == batch
        if mask.sum() >= min_rows and len(set(batches)) > 1:
            subset = [layers for layers, keep in zip(layer_rows, mask) if keep]
            fits[str(batch)] = _fit_with_block(subset, b[mask], y[mask], roof, blocks)
            samples[str(batch)] = int(mask.sum())
    return Calibration(profile=profile.name, precision=profile.runtime.precision,
                       hardware=dataclasses.asdict(profile.hardware), fits=fits,
                       samples=samples, source=source)


#: The format tag of a ``python -m deploy profile`` layer JSON (per-op times of one model).
LAYER_PROFILE_FORMAT = "edgekd.layer-profile/1"
