"""Successive halving over training epochs (Jamieson & Talwalkar 2016; Li et al. 2018, Hyperband).

Every shortlisted candidate is trained for ``min_epochs``; the best ``1/eta`` of them by
validation accuracy are trained on (continuing from their checkpoints) to ``eta`` times
as many epochs, and so on, until the last rung trains the finalists to ``max_epochs``.
With ``n`` candidates, rung ``i`` (0-based) keeps

    n_i = max(finalists, ceil(n / eta**i))   candidates, trained to
    e_i = min(max_epochs, min_epochs * eta**i) epochs   (the last rung: e = max_epochs).

Promoted trials continue from their checkpoints. The LAST rung is the final training: with
``fresh_final`` (the default) its ``finalists`` are trained from scratch for ``max_epochs``
(a fresh cosine schedule, exactly what training that student fully would give; continuing
instead restarts the schedule at every rung, which costs accuracy), and the selection rungs
before it stop below ``max_epochs``. The epochs spent are
``sum_{selection rungs} n_i * (e_i - e_{i-1}) + finalists * max_epochs`` instead of
``n * max_epochs`` for training every candidate fully (9 candidates, eta 3, 1..9 epochs:
9 + 3*2 + 9 = 24 epochs instead of 81). Without ``fresh_final`` the last rung continues too
(21 epochs here).

When the schedule leaves no room for selection (the first rung would already reach
``max_epochs``, e.g. fitnet's first rung needs 2 epochs and ``--epochs 2``, or ``rungs=1``),
the plan is ONE fresh rung that trains every candidate to ``max_epochs`` and the best is
picked: no shortlisted candidate is ever dropped untrained. :func:`describe_plan` says the
plan in one line, printed before training starts and stored in run.json.

This module holds the schedule and the promotion rule only: ONE scheduler
(:class:`SuccessiveHalving`) drives every executor (see :mod:`edgekd.run.executors`) and reads
and writes its bookkeeping through a :class:`RungStore` (see :mod:`edgekd.run.rundir`), so a run
killed at any moment resumes without training a finished (rung, trial) again.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig


@dataclass(frozen=True)
class HalvingConfig:
    """The halving schedule: ``eta`` (keep 1/eta per rung), epochs of the first and the last
    rung, how many finalists the last rung trains, and optionally a fixed number of rungs
    (default: as many as it takes to get from all candidates down to the finalists)."""

    eta: int = 3
    min_epochs: int = 1
    max_epochs: int = 9
    finalists: int = 1
    rungs: int | None = None
    fresh_final: bool = True

    def __post_init__(self) -> None:
        if self.eta < 2:
            raise EdgekdError(f"halving eta {self.eta} is below 2: use --eta 2 or more")
        if self.min_epochs < 1 or self.max_epochs < self.min_epochs:
            raise EdgekdError(f"halving epochs {self.min_epochs}..{self.max_epochs} are not a "
                              "valid range: use 1 <= --min-epochs <= --epochs")
        if self.finalists < 1:
            raise EdgekdError(f"finalists {self.finalists} is below 1: use --finalists 1 or more")
        if self.rungs is not None and self.rungs < 1:
            raise EdgekdError(f"rungs {self.rungs} is below 1: use --rungs 1 or more")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rung:
    """One rung: its index, how many candidates it trains and to how many epochs in total;
    ``fresh``: trained from scratch (the final rung with ``fresh_final``), not continued."""

    index: int
    keep: int
    epochs: int
    fresh: bool = False

    def folder(self, trial_id: str) -> str:
        """The trial folder of ``trial_id`` in this rung: ``ID`` for rungs that continue one
        checkpoint, ``ID-final`` for the fresh final training (a new folder, a new schedule)."""
        return f"{trial_id}-final" if self.fresh else trial_id


def plan_rungs(n_candidates: int, config: HalvingConfig) -> list[Rung]:
    """The rungs for ``n_candidates`` (formulas in the module docstring).

    Continued rungs: a rung that would add no epoch is dropped (the next rung picks from the
    one before) and two rungs with the same candidates are merged, so ``keep`` strictly
    decreases and ``epochs`` strictly increases. With ``fresh_final`` the selection rungs stop
    below ``max_epochs`` and above ``finalists`` candidates, and one fresh final rung of
    ``finalists`` x ``max_epochs`` follows; when no selection rung fits, that fresh rung
    trains all ``n_candidates`` (never fewer: nothing is dropped without being trained).
    """
    if n_candidates < 1:
        raise EdgekdError("no candidates to train: relax the budget or raise --candidates")
    eta, finalists = config.eta, min(config.finalists, n_candidates)
    if config.rungs is not None:
        count = config.rungs
    else:
        count = 1 + max(0, math.ceil(math.log(n_candidates / finalists, eta) - 1e-9))
    rungs: list[Rung] = []
    for i in range(count):
        keep = n_candidates if i == 0 else max(finalists, math.ceil(n_candidates / eta ** i))
        last = i == count - 1
        epochs = config.max_epochs if last else min(config.max_epochs, config.min_epochs * eta ** i)
        if config.fresh_final and (last or epochs >= config.max_epochs or keep <= finalists):
            break  # selection is over: the fresh final rung follows
        if rungs and epochs == rungs[-1].epochs:
            continue  # no more training: the next rung picks from the previous one
        if rungs and keep == rungs[-1].keep:
            rungs[-1] = Rung(rungs[-1].index, keep, epochs)  # same set trained longer: one rung
            continue
        rungs.append(Rung(len(rungs), keep, epochs))
    if config.fresh_final:
        # no selection rung: train every candidate fully and pick the best
        keep = finalists if rungs else n_candidates
        rungs.append(Rung(len(rungs), keep, config.max_epochs, fresh=True))
    return rungs


def describe_plan(rungs: list[Rung], n_candidates: int | None = None) -> str:
    """The plan in one line, e.g. ``plan: 3 rungs: 9 trials x 1 ep -> 3 x 3 ep -> 1 x 9 ep
    (from scratch); 24 epochs in all (81 to train all 9 fully)``."""
    n = rungs[0].keep if n_candidates is None else n_candidates
    steps = []
    for i, rung in enumerate(rungs):
        noun = (" trial" if rung.keep == 1 else " trials") if i == 0 else ""
        label = f"{rung.keep}{noun} x {rung.epochs} ep"
        steps.append(label + (" (from scratch)" if rung.fresh and i > 0 else ""))
    count = f"{len(rungs)} rung" + ("s" if len(rungs) != 1 else "")
    if len(rungs) == 1 and n > 1:
        return (f"plan: {count}: {steps[0]} (no room to select: every candidate trained "
                f"fully, the best kept); {epochs_spent(rungs)} epochs in all")
    return (f"plan: {count}: {' -> '.join(steps)}; {epochs_spent(rungs)} epochs in all "
            f"({n * rungs[-1].epochs} to train all {n} fully)")


def plan_record(rungs: list[Rung]) -> dict[str, Any]:
    """The plan as stored in run.json: the rungs (keep, epochs, fresh), the epochs they
    train and the one-line description."""
    return {"rungs": [asdict(r) for r in rungs], "epochs": epochs_spent(rungs),
            "text": describe_plan(rungs)}


def epochs_spent(rungs: Iterable[Rung]) -> int:
    """Epochs a plan trains: continued rungs add their new epochs, a fresh rung all of its."""
    spent, previous = 0, 0
    for rung in rungs:
        spent += rung.keep * (rung.epochs if rung.fresh else rung.epochs - previous)
        previous = rung.epochs
    return spent


def promote(results: dict[str, dict], order: list[str], keep: int,
            groups: dict[str, Any] | None = None) -> list[str]:
    """The ``keep`` best trial ids by validation accuracy; ties go to the earlier candidate
    in ``order`` (the search's ranking), so the choice is deterministic.

    With ``groups`` (trial id -> group, e.g. shallow/deep), the best trial of every group is
    kept first (best groups first, while ``keep`` allows), then the rest by accuracy: a deep
    student, slower to start, is not dropped after a short rung only because shallow ones
    converge faster (FitNets' point is that depth pays once it is trained long enough)."""
    rank = {tid: i for i, tid in enumerate(order)}
    ranked = sorted(results, key=lambda tid: (-float(results[tid]["val_acc"]), rank[tid]))
    if not groups:
        return ranked[:keep]
    chosen: list[str] = []
    for tid in ranked:
        if len(chosen) < keep and groups.get(tid) not in {groups.get(c) for c in chosen}:
            chosen.append(tid)
    chosen += [tid for tid in ranked if tid not in chosen][: keep - len(chosen)]
    return sorted(chosen, key=ranked.index)


def depth_groups(depths: dict[str, int]) -> dict[str, str]:
    """Trial id -> ``"shallow"`` (depth at or below the median of ``depths``) or ``"deep"``."""
    if not depths:
        return {}
    values = sorted(depths.values())
    median = values[(len(values) - 1) // 2]
    return {tid: "shallow" if d <= median else "deep" for tid, d in depths.items()}


@dataclass(frozen=True)
class TrialPayload:
    """What a worker trains for one job: the student (its spec.json document) and the
    :class:`~edgekd.distill.config.TrainConfig` of the trial. Plain data, so it pickles for the
    Ray and process executors."""

    spec: dict[str, Any]
    config: TrainConfig
    #: starting weights (a state_dict of the spec's student) instead of a fresh initialisation;
    #: a checkpoint in the trial folder still wins, so a resumed trial continues from it
    init_state: dict[str, Any] | None = None


@dataclass
class TrialJob:
    """One unit of work for an executor: train ``trial_id`` to ``epochs`` epochs in total,
    in the trial folder ``folder`` (default: the trial id; a fresh final rung uses its own)."""

    trial_id: str
    rung: int
    epochs: int
    payload: TrialPayload | None = None
    folder: str = ""

    def __post_init__(self) -> None:
        self.folder = self.folder or self.trial_id


class Executor(Protocol):
    """Runs jobs and reports each finished one to the driver through ``on_done``."""

    def run(self, jobs: list[TrialJob], on_done: Callable[[TrialJob, dict], None]) -> None: ...


class RungStore(Protocol):
    """Where the scheduler keeps (rung, trial) results; see :class:`edgekd.run.rundir.RunDir`."""

    def rung_result(self, rung: int, trial_id: str, epochs: int,
                    folder: str | None = None) -> dict | None: ...

    def record_rung(self, rung: int, trial_id: str, epochs: int, result: dict,
                    folder: str | None = None) -> None: ...


@dataclass
class HalvingEvent:
    """What the live view is told: ``kind`` in {"plan", "rung", "trial", "done"}; "plan"
    comes once, before any training (its ``rung`` is the first)."""

    kind: str
    rung: Rung
    rungs: list[Rung]
    done: int
    total: int
    trial_id: str | None = None
    result: dict | None = None
    best: tuple[str, float] | None = None
    skipped: bool = False
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass
class HalvingResult:
    rungs: list[Rung]
    survivors: list[list[str]]     # the trial ids trained in each rung
    results: dict[str, dict]       # each trial's latest result (highest rung it reached)
    trained: list[tuple[int, str]]  # (rung, trial) pairs trained in THIS process (not resumed)
    finalists: list[str]

    @property
    def epochs_spent(self) -> int:
        return epochs_spent(self.rungs)


class SuccessiveHalving:
    """Drives the rungs: asks ``store`` what is already done, hands the rest to ``executor``,
    records each finished (rung, trial) immediately, promotes the best ``1/eta``."""

    def __init__(self, config: HalvingConfig, make_job: Callable[[str, Rung], TrialJob],
                 store: RungStore, on_event: Callable[[HalvingEvent], None] | None = None,
                 groups: dict[str, Any] | None = None) -> None:
        self.config = config
        self.make_job = make_job
        self.store = store
        self.on_event = on_event or (lambda event: None)
        self.groups = groups  # see promote(): every group keeps its best while keep allows

    def run(self, candidate_ids: list[str], executor: Executor) -> HalvingResult:
        rungs = plan_rungs(len(candidate_ids), self.config)
        tally = _Tally(self.on_event, rungs, total=sum(r.keep for r in rungs),
                       remaining_epochs=epochs_spent(rungs))
        alive = list(candidate_ids)
        survivors: list[list[str]] = []
        latest: dict[str, dict] = {}
        trained: list[tuple[int, str]] = []
        previous_epochs = 0
        tally.event("plan", rungs[0])
        for rung in rungs:
            alive = alive[: rung.keep] if rung.index == 0 else alive
            survivors.append(list(alive))
            tally.event("rung", rung)
            rung_results = self._run_rung(rung, alive, executor, tally, previous_epochs, trained)
            latest.update(rung_results)
            previous_epochs = rung.epochs
            if rung.index + 1 < len(rungs):
                alive = promote(rung_results, candidate_ids, rungs[rung.index + 1].keep, self.groups)
        finalists = promote({t: latest[t] for t in alive}, candidate_ids,
                            min(self.config.finalists, len(alive)))
        tally.event("done", rungs[-1])
        return HalvingResult(rungs, survivors, latest, trained, finalists)

    def _run_rung(self, rung: Rung, alive: list[str], executor: Executor, tally: "_Tally",
                  previous_epochs: int, trained: list[tuple[int, str]]) -> dict[str, dict]:
        """Train the trials of ``rung`` the store has no result for; returns every trial's
        result. A continued trial trains ``rung.epochs - previous_epochs`` more epochs."""
        step = rung.epochs - (0 if rung.fresh else previous_epochs)
        rung_results: dict[str, dict] = {}
        todo: list[TrialJob] = []
        for tid in alive:
            job = self.make_job(tid, rung)
            found = self.store.rung_result(rung.index, tid, rung.epochs, folder=job.folder)
            if found is None:
                todo.append(job)
                continue
            rung_results[tid] = found
            tally.count(tid, found, step)
            tally.event("trial", rung, trial_id=tid, result=found, skipped=True)

        def finished(job: TrialJob, result: dict) -> None:
            self.store.record_rung(rung.index, job.trial_id, rung.epochs, result, folder=job.folder)
            rung_results[job.trial_id] = result
            trained.append((rung.index, job.trial_id))
            tally.count(job.trial_id, result, step, seconds=float(result.get("job_seconds") or 0.0))
            tally.event("trial", rung, trial_id=job.trial_id, result=result)

        if todo:
            executor.run(todo, finished)
        missing = [tid for tid in alive if tid not in rung_results]
        if missing:
            raise RuntimeError(f"executor returned no result for {missing}")
        return rung_results


class _Tally:
    """The progress of a halving run for its events: trials done, the best so far, and the
    ETA from the median seconds per trained epoch times the epochs left."""

    def __init__(self, on_event: Callable[[HalvingEvent], None], rungs: list[Rung], *, total: int,
                 remaining_epochs: int) -> None:
        self.on_event, self.rungs, self.total = on_event, rungs, total
        self.remaining_epochs = remaining_epochs
        self.done = 0
        self.best: tuple[str, float] | None = None
        self.epoch_seconds: list[float] = []
        self.started = time.monotonic()

    def count(self, tid: str, result: dict, epochs: int, seconds: float = 0.0) -> None:
        """One trial finished (or found done) after ``epochs`` epochs; ``seconds`` > 0 (set
        by the executor) feeds the ETA."""
        self.done += 1
        self.remaining_epochs -= epochs
        if seconds > 0 and epochs > 0:
            self.epoch_seconds.append(seconds / epochs)
        self.best = _better(self.best, tid, result)

    def event(self, kind: str, rung: Rung, **kw: Any) -> None:
        # the median: the first trial also pays one-time steps (the teacher's cached outputs)
        typical = statistics.median(self.epoch_seconds) if self.epoch_seconds else None
        eta_s = None if typical is None else typical * self.remaining_epochs
        self.on_event(HalvingEvent(kind, rung, self.rungs, self.done, self.total, best=self.best,
                                   elapsed_s=time.monotonic() - self.started, eta_s=eta_s, **kw))


def _better(best: tuple[str, float] | None, tid: str, result: dict) -> tuple[str, float]:
    acc = float(result["val_acc"])
    return (tid, acc) if best is None or acc > best[1] else best
