"""Per-kernel latencies from ``python -m deploy profile``: the layer times a runtime reports on
a device, matched to edgekd's fused kernels, build or update a kernel table.

A layer profile (``edgekd.layer-profile/1``, :mod:`deploy.profile`) lists the kernels the
runtime ran, in execution order, each with its median time in ms and, from ONNX Runtime, its
input and output shapes (weights included). :func:`match_profile` pairs them with the
kernels of :func:`edgekd.search.kernels.kernels_of`:

* each runtime layer gets a category from its op type (:data:`OP_CATEGORIES`: ``conv``,
  ``gemm``, ``pool``, ``add``, ``elementwise``); layout and shape ops (NCHWc reorders,
  reshapes, TensorRT reformats, ...) are per-graph overhead;
* convolutions are matched by their key (depthwise or not, kernel size, output H*W) to the
  first unmatched edgekd kernel with the same key, because the runtime's order can differ
  from edgekd's inside a block (a shortcut convolution runs before or after the main path);
  without shapes (TensorRT) and for the other categories, in order when the counts agree;
* the profiler's own cost inflates every layer a little: layer times are scaled by
  ``min(1, latency_ms / total_ms)`` (``latency_ms``: the same runs timed without the
  profiler), and the per-graph constant is ``latency_ms`` minus the scaled matched layers
  (layout ops, unmatched layers and the session's own dispatch).

A profile whose convolutions cannot all be matched is skipped and reported.
:func:`table_from_kernel_times` then sets each matched signature's latency to the median of
its times, fits the regression fallback per batch and group on the single kernels (the same
``a*MACs*b + m*elements*b + o`` terms as :mod:`edgekd.search.kernel_model`, NNLS on relative
error: far better conditioned than from whole-model sums) and the per-graph constants; given
an existing table of the same profile and precision it updates it (measured signatures
replace fitted ones; fallback groups and constants are refitted only where measured).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from edgekd.core.errors import EdgekdError
from edgekd.search.kernel_model import KernelTable
from edgekd.search.kernels import CHANNEL_BLOCKS, Kernel, kernels_of
from edgekd.search.latency import LAYER_PROFILE_FORMAT, layers_of, nnls_relative

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.profiles import DeviceProfile
    from edgekd.search.cost import Layer, ModelCost
    from edgekd.search.space import StudentSpec

#: Op type -> kernel category: the first needle contained in the lower-cased op type wins;
#: no match = per-graph overhead (ReorderInput/Output, Reshape, Flatten, Reformat, ...).
OP_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("conv", "conv"), ("gemm", "gemm"), ("matmul", "gemm"), ("fullyconnected", "gemm"),
    ("pool", "pool"), ("reduce", "pool"), ("add", "add"), ("sum", "add"),
    ("sigmoid", "elementwise"), ("mul", "elementwise"), ("swish", "elementwise"),
    ("clip", "elementwise"), ("pointwise", "elementwise"), ("activation", "elementwise"),
)
_KIND_CATEGORY = {"conv": "conv", "dwconv": "conv", "gemm": "gemm", "pool": "pool", "add": "add",
                  "elementwise": "elementwise"}


def op_category(op_type: str) -> str | None:
    low = op_type.lower()
    return next((cat for needle, cat in OP_CATEGORIES if needle in low), None)


@dataclass
class MatchedProfile:
    """One layer profile matched to a model's kernels."""

    batch: int
    kernel_ms: list[tuple[Kernel, float]]  # matched kernels and their (scaled) times
    constant_ms: float  # latency_ms minus the matched kernels' time
    unmatched: list[str] = field(default_factory=list)  # runtime layers left over


def _kernel_key(kernel: Kernel) -> tuple[bool, int, int]:
    side = math.isqrt(kernel.hw)
    out = -(-side // max(1, kernel.stride))
    return kernel.kind == "dwconv", kernel.k, out * out


def _layer_key(layer: dict[str, Any]) -> tuple[bool, int, int] | None:
    inputs, outputs = layer.get("inputs") or [], layer.get("outputs") or []
    if len(inputs) < 2 or len(inputs[0]) != 4 or len(inputs[1]) != 4 or not outputs or len(outputs[0]) != 4:
        return None
    weight = inputs[1]
    return (weight[1] == 1 and inputs[0][1] > 1), int(weight[-1]), int(outputs[0][2] * outputs[0][3])


def match_profile(model: "StudentSpec | ModelCost | Sequence[Layer]", result: dict[str, Any],
                  precision: str, *, fuse_add: bool = True) -> MatchedProfile | None:
    """Pair the runtime layers of one layer profile with the model's kernels (module
    docstring); None when its convolutions cannot all be matched."""
    if not isinstance(result, dict) or result.get("format") != LAYER_PROFILE_FORMAT:
        raise EdgekdError("not a layer profile from 'python -m deploy profile' (format "
                          f"{LAYER_PROFILE_FORMAT}): profile the model with it")
    batch = int(result["batch"])
    kernels = kernels_of(layers_of(model), batch, precision, fuse_add=fuse_add)
    layers = [dict(layer) for layer in result.get("layers", [])]
    total = sum(float(layer["ms"]) for layer in layers)
    latency = float(result.get("latency_ms") or total)
    scale = min(1.0, latency / total) if total > 0 else 1.0
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for layer in layers:
        category = op_category(str(layer.get("op_type", "")))
        if category is not None:
            by_category[category].append(layer)
    pairs: list[tuple[Kernel, float]] = []
    used: set[int] = set()
    for category in ("conv", "gemm", "pool", "add", "elementwise"):
        mine = [k for k in kernels if _KIND_CATEGORY[k.kind] == category]
        theirs = by_category.get(category, [])
        keyed = category == "conv" and theirs and all(_layer_key(t) is not None for t in theirs)
        if keyed:
            free = list(range(len(theirs)))
            for k in mine:
                hit = next((i for i in free if _layer_key(theirs[i]) == _kernel_key(k)), None)
                if hit is None:
                    return None
                free.remove(hit)
                pairs.append((k, float(theirs[hit]["ms"]) * scale))
                used.add(id(theirs[hit]))
        elif len(mine) == len(theirs):
            for k, t in zip(mine, theirs):
                pairs.append((k, float(t["ms"]) * scale))
                used.add(id(t))
        elif category == "conv":
            return None
    unmatched = [str(layer.get("name", "?")) for layer in layers
                 if id(layer) not in used and op_category(str(layer.get("op_type", ""))) is not None]
    return MatchedProfile(batch, pairs, max(0.0, latency - sum(ms for _, ms in pairs)), unmatched)


def _fit_group(rows: list[tuple[Kernel, float]], block: int) -> list[float]:
    """``[ms/MAC, ms/element, ms/kernel]`` of one group at one batch (NNLS, relative error);
    with fewer than 3 distinct signatures only the per-kernel constant (their median)."""
    import numpy as np

    if len({k.signature for k, _ in rows}) < 3:
        return [0.0, 0.0, float(np.median([ms for _, ms in rows]))]
    a = np.array([[k.padded_macs(block) * k.batch, k.elems * k.batch, 1.0] for k, _ in rows])
    coef = nnls_relative(a, np.array([ms for _, ms in rows]))
    return [float(x) for x in coef]


def _fallback(rows: list[tuple[Kernel, float]], block: int) -> dict[str, dict[str, list[float]]]:
    grouped: dict[int, dict[str, list[tuple[Kernel, float]]]] = defaultdict(lambda: defaultdict(list))
    for k, ms in rows:
        grouped[k.batch][k.group].append((k, ms))
    return {str(b): {g: _fit_group(r, block) for g, r in groups.items()} for b, groups in grouped.items()}


def _pick_block(rows: list[tuple[Kernel, float]]) -> int:
    """The channel block whose fallback fits the single kernels best (median relative error)."""
    import numpy as np

    best = (float("inf"), 1)
    for block in CHANNEL_BLOCKS:
        probe = KernelTable("", "", {}, _fallback(rows, block), {}, channel_block=block)
        score = float(np.median([abs(probe.fallback_ms(k) / ms - 1) for k, ms in rows if ms > 0]))
        if score < best[0] - 1e-12:
            best = (score, block)
    return best[1]


def table_from_kernel_times(matched: Sequence[MatchedProfile], profile: "DeviceProfile", *,
                            base: KernelTable | None = None, device: str = "",
                            source: str = "") -> KernelTable:
    """Build (or update ``base``) a kernel table from matched layer profiles (module docstring)."""
    import numpy as np

    rows = [(k, ms) for m in matched for k, ms in m.kernel_ms if ms > 0]
    if not rows:
        raise EdgekdError("no layer of the profiles matched an edgekd kernel: profile edgekd-"
                          "exported students with 'python -m deploy profile'")
    if base is not None:
        base.check_for(profile)
    times: dict[str, list[float]] = defaultdict(list)
    for k, ms in rows:
        times[k.signature].append(ms)
    block = base.channel_block if base is not None else _pick_block(rows)
    fallback = _fallback(rows, block)
    constants = {str(b): float(np.median([m.constant_ms for m in matched if m.batch == b]))
                 for b in sorted({m.batch for m in matched})}
    kernels = {s: float(np.median(v)) for s, v in times.items()}
    counts = {s: len(v) for s, v in times.items()}
    if base is None:
        return KernelTable(profile.name, profile.runtime.precision, kernels, fallback, constants,
                           counts=counts, channel_block=block, device=device, source=source)
    for batch, groups in fallback.items():
        base.fallback.setdefault(batch, {}).update(groups)
    base.kernels.update(kernels)
    base.counts.update({s: base.counts.get(s, 0) + n for s, n in counts.items()})
    base.constants.update(constants)
    base.source = f"{base.source}; {source}" if base.source and source else (source or base.source)
    return base
