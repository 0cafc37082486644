"""The kernel-level latency model: a per-device table of fused-kernel latencies.

A student's latency at batch ``b`` is predicted as

    t = c_b + sum over its kernels (edgekd.search.kernels) of T(signature)

where ``T`` is the kernel's measured latency when its signature is in the table, else the
regression fallback of its group ``g`` (kind, 1x1/kxk, thin input):
``T = a_g * MACs * b + m_g * elements * b + s_g * max(0, elements * b - S) + o_g`` (compute,
memory, memory beyond the cache and a fixed launch cost, non-negative), and ``c_b`` is the
per-graph constant (session dispatch, input/output copies, layout reorders) at that batch.
``S`` is the cache in elements (``spill_bytes`` / bytes per element at the precision): a
kernel whose activations and weights at batch ``b`` no longer fit in it streams them from
DRAM, so it costs more per element than one that stays in cache. On the host CPU this term
is what batch 32 needed: an expanded MBConv at 28x28 (19 MB per activation at batch 32) ran
30% slower than the in-cache rate predicted; with the term the held-out share within
+-10% at batch 32 rose from 86-90% to 93-95% over 3 random splits (fallback alone).

**Fitting** (:func:`fit_kernel_table`) from whole-model latencies, as ``edgekd calibrate``
measures them (or from ``deploy bench`` Measurements brought back from a device):

1. the fallback and the constants by non-negative least squares on relative error
   (:func:`edgekd.search.latency.nnls_relative`, outliers beyond 3 MADs dropped), separately
   per batch (a joint fit let the outlier rule drop a whole batch's rows as "outliers"); the
   channel block and the cache size ``S`` are chosen by 2-fold cross-validation
   (:data:`SPILL_BYTES` candidates, 0 = no spill term);
2. the per-signature latencies ``T_s = prior_s * (1 + d_s)`` (``prior`` = the fallback) and
   the constants again, by least squares on relative error with a small ridge on ``d_s``
   (signatures seen in few models stay near the fallback; a signature seen often gets its own
   figure). Known per-kernel costs are recovered from synthetic measurements (a test checks).

The table is a versioned JSON file (:data:`TABLE_FORMAT`) made for one profile and precision;
:meth:`KernelTable.check_for` refuses a table from another profile or precision in one line.
Its default place is next to the profile: ``NAME.kernels.json`` beside a user's profile file,
or ``kernel-tables/NAME.json`` in the user config dir (``$EDGEKD_CONFIG_DIR`` overrides it) for
a shipped one (:func:`default_table_path`). Figures it gives are labelled *calibrated*.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json
from edgekd.search.kernels import CHANNEL_BLOCKS, Kernel, kernels_of
from edgekd.search.latency import (BYTES_PER_ELEMENT, Calibration, LatencyEstimate, layers_of, nnls_relative,
                                   read_model_file)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgekd.search.cost import Layer, ModelCost
    from edgekd.inputs.profiles import DeviceProfile
    from edgekd.search.space import StudentSpec

TABLE_FORMAT = "edgekd.kernel-table/3"
#: Formats :meth:`KernelTable.load` reads (a /2 table has no spill term: 3 coefficients).
READABLE_FORMATS: tuple[str, ...] = (TABLE_FORMAT, "edgekd.kernel-table/2")
#: Cache sizes in bytes the fit tries for the spill term (0 = none); see the module docstring.
SPILL_BYTES: tuple[int, ...] = (0, 2 ** 21, 2 ** 23, 2 ** 25)
CONFIG_ENV = "EDGEKD_CONFIG_DIR"
#: Ridge weight on the relative per-signature corrections d_s (see the module docstring).
RIDGE = 1e-3


def config_root() -> Path:
    """``$EDGEKD_CONFIG_DIR`` if set, else the user config dir for edgekd (measured data that
    cannot simply be rebuilt, unlike the cache)."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("edgekd"))


def default_table_path(profile: "DeviceProfile") -> Path:
    """Where the kernel table of ``profile`` lives unless a path is given (module docstring)."""
    from edgekd.inputs.profiles import available_profiles

    source = Path(profile.source) if profile.source else None
    shipped = profile.name in available_profiles() and (source is None or "device_profiles" in source.parts
                                                        or source.parent.name == "profiles")
    if source is not None and source.suffix == ".toml" and not shipped:
        return source.with_name(f"{source.stem}.kernels.json")
    return config_root() / "kernel-tables" / f"{profile.name}.json"


@dataclass
class KernelTable:
    """Measured fused-kernel latencies of one device (see the module docstring)."""

    profile: str
    precision: str
    kernels: dict[str, float]  # signature -> ms
    fallback: dict[str, dict[str, list[float]]]  # batch -> group -> [ms/MAC, ms/elem, ms/kernel, ms/spilled elem]
    constants: dict[str, float]  # batch -> ms per graph
    counts: dict[str, int] = field(default_factory=dict)  # signature -> models it was seen in
    fuse_add: bool = True
    channel_block: int = 1  # the fallback's compute term pads channels to this block
    spill_bytes: int = 0  # the fallback's cache size S in bytes (0: no spill term)
    device: str = ""
    source: str = ""

    # ------------------------------------------------------------------ prediction
    def kernel_ms(self, kernel: Kernel) -> float:
        measured = self.kernels.get(kernel.signature)
        return measured if measured is not None else self.fallback_ms(kernel)

    def fallback_ms(self, kernel: Kernel) -> float:
        batch = str(kernel.batch)
        if batch not in self.fallback:  # an unmeasured batch: the nearest measured one
            batch = min(self.fallback, key=lambda b: abs(int(b) - kernel.batch), default=batch)
        coefs = self.fallback.get(batch, {})
        a, m, o, *spill = coefs.get(kernel.group) or coefs.get(kernel.kind) or (0.0, 0.0, 0.0)
        return (a * kernel.padded_macs(self.channel_block) * kernel.batch
                + m * kernel.elems * kernel.batch + o
                + (spill[0] * spilled(kernel, self.spill_bytes) if spill else 0.0))

    def constant_ms(self, batch: int) -> float:
        if str(batch) in self.constants:
            return self.constants[str(batch)]
        nearest = min(self.constants, key=lambda b: abs(int(b) - batch), default=None)
        return self.constants[nearest] if nearest is not None else 0.0

    def predict_ms(self, model: "StudentSpec | ModelCost | Sequence[Layer]", batch: int) -> float:
        kernels = kernels_of(layers_of(model), batch, self.precision, fuse_add=self.fuse_add)
        return self.constant_ms(batch) + sum(self.kernel_ms(k) for k in kernels)

    def predict(self, model: "StudentSpec | ModelCost | Sequence[Layer]", batch: int) -> LatencyEstimate:
        return LatencyEstimate(ms=self.predict_ms(model, batch), label="calibrated", batch=batch)

    # ------------------------------------------------------------------ file
    def check_for(self, profile: "DeviceProfile", where: str = "") -> "KernelTable":
        """Refuse (one line) a table measured for another profile or precision."""
        if (self.profile, self.precision) != (profile.name, profile.runtime.precision):
            raise EdgekdError(
                f"kernel table {where or self.source} was measured for profile '{self.profile}' "
                f"({self.precision}), not '{profile.name}' ({profile.runtime.precision}): run "
                f"'edgekd calibrate --profile {profile.name}' or pass that profile's table")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "profile": self.profile, "precision": self.precision,
                "device": self.device, "source": self.source, "fuse_add": self.fuse_add,
                "channel_block": self.channel_block, "spill_bytes": self.spill_bytes,
                "constants": self.constants, "fallback": self.fallback,
                "kernels": dict(sorted(self.kernels.items())), "counts": self.counts}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "KernelTable":
        """The kernel table at ``path`` (:func:`~edgekd.search.latency.read_model_file`, then
        :meth:`from_document`)."""
        return cls.from_document(read_model_file(path, "kernel table", "run 'edgekd calibrate' again"), path)

    @classmethod
    def from_document(cls, data: dict[str, Any], path: str | Path) -> "KernelTable":
        """The kernel table in ``data``, read from ``path``; one error line when it is not one."""
        if data.get("format") not in READABLE_FORMATS:
            raise EdgekdError(f"{path} is not an edgekd kernel table (format {TABLE_FORMAT}): "
                              "run 'edgekd calibrate' again")
        try:
            table = cls(profile=str(data["profile"]), precision=str(data["precision"]),
                       kernels={str(k): float(v) for k, v in data["kernels"].items()},
                       fallback={str(b): {str(k): [float(x) for x in v] for k, v in groups.items()}
                                 for b, groups in data["fallback"].items()},
                       constants={str(k): float(v) for k, v in data["constants"].items()},
                       counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
                       fuse_add=bool(data.get("fuse_add", True)),
                       channel_block=int(data.get("channel_block", 1)),
                       spill_bytes=int(data.get("spill_bytes", 0)), device=str(data.get("device", "")),
                       source=str(path))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise EdgekdError(f"kernel table {path} is malformed ({error}): run 'edgekd calibrate' "
                              "again") from None
        times = [*table.kernels.values(), *table.constants.values(),
                 *(x for groups in table.fallback.values() for v in groups.values() for x in v)]
        if not all(math.isfinite(t) and t >= 0 for t in times) or table.channel_block < 1:
            # every fit here is non-negative: a negative or infinite time was edited in
            raise EdgekdError(f"kernel table {path} holds negative or non-finite times: run "
                              "'edgekd calibrate' again")
        return table


def load_latency_model(path: str | Path) -> "KernelTable | Calibration":
    """The latency model in the file at ``path``, a kernel table or a per-kind calibration, by
    its ``format`` tag: the one loader of latency-model files (read once)."""
    data = read_model_file(path, "latency model", "pass a file 'edgekd calibrate' wrote")
    if data.get("format") in READABLE_FORMATS:
        return KernelTable.from_document(data, path)
    return Calibration.from_document(data, path)


def find_table(profile: "DeviceProfile", path: str | Path | None = None) -> KernelTable | None:
    """The table for ``profile``: the one at ``path`` (must exist), else the default place
    (None when absent). Either is checked against the profile and precision."""
    if path is not None:
        return KernelTable.load(path).check_for(profile, str(path))
    default = default_table_path(profile)
    if not default.is_file():
        return None
    return KernelTable.load(default).check_for(profile, str(default))


# ---------------------------------------------------------------------------- fitting
def spilled(kernel: Kernel, spill_bytes: int) -> float:
    """Elements of ``kernel`` at its batch beyond a cache of ``spill_bytes`` (0: none)."""
    if spill_bytes <= 0:
        return 0.0
    size = BYTES_PER_ELEMENT.get(kernel.precision, 4)
    return max(0.0, kernel.elems * kernel.batch - spill_bytes / size)


def _fallback_design(rows: list[tuple[list[Kernel], int]], groups: list[str], batches: list[int],
                     block: int = 1, spill: int = 0) -> "np.ndarray":
    """Columns: per group (padded MACs*b, elements*b, count, spilled elements), then one
    constant per batch."""
    import numpy as np

    a = np.zeros((len(rows), 4 * len(groups) + len(batches)))
    for i, (kernels, batch) in enumerate(rows):
        for k in kernels:
            g = 4 * groups.index(k.group)
            a[i, g:g + 4] += (k.padded_macs(block) * k.batch, k.elems * k.batch, 1.0, spilled(k, spill))
        a[i, 4 * len(groups) + batches.index(batch)] = 1.0
    return a


def _fit_fallback(rows: list[tuple[list[Kernel], int]], y: "np.ndarray", groups: list[str],
                  batches: list[int], block: int, spill: int = 0) -> dict[str, dict[str, list[float]]]:
    """The regression fallback, one NNLS fit per batch (see the module docstring)."""
    import numpy as np

    fallback: dict[str, dict[str, list[float]]] = {}
    for batch in batches:
        mask = np.array([b == batch for _, b in rows])
        coef = nnls_relative(_fallback_design([r for r, keep in zip(rows, mask) if keep], groups,
                                              [batch], block, spill), y[mask])
        fallback[str(batch)] = {g: [float(x) for x in coef[4 * i:4 * i + 4]] for i, g in enumerate(groups)}
    return fallback


def _pick_block(rows: list[tuple[list[Kernel], int]], y: "np.ndarray", groups: list[str],
                batches: list[int]) -> tuple[int, int]:
    """The channel block and cache size (:data:`SPILL_BYTES`) whose fallback has the lowest
    2-fold cross-validated median relative error (ties: the smaller); (1, 0) when there are
    too few rows to split."""
    import numpy as np

    order = np.random.default_rng(0).permutation(len(rows))
    folds = (order[::2], order[1::2])
    if min(map(len, folds)) < 2 * len(groups) + 2:
        return 1, 0
    best = (float("inf"), 1, 0)
    for block in CHANNEL_BLOCKS:
        for spill in SPILL_BYTES:
            errors = []
            for train, test in (folds, folds[::-1]):
                sub = [rows[i] for i in train]
                if {b for _, b in sub} != set(batches):
                    return 1, 0
                probe = KernelTable("", "", {}, _fit_fallback(sub, y[train], groups, batches, block, spill),
                                    {}, channel_block=block, spill_bytes=spill)
                errors += [abs(sum(map(probe.fallback_ms, rows[i][0])) / y[i] - 1) for i in test]
            score = float(np.median(errors))
            if score < best[0] - 1e-12:
                best = (score, block, spill)
    return best[1], best[2]


def fit_kernel_table(table: Iterable[tuple["StudentSpec | ModelCost | Sequence[Layer]", int, float]],
                     profile: "DeviceProfile", *, fuse_add: bool = True, ridge: float = RIDGE,
                     device: str = "", source: str = "") -> KernelTable:
    """Fit a :class:`KernelTable` to whole-model rows ``(model, batch, measured_ms)``."""
    import numpy as np

    precision = profile.runtime.precision
    rows: list[tuple[list[Kernel], int]] = []
    measured: list[float] = []
    for model, batch, ms in table:
        if not ms > 0:
            raise EdgekdError(f"kernel table: measured latency {ms} ms is not positive: drop it")
        rows.append((kernels_of(layers_of(model), int(batch), precision, fuse_add=fuse_add), int(batch)))
        measured.append(float(ms))
    if len(rows) < 2:
        raise EdgekdError("kernel table: fewer than 2 measurements: measure more models first")
    y = np.asarray(measured)
    groups = sorted({k.group for kernels, _ in rows for k in kernels})
    batches = sorted({b for _, b in rows})
    block, spill = _pick_block(rows, y, groups, batches)
    fallback = _fit_fallback(rows, y, groups, batches, block, spill)
    probe = KernelTable(profile.name, precision, {}, fallback, {}, fuse_add=fuse_add,
                        channel_block=block, spill_bytes=spill)

    signatures = sorted({k.signature for kernels, _ in rows for k in kernels})
    index = {s: i for i, s in enumerate(signatures)}
    prior = np.zeros(len(signatures))
    counts = np.zeros(len(signatures), dtype=int)
    a = np.zeros((len(rows), len(signatures) + len(batches)))
    for r, (kernels, batch) in enumerate(rows):
        seen = set()
        for k in kernels:
            j = index[k.signature]
            prior[j] = max(probe.fallback_ms(k), 1e-6)
            a[r, j] += prior[j]
            seen.add(j)
        counts[list(seen)] += 1
        a[r, len(signatures) + batches.index(batch)] = 1.0
    # unknowns: d_s (T_s = prior_s * (1 + d_s)) and the constants; relative error rows + ridge
    base = a[:, :len(signatures)].sum(axis=1)
    lhs = np.vstack([a / y[:, None], np.hstack([np.sqrt(ridge) * np.eye(len(signatures)),
                                                  np.zeros((len(signatures), len(batches)))])])
    rhs = np.concatenate([(y - base) / y, np.zeros(len(signatures))])
    # the constants enter with their own scale: columns for d_s carry prior_s already
    solution, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    per_kernel = np.maximum(prior * (1 + solution[:len(signatures)]), 0.0)
    constants = {str(b): max(0.0, float(c)) for b, c in zip(batches, solution[len(signatures):])}
    return KernelTable(profile=profile.name, precision=precision,
                       kernels={s: float(per_kernel[i]) for s, i in index.items()},
                       fallback=fallback, constants=constants,
                       counts={s: int(counts[i]) for s, i in index.items()},
                       fuse_add=fuse_add, channel_block=block, spill_bytes=spill, device=device,
                       source=source)
