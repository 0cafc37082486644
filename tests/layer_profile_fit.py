"""A per-kind calibration fitted to ``python -m deploy profile`` layer times: the method that the
kernel table (edgekd.search.op_times) replaced, kept here as the reference the latency tests
check the per-kind model against (synthetic profiles from known coefficients)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from edgekd.core.errors import EdgekdError
from edgekd.search.cost import Layer, ModelCost
from edgekd.search.latency import (LAYER_PROFILE_FORMAT, Calibration, Roofline, feature_names,
                                   latency_features, layers_of, nnls_relative)
from edgekd.search.space import StudentSpec

if TYPE_CHECKING:
    from edgekd.inputs.profiles import DeviceProfile

#: How an op type in a ``deploy profile`` layer JSON maps to a layer kind (first substring that
#: matches, case-insensitive). Unmatched ops (layout reorders, reshapes) count as per-inference
#: overhead. Op types do not tell depthwise from dense convolutions, so both share "conv".
PROFILE_OP_KINDS: tuple[tuple[str, str], ...] = (
    ("conv", "conv"), ("gemm", "linear"), ("matmul", "linear"), ("fullyconnected", "linear"),
    ("pool", "pool"), ("reduce", "pool"), ("add", "add"), ("sum", "add"),
)


def profile_op_kind(op_type: str) -> str | None:
    """The layer kind of a runtime op type (see :data:`PROFILE_OP_KINDS`), None = overhead."""
    low = op_type.lower()
    return next((kind for needle, kind in PROFILE_OP_KINDS if needle in low), None)


def fit_calibration_from_layer_profiles(
        items: Iterable[tuple["StudentSpec | ModelCost | Sequence[Layer]", dict[str, Any]]],
        profile: "DeviceProfile", *, source: str = "") -> Calibration:
    """Fit the calibrated model to per-layer times, as ``python -m deploy profile`` writes them
    (``{"format": "edgekd.layer-profile/1", "batch", "layers": [{"name", "op_type", "ms"}],
    "latency_ms", ...}``), one per (model, batch).

    Each kind is fitted on its own: for every profile, the summed time of that kind's ops is a
    row against the compute / memory / count features of that kind's layers (NNLS, relative
    error). The intercept is the median of ``latency_ms`` minus the mapped ops' time (the
    runtime's per-inference overhead plus unmapped ops such as layout reorders). Fitted
    separately per batch when several batches are present, and on all rows as ``"all"``.
    """
    import numpy as np

    roof = Roofline.of(profile.hardware, profile.runtime.precision)
    kinds = ("conv", "linear", "pool", "add")
    records = []
    for model, result in items:
        if not isinstance(result, dict) or result.get("format") != LAYER_PROFILE_FORMAT:
            raise EdgekdError("calibration: not a layer profile from 'python -m deploy profile' "
                              f"(format {LAYER_PROFILE_FORMAT}): profile the model with it")
        batch = int(result["batch"])
        layers = [dataclasses.replace(layer, kind="conv") if layer.kind == "depthwise" else layer
                  for layer in layers_of(model)]
        feats = dict(zip(feature_names(), latency_features(layers, roof, batch)))
        spent = {kind: 0.0 for kind in kinds}
        for op in result["layers"]:
            kind = profile_op_kind(str(op.get("op_type", "")))
            if kind is not None:
                spent[kind] += float(op["ms"])
        records.append((batch, feats, spent, float(result["latency_ms"]) - sum(spent.values())))
    if not records:
        raise EdgekdError("calibration: no layer profiles given: run 'python -m deploy profile' first")

    def fit(subset: list) -> dict[str, float]:
        coef = {name: 0.0 for name in feature_names()}
        for kind in kinds:
            rows = [(r[1], r[2][kind]) for r in subset if r[2][kind] > 0 and r[1][f"{kind}.count"] > 0]
            if not rows:
                continue
            terms = [f"{kind}.compute", f"{kind}.memory", f"{kind}.count"]
            a = np.array([[f[t] for t in terms] for f, _ in rows])
            x = nnls_relative(a, np.array([ms for _, ms in rows]))
            coef.update(dict(zip(terms, map(float, x))))
        coef["depthwise.compute"], coef["depthwise.memory"], coef["depthwise.count"] = (
            coef["conv.compute"], coef["conv.memory"], coef["conv.count"])
        coef["intercept"] = max(0.0, float(np.median([r[3] for r in subset])))
        return coef

    fits = {"all": fit(records)}
    samples = {"all": len(records)}
    batches = sorted({r[0] for r in records})
    if len(batches) > 1:
        for batch in batches:
            subset = [r for r in records if r[0] == batch]
            fits[str(batch)], samples[str(batch)] = fit(subset), len(subset)
    return Calibration(profile=profile.name, precision=profile.runtime.precision,
                       hardware=dataclasses.asdict(profile.hardware), fits=fits,
                       samples=samples, source=source or "deploy layer profiles")
