"""Budgeted student search: enumerate the space, cost every candidate, keep those that fit
the device budget, find the Pareto front and shortlist students for training.

* **Budget.** A candidate is feasible when ``MACs <= max_macs`` (per sample) and its latency at the
  profile's budget batch is ``<= latency_ms``. Both default to the profile's budget. The latency is
  *calibrated* when a calibration is given (or found as ``OUT/calibration-PROFILE.json``, or the
  profile's kernel table written by ``edgekd calibrate`` is in its default place,
  :mod:`edgekd.search.kernel_model`), else *predicted* (roofline); with ``measure=True`` (host
  profile only) the shortlisted candidates are *measured* on this host and a candidate whose
  measured latency breaks the budget is replaced by the next one. Every latency carries its label.
* **Pareto front** over (latency, parameters, depth): lower latency, and for the same cost more
  parameters and more depth (FitNets: at a fixed multiply budget the deeper, more capable
  student wins once hints make it trainable). A candidate is on the front when no other
  candidate is at least as good on all three and strictly better on one.
* **Shortlist** of N for training that spans depths: N depths spread evenly over the feasible
  depth range; at each, the candidate with the most MACs that fits (Pareto members first),
  i.e. the most capable student of that depth; remaining places go round-robin over depths.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from edgekd.search.cost import block_cost_cache, spec_cost, spec_totals
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import write_jsonl
from edgekd.core.runfolder import CANDIDATES_JSONL, SEARCH, SEARCH_JSON, write_doc
from edgekd.search.latency import Calibration, LatencyEstimate, predict_latency
from edgekd.search.families import default_families
from edgekd.search.buildable import ParserFilter, parser_filter, report_skipped
from edgekd.search.config import SearchConfig
from edgekd.search.grid import enumerate_specs
from edgekd.search.space import SpaceConfig, StudentSpec
from edgekd.core.units import format_count

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.search.kernel_model import KernelTable
    from edgekd.inputs.profiles import DeviceProfile

HOST_PROFILE = "host-cpu"
COST_CACHE_NAME = "cost-blocks.json"


@dataclass
class Candidate:
    """One enumerated student with its cost; ``latency`` is at the budget batch."""

    spec: StudentSpec
    macs: int
    params: int
    latency: LatencyEstimate | None  # None: not estimated (over the MAC budget)
    estimate: LatencyEstimate | None = None  # the predicted/calibrated value when measured
    pareto: bool = False
    shortlisted: bool = False

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def depth(self) -> int:
        return self.spec.depth

    def to_record(self) -> dict[str, Any]:
        """The candidates.jsonl line."""
        record = {
            "id": self.id, "spec": self.spec.to_dict(), "family": self.spec.family,
            "macs": self.macs, "params": self.params, "depth": self.depth,
            "widths": list(self.spec.widths), "guided_layer": self.spec.guided_layer,
            "latency": self.latency.to_dict() if self.latency else None, "pareto": self.pareto,
            "shortlisted": self.shortlisted,
        }
        if self.estimate is not None:
            record["latency_estimate"] = self.estimate.to_dict()
        return record


@dataclass
class SearchResult:
    """What :func:`search_candidates` found (lists share the same Candidate objects)."""

    candidates: list[Candidate]  # every enumerated student
    feasible: list[Candidate]  # within both budgets, sorted by latency
    pareto: list[Candidate]
    shortlist: list[Candidate]
    max_macs: int
    latency_ms: float
    batch: int
    profile: str
    latency_label: str
    seconds: float
    out_dir: Path | None = None
    calibration: str | None = None
    measured: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "max_macs": self.max_macs, "latency_ms": self.latency_ms,
            "batch": self.batch, "latency_label": self.latency_label,
            "calibration": self.calibration, "enumerated": len(self.candidates),
            "feasible": len(self.feasible), "pareto": len(self.pareto),
            "shortlist": [c.id for c in self.shortlist], "measured": self.measured,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


# ---------------------------------------------------------------------------- Pareto
def pareto_mask(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[bool]:
    """True for the points no other point dominates. ``senses[j]`` is "min" or "max".

    ``a`` dominates ``b`` when ``a`` is at least as good on every objective and strictly
    better on one. Vectorised in chunks: O(n^2) comparisons, fine for ~10^4 points.
    """
    import numpy as np

    if not len(points):
        return []
    sign = np.array([1.0 if s == "min" else -1.0 for s in senses])
    if not set(senses) <= {"min", "max"}:
        raise ValueError(f"senses must be 'min' or 'max', got {senses}")
    x = np.asarray(points, dtype=float) * sign  # now every objective is minimised
    dominated = np.zeros(len(x), dtype=bool)
    chunk = max(1, 2_000_000 // max(1, len(x)))
    for start in range(0, len(x), chunk):
        b = x[start:start + chunk, None, :]  # (c, 1, k): the points being tested
        no_worse = (x[None, :, :] <= b).all(axis=2)
        better = (x[None, :, :] < b).any(axis=2)
        dominated[start:start + chunk] = (no_worse & better).any(axis=1)
    return (~dominated).tolist()


def pareto_front(candidates: Sequence[Candidate], by: str = "latency") -> list[Candidate]:
    """Candidates on the front of (``by`` = "latency" or "macs": min; params: max; depth: max)."""
    cost = (lambda c: c.latency.ms) if by == "latency" else (lambda c: c.macs)
    points = [(cost(c), c.params, c.depth) for c in candidates]
    return [c for c, keep in zip(candidates, pareto_mask(points, ("min", "max", "max"))) if keep]


# ---------------------------------------------------------------------------- shortlist
def _spread(values: list[int], n: int) -> list[int]:
    """``n`` of ``values`` (sorted, distinct) spread evenly from the smallest to the largest."""
    if n >= len(values):
        return list(values)
    if n == 1:
        return [values[-1]]
    picks = {values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)}
    return sorted(picks)


def select_shortlist(feasible: Sequence[Candidate], n: int) -> list[Candidate]:
    """N candidates spanning depths; per depth the most capable first (see module docstring)."""
    if n <= 0 or not feasible:
        return []
    by_depth: dict[int, list[Candidate]] = {}
    for c in feasible:
        by_depth.setdefault(c.depth, []).append(c)
    for group in by_depth.values():
        group.sort(key=lambda c: (not c.pareto, -c.macs, -c.params, c.id))
    depths = sorted(by_depth)
    order = _spread(depths, n) + [d for d in reversed(depths) if d not in _spread(depths, n)]
    chosen: list[Candidate] = []
    rank = 0
    while len(chosen) < n and any(rank < len(by_depth[d]) for d in depths):
        for d in order:
            if rank < len(by_depth[d]) and len(chosen) < n:
                chosen.append(by_depth[d][rank])
        rank += 1
    return sorted(chosen, key=lambda c: (c.depth, c.macs))


# ---------------------------------------------------------------------------- search
def default_cost_cache() -> Path:
    from edgekd.core.cache import cache_root

    return cache_root() / COST_CACHE_NAME


def _resolve_calibration(calibration: "Calibration | KernelTable | str | Path | None",
                         profile: "DeviceProfile", out_dir: Path | None
                         ) -> tuple["Calibration | KernelTable | None", str | None]:
    """The calibrated model to use: the one given (a Calibration or a kernel table, object or
    file), else OUT/calibration-PROFILE.json if present, else the profile's kernel table in
    its default place (``edgekd calibrate`` writes it there); None: predict (roofline)."""
    from edgekd.search.kernel_model import KernelTable, find_table, load_latency_model

    found: Calibration | KernelTable | None = None
    source: str | None = None
    if isinstance(calibration, (Calibration, KernelTable)):
        found, source = calibration, calibration.source or "given"
    elif calibration is not None:
        source = str(calibration)
        found = load_latency_model(calibration)
    elif out_dir is not None and (out_dir / f"calibration-{profile.name}.json").is_file():
        source = str(out_dir / f"calibration-{profile.name}.json")
        found = Calibration.load(source)
    else:
        found = find_table(profile)
        source = found.source if found is not None else None
    if isinstance(found, KernelTable):
        found.check_for(profile, source or "")
    elif found is not None and (found.profile, found.precision) != (profile.name, profile.runtime.precision):
        raise EdgekdError(f"calibration {source} was fitted for profile '{found.profile}' "
                          f"({found.precision}), not '{profile.name}' ({profile.runtime.precision}): "
                          "pass a calibration made on this device, or none")
    return found, source


def _infeasible_message(smallest: Candidate, fastest: Candidate | None, max_macs: int,
                        latency_ms: float, batch: int) -> str:
    text = (f"no student fits MACs <= {format_count(max_macs)} and latency <= {latency_ms:g} ms "
            f"(batch {batch}): the smallest candidate needs {format_count(smallest.macs)} MACs "
            f"and {smallest.latency.ms:.3g} ms ({smallest.latency.label})")
    if fastest is not None and fastest is not smallest:
        text += (f", the fastest within the MAC budget {format_count(fastest.macs)} MACs and "
                 f"{fastest.latency.ms:.3g} ms ({fastest.latency.label})")
    return text + "; raise the budget (--max-macs / --latency-ms) or pick a larger profile"


def search_candidates(profile: "DeviceProfile", input_shape: Sequence[int], classes: int, *,
                      max_macs: int | None = None, latency_ms: float | None = None,
                      families: Iterable[str] | None = None, shortlist: int = SearchConfig.shortlist,
                      measure: bool = False,
                      measurer: "Callable[[StudentSpec, Path, int], LatencyEstimate] | None" = None,
                      calibration: "Calibration | KernelTable | str | Path | None" = None,
                      out_dir: str | Path | None = None, space: SpaceConfig | None = None,
                      cost_cache: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> SearchResult:
    """Enumerate, cost, filter by budget, find the Pareto front and shortlist.

    ``max_macs`` / ``latency_ms`` override the profile's budget. With ``out_dir`` the feasible
    candidates go to ``out_dir/candidates.jsonl`` and a summary to ``out_dir/search.json``
    (measurements, when ``measure``, to ``out_dir/search/``, each taken by
    ``measurer(spec, folder, batch)``: the caller passes the ship stage's
    :func:`edgekd.ship.measure.measured_latency`, search never imports it). ``cost_cache`` is a JSON file of
    block costs reused across runs. Raises EdgekdError when nothing fits.
    """
    started = time.perf_counter()
    say = progress or (lambda _text: None)
    profile = profile.with_budget(latency_ms=latency_ms, macs=max_macs)
    budget = profile.budget
    out = Path(out_dir) if out_dir is not None else None
    shape = _check_request(profile, input_shape, measure)
    space = _space_for(profile, families, space, shape)
    calib, calib_source = _resolve_calibration(calibration, profile, out)
    timings: dict[str, float] = {}
    estimate = _Estimator(profile, calib)
    candidates, within_macs = _enumerate_and_cost(shape, classes, space, estimate, cost_cache,
                                                  timings, say, parser_filter(profile))

    feasible = [c for c in within_macs if c.latency.ms <= budget.latency_ms]
    measured, measured_shortlist = 0, []
    if feasible and measure:
        if measurer is None:
            raise ValueError("measure=True needs a measurer (edgekd.ship.measure.measured_latency)")
        feasible, measured_shortlist, measured = _measure_shortlist(
            measurer, feasible, shortlist, budget.latency_ms, budget.batch, (out or Path(".")) / "search", say)
    if not feasible:
        raise _infeasible(candidates, within_macs, estimate, budget)
    tick = time.perf_counter()
    front = _mark_pareto(feasible)
    timings["pareto"] = time.perf_counter() - tick
    # with --measure the shortlist is the set of measured survivors
    chosen = measured_shortlist if measure else select_shortlist(feasible, shortlist)
    for c in chosen:
        c.shortlisted = True
    label = "measured" if measure else ("calibrated" if calib is not None else "predicted")
    result = SearchResult(candidates=candidates, feasible=feasible, pareto=front, shortlist=chosen,
                          max_macs=budget.macs, latency_ms=budget.latency_ms, batch=budget.batch,
                          profile=profile.name, latency_label=label,
                          seconds=time.perf_counter() - started, out_dir=out,
                          calibration=calib_source, measured=measured, timings=timings)
    if out is not None:
        _write(out, result, {"profile_detail": profile.to_dict(), "input": list(shape),
                             "classes": classes, "families": list(space.families)})
    return result


def cost_specs(profile: "DeviceProfile", specs: Iterable[StudentSpec], *, calibration: Any = None,
               cost_cache: str | Path | None = None) -> list[Candidate]:
    """Given students (the reference models) costed as the search costs its own: MACs, params, latency."""
    estimate = _Estimator(profile, _resolve_calibration(calibration, profile, None)[0])
    with block_cost_cache(cost_cache):
        found = [Candidate(spec, *spec_totals(spec), None) for spec in specs]
        for c in found:
            estimate(c)
    return found


def _write(out: Path, result: SearchResult, detail: dict[str, Any]) -> None:
    """``candidates.jsonl`` (the feasible candidates) and ``search.json`` (the summary)."""
    write_jsonl(out / CANDIDATES_JSONL, (c.to_record() for c in result.feasible))
    write_doc(SEARCH, out / SEARCH_JSON, {**result.summary(), **detail})


def _check_request(profile: "DeviceProfile", input_shape: Sequence[int], measure: bool
                   ) -> tuple[int, ...]:
    """The input shape as ``(C, H, W)``; refuses another shape, and ``measure`` (timing on this
    host) for a profile of another device."""
    if measure and profile.name != HOST_PROFILE:
        raise EdgekdError(f"--measure times students on this host, but profile '{profile.name}' "
                          f"is another device: drop --measure or use --profile {HOST_PROFILE}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise EdgekdError(f"input shape {shape} is not CxHxW: give e.g. --input 1x28x28")
    return shape


def _enumerate_and_cost(shape: tuple[int, ...], classes: int, space: SpaceConfig,
                        estimate: "_Estimator", cost_cache: str | Path | None, timings: dict[str, float],
                        say: Callable[[str], None], parser: "ParserFilter | None" = None
                        ) -> tuple[list[Candidate], list[Candidate]]:
    """Every student of ``space`` its TensorRT parses (``parser``) as a Candidate, those within budget costed."""
    tick = time.perf_counter()
    specs = enumerate_specs(shape, classes, space, keep=parser.keep if parser else None)
    timings["enumerate"] = time.perf_counter() - tick
    report_skipped(parser, say, len(specs))
    say(f"enumerated {len(specs)} students in {timings['enumerate']:.1f} s")
    tick = time.perf_counter()
    candidates, within_macs = _cost(specs, estimate, estimate.profile.budget.macs, cost_cache)
    timings["cost"] = time.perf_counter() - tick
    say(f"costed {len(candidates)} students ({len(within_macs)} within the MAC budget, "
        f"latency estimated for those) in {timings['cost']:.1f} s")
    return candidates, within_macs


def device_class(profile: "DeviceProfile") -> str:
    """``gpu`` for GPU and Jetson profiles or a GPU backend (TensorRT), else ``cpu``: which
    families a search at 64 px and more takes by default (:func:`default_families`)."""
    from edgekd.inputs.profiles import GPU_BACKENDS

    return "gpu" if profile.kind in ("gpu", "jetson") or profile.runtime.backend in GPU_BACKENDS else "cpu"


def _space_for(profile: "DeviceProfile", families: Iterable[str] | None,
               space: SpaceConfig | None, shape: Sequence[int]) -> SpaceConfig:
    """The search space with ``families`` (else the space's, else the defaults: for inputs of
    64 px and more those of the profile's device class) and, unless given, the profile's
    channel multiple (widths suit the device: multiples of 8 on GPUs)."""
    space = space or SpaceConfig()
    if families is not None:
        families = tuple(families)
    elif space.families:
        families = space.families
    else:
        families = default_families(device_class(profile) if space.scaled(shape) else None)
    space = dataclasses.replace(space, families=families)
    if space.width_multiple is None:
        space = dataclasses.replace(space, width_multiple=profile.search.channel_multiple)
    return space


def _mark_pareto(feasible: list[Candidate]) -> list[Candidate]:
    """Sort ``feasible`` by latency (in place), flag and return its Pareto front."""
    feasible.sort(key=lambda c: (c.latency.ms, c.macs, c.id))
    front = pareto_front(feasible)
    for c in front:
        c.pareto = True
    return front


@dataclass
class _Estimator:
    """A candidate's latency at the budget batch: calibrated when a calibration is given,
    else predicted (roofline); computed once and kept on the candidate."""

    profile: "DeviceProfile"
    calib: "Calibration | KernelTable | None"

    def __call__(self, c: Candidate) -> LatencyEstimate:
        if c.latency is None:
            layers = spec_cost(c.spec)
            batch = self.profile.budget.batch
            c.latency = (self.calib.predict(layers, batch) if self.calib is not None
                         else predict_latency(layers, self.profile, batch))
        return c.latency


def _cost(specs: list[StudentSpec], estimate: _Estimator, max_macs: int,
          cost_cache: str | Path | None) -> tuple[list[Candidate], list[Candidate]]:
    """Every spec as a Candidate with its MACs and parameters, and those within ``max_macs``
    with their latency estimated (MACs first: cheap, and they decide most of the filtering)."""
    with block_cost_cache(cost_cache):
        candidates = [Candidate(spec, *spec_totals(spec), None) for spec in specs]
        within_macs = [c for c in candidates if c.macs <= max_macs]
        for c in within_macs:
            estimate(c)
    return candidates, within_macs


def _infeasible(candidates: list[Candidate], within_macs: list[Candidate], estimate: _Estimator,
                budget: Any) -> EdgekdError:
    """The error for a budget no candidate fits: the smallest and the fastest candidate."""
    smallest = min(candidates, key=lambda c: (c.macs, c.id))
    estimate(smallest)
    fastest = min((c for c in within_macs if c.latency is not None),
                  key=lambda c: (c.latency.ms, c.macs), default=None)
    return EdgekdError(_infeasible_message(smallest, fastest, budget.macs,
                                           budget.latency_ms, budget.batch))


def _measure_shortlist(measurer: "Callable[[StudentSpec, Path, int], LatencyEstimate]",
                       feasible: list[Candidate], n: int, latency_ms: float, batch: int,
                       workdir: Path, say: Callable[[str], None]
                       ) -> tuple[list[Candidate], list[Candidate], int]:
    """Measure the shortlisted candidates on the host; drop the ones over budget and shortlist
    again until ``n`` measured candidates fit or nothing is left (at most 3n measurements).
    Returns the candidates still feasible, the measured shortlist and the measurement count."""
    remaining = list(feasible)
    measured = 0
    chosen = select_shortlist(remaining, n)
    while measured < 3 * max(n, 1):
        todo = [c for c in chosen if c.latency.label != "measured"]
        if not todo:
            break
        for c in todo:
            say(f"measuring {c.id} ({c.spec.describe()}) at batch {batch}")
            c.estimate = c.latency
            c.latency = measurer(c.spec, workdir, batch)  # the ship stage: export + deploy bench
            measured += 1
        remaining = [c for c in remaining if c.latency.ms <= latency_ms]
        chosen = select_shortlist(remaining, n)
    return remaining, [c for c in chosen if c.latency.label == "measured"], measured


def budget_coster(profile: "DeviceProfile",
                  calibration: "Calibration | KernelTable | str | Path | None" = None
                  ) -> Callable[[StudentSpec], Candidate | None]:
    """A function that costs one student exactly as the search does (MACs and parameters, then
    the latency at the budget batch: calibrated when a calibration is given, else predicted) and
    returns its :class:`Candidate` when it fits ``profile``'s budget, else None. For callers that
    meet students outside the enumerated space (the sub-networks of a supernet)."""
    calib, _ = _resolve_calibration(calibration, profile, None)
    estimate = _Estimator(profile, calib)
    budget = profile.budget

    def cost(spec: StudentSpec) -> Candidate | None:
        candidate = Candidate(spec, *spec_totals(spec), None)
        if candidate.macs > budget.macs:
            return None
        return candidate if estimate(candidate).ms <= budget.latency_ms else None

    return cost
