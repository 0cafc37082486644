"""``edgekd compress``: the whole pipeline in one call, resumable from its run folder.

    profile + teacher + data
      -> search (every student within the budget; shortlist the first ``candidates``)
      -> successive halving (edgekd.run.halving; local or Ray executor, edgekd.run.executors)
      -> final training of the finalists (the last rung) [+ baselines: scratch / kd / fitnet]
      -> the chosen arm retrained on train + validation images (edgekd.run.final_retrain)
      -> export every trained student and the teacher to ONNX, parity-checked
      -> latency: measured on this host (deploy kit); on the target profile measured later
         (``edgekd report --measurements``) or predicted/calibrated by the cost model
      -> report (edgekd.report.report) -> bundle of the winner for the device (edgekd.ship.export)

Every stage writes its files into the run folder (edgekd.run.rundir) and skips work whose files
are already there, so ``--resume`` after a kill continues where the run stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, write_jsonl
from edgekd.core.runfolder import OUTCOME, RESULT, RESULT_JSON, write_doc
from edgekd.distill.config import TRAIN_CONFIG_FORMAT
from edgekd.distill.methods import method_names
from edgekd.run.halving import (Executor, HalvingEvent, HalvingResult, Rung, SuccessiveHalving, TrialJob,
                                epochs_spent, plan_record, plan_rungs)
from edgekd.core.progress import set_notes
from edgekd.run.progress import counting_the_finish, finish_seconds, say
from edgekd.run.references import reference_entries, reference_rows, reference_stage
from edgekd.run.rundir import RunDir, open_run, run_folder, run_folder_line
from edgekd.run.final_retrain import retrain_entry, retrain_stage
from edgekd.run.config import CompressConfig, check_effort, has_hints, train_config
from edgekd.run.selection import best_arm, select_on_unseen_images
from edgekd.run.setup import Inputs, load_inputs, run_identity, train_images
from edgekd.run.ship_stages import bundle_stage, export_stage, int8_stage, measure_stage, on_cpu, teacher_stage
from edgekd.search.config import SearchConfig
from edgekd.search.space import SpaceConfig

if TYPE_CHECKING:
    from edgekd.run.executors import LocalExecutor, RayExecutor

__all__ = ["Summary", "compress", "search_stage"]


BASELINE_RUNG = -1  # rung index under which baseline trials are recorded in halving.jsonl


@dataclass
class Summary:
    """What ``compress`` returns: where things are, the summary dict and the headline."""

    run_dir: Path
    report_md: Path
    report_html: Path
    summary: dict
    headline: str
    bundle: Path | None
    resumed: bool
    seconds: float
    trained: list[tuple[int, str]] = field(default_factory=list)


# ============================================================================ search
def search_config(config: CompressConfig, inputs: Inputs) -> SearchConfig:
    """The search of a run: the profile with its budget (overrides applied by load_inputs), the
    data's input shape and classes, ``candidates`` students to shortlist, the default grid with
    the run's stem strides and families (none: the default for the input size and device)."""
    budget = inputs.profile.budget
    return SearchConfig(profile=inputs.profile.name, input_shape=tuple(inputs.dataset.input_shape),
                        classes=inputs.dataset.num_classes, max_macs=budget.macs,
                        latency_ms=budget.latency_ms, shortlist=config.candidates,
                        calibration=config.calibration,
                        space=SpaceConfig(stem_strides=tuple(config.stem_strides or (1,)),
                                          families=tuple(config.families or ())))


def search_stage(config: CompressConfig, inputs: Inputs) -> tuple[list[dict], list[dict], dict]:
    """Enumerate, cost and filter students (edgekd.search.search, which refuses a budget no student
    meets, naming the smallest); returns (feasible rows for candidates.jsonl, the shortlist
    rows in the search's order, counts)."""
    from edgekd.search.search import default_cost_cache, search_candidates

    search = search_config(config, inputs)  # the budget is inputs.profile's already
    found = search_candidates(inputs.profile, search.input_shape, search.classes, shortlist=search.shortlist,
                              space=search.space, cost_cache=default_cost_cache(),
                              calibration=search.calibration)
    rows = [c.to_record() for c in found.feasible]
    shortlist = [c.to_record() for c in found.shortlist]
    return rows, shortlist, {"candidates_enumerated": len(found.candidates),
                             "candidates_in_budget": len(found.feasible)}


# ============================================================================ training
def run_configs(config: CompressConfig, inputs: Inputs) -> dict[str, Any]:
    """run.json's ``configs``: the run's CompressConfig, its search's SearchConfig and the
    TrainConfig of its final rung, each a tagged JSON document (``from_dict`` reads it back)."""
    from edgekd.distill.config import TrainConfig

    final = TrainConfig(**train_config(config, config.method, config.epochs or 1))
    return {"compress": config.to_dict(), "search": search_config(config, inputs).to_dict(),
            "train": {"format": TRAIN_CONFIG_FORMAT, **final.to_dict()}}


def halving_stage(config: CompressConfig, inputs: Inputs, run: RunDir, shortlist: list[dict],
                  executor: Executor, on_event: Callable[[HalvingEvent], None]) -> HalvingResult:
    from edgekd.run.executors import trial_payload

    specs = {row["id"]: row["spec"] for row in shortlist}

    def make_job(trial_id: str, rung: Rung) -> TrialJob:
        return TrialJob(trial_id, rung.index, rung.epochs, trial_payload(
            specs[trial_id], train_config(config, rung_method(config, rung), rung.epochs)),
            folder=rung.folder(trial_id))

    groups = None
    if config.depth_groups:
        from edgekd.run.halving import depth_groups

        groups = depth_groups({tid: spec_depth(spec) for tid, spec in specs.items()})
    scheduler = SuccessiveHalving(config.halving(), make_job, run, on_event, groups=groups)
    return scheduler.run([row["id"] for row in shortlist], executor)


def store_plan(run: RunDir, rungs: list[Rung], options: dict[str, Any] | None = None,
               configs: dict[str, Any] | None = None) -> None:
    """run.json's ``plan`` (rungs x trials x epochs), written before any training, the
    command's ``options`` (``edgekd compress --config run.json`` runs it again) and the run's
    ``configs`` (:func:`run_configs`); the same identity gives the same plan, so a resumed run
    leaves them as they are."""
    manifest = run.manifest()
    extra: dict[str, Any] = {"plan": plan_record(rungs)}
    if options is not None and "options" not in manifest:
        extra["options"] = options
    if configs is not None and "configs" not in manifest:
        extra["configs"] = configs
    if any(manifest.get(key) != value for key, value in extra.items()):
        atomic_write_json(run.run_json, {**manifest, **extra})


def run_methods(config: CompressConfig) -> set[str]:
    """Every method the run trains with: the final rung's, the selection rungs', the baselines'."""
    return {config.method, config.selection_method(), *(ablation_methods(config) if config.baselines else ())}


def ablation_methods(config: CompressConfig) -> tuple[str, ...]:
    """The ``--baselines`` arms besides the search's own method: every registered baseline
    method (:attr:`~edgekd.distill.methods.Method.baseline`), where a hint method (fitnet, the
    default, or fitnet-dkd) stands in for the baseline hint arm."""
    from edgekd.distill.methods import METHODS

    return tuple(m.name for m in METHODS.values() if m.baseline and m.name != config.method
                 and not (m.has_hint_stage and has_hints(config.method)))


def rung_method(config: CompressConfig, rung: Rung) -> str:
    """The method a rung trains: the fresh final rung ``method``, selection rungs
    :meth:`CompressConfig.selection_method`."""
    return config.method if rung.fresh else config.selection_method()


def spec_depth(spec: dict) -> int:
    from edgekd.search.space import StudentSpec

    return StudentSpec.from_dict(spec).depth


def baseline_stage(config: CompressConfig, run: RunDir, winner: dict, winner_trial: str,
                   executor: Executor, methods: tuple[str, ...] | None = None) -> dict[str, str]:
    """Train the winner's architecture with the other ablation methods (``methods``, default
    :func:`ablation_methods`; from scratch, for ``--epochs``, like the final training);
    returns method -> trial."""
    from edgekd.run.executors import trial_payload

    trials = {config.method: winner_trial}
    jobs = []
    for method in (ablation_methods(config) if methods is None else methods):
        trial_id = f"{winner['id']}-{method}"
        trials[method] = trial_id
        if run.rung_result(BASELINE_RUNG, trial_id, config.epochs) is None:
            jobs.append(TrialJob(trial_id, BASELINE_RUNG, config.epochs, trial_payload(
                winner["spec"], train_config(config, method, config.epochs))))
    if jobs:
        executor.run(jobs, lambda job, result: run.record_rung(BASELINE_RUNG, job.trial_id,
                                                                job.epochs, result, folder=job.folder))
    return trials


# ============================================================================ the command
def compress(config: CompressConfig) -> Summary:
    """Run (or resume) the whole pipeline and return where the report is. The run folder is
    locked for the whole call (edgekd.run.rundir.open_run) and repaired before training
    (edgekd.run.repair)."""
    started = time.monotonic()
    previous = set_notes(config.progress)  # the one-time steps inside trials follow --no-progress
    try:
        return _compress(config, started)
    finally:
        set_notes(previous)


def _compress(config: CompressConfig, started: float) -> Summary:
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import apply_normalize
    from edgekd.inputs.loaders import load_dataset
    from edgekd.run import preflight
    from edgekd.search.space import StudentSpec

    config.validate()  # types and ranges, before anything is loaded or written
    for name, flag in ((config.method, "--method"), (config.rung_method, "--rung-method")):
        if name is not None and name not in method_names(compress=True):
            raise EdgekdError(f"unknown method {name!r} for {flag}: use one of "
                              f"{', '.join(method_names(compress=True))}")
    config.check_method_options()
    dataset = apply_normalize(load_dataset(config.data), config.normalize)
    explicit = config.epochs is not None
    config = config.resolved(train_images(dataset, config))
    how = "as given" if explicit else f"default for {train_images(dataset, config)} training images"
    schedule_line = (f"epochs per full trial: {config.epochs} ({how}); selection rungs start at "
                     f"{config.min_epochs}")
    # Check the schedule first: a bad --eta/--epochs/--candidates must fail before the teacher
    # is trained and before run.json exists (else the corrected rerun would meet a "different run").
    check_effort(config, plan_rungs(config.candidates, config.halving()))
    out = run_folder(config)
    preflight.check_out(out)
    if config.calibration:
        from edgekd.inputs.profiles import load_profile

        preflight.check_calibration(config.calibration, load_profile(config.profile or "host-cpu"))
    parity, parity_line = preflight.check_parity_sample(dataset, config.parity_samples)
    config = dataclasses.replace(config, parity_samples=parity)
    preflight.check_train_configs([train_config(config, method, config.epochs)
                                   for method in sorted(run_methods(config))], dataset.num_classes)
    preflight.check_teacher_views(dataset, config.teacher_views, config.augment)
    inputs = load_inputs(config, dataset)
    trial = TrainConfig(**train_config(config, config.method, config.epochs))  # the split trials hold out
    preflight.check_teacher_accuracy(inputs.teacher, dataset, seed=trial.seed, val_fraction=trial.val_fraction,
                                     warn=functools.partial(say, True))  # shown even with --no-progress
    if config.val_data:  # after the teacher: a built-in teacher is trained on the training images only
        from edgekd.inputs.data import with_validation
        inputs.dataset = dataset = with_validation(dataset, load_dataset(config.val_data), config.val_data)
    rows, shortlist, counts = search_stage(config, inputs)  # refuses an infeasible budget
    held: list[str] = []  # said once every check has passed (a refusal is one line)
    references = (reference_rows(config, inputs, held.append)
                  if config.trains_references() and config.strategy == "halving" else [])
    preflight.check_hint_taps(inputs.teacher, [StudentSpec.from_dict(r["spec"]) for r in shortlist + references],
                              tuple(dataset.input_shape), run_methods(config))
    held += select_on_unseen_images(inputs, config.seed)  # after the checks, before the run's identity
    run, resumed = open_run(out, run_identity(config, inputs), resume=config.resume,
                            command=config.command if config.command is not None else sys.argv)
    # once every check has passed: a refused command prints its one error line and nothing else
    say(config.progress, run_folder_line(config, out))
    for line in held:
        say(config.progress, line)
    say(config.progress, schedule_line)  # once every check has passed, before the first trial
    if parity_line:
        say(config.progress, parity_line)
    try:
        return _compress_locked(config, inputs, run, resumed, rows, shortlist, references, counts, started)
    finally:
        run.release()


def _compress_locked(config: CompressConfig, inputs: Inputs, run: RunDir, resumed: bool, rows: list[dict],
                     shortlist: list[dict], references: list[dict], counts: dict, started: float) -> Summary:
    from edgekd.run.repair import reset_damaged_trials

    write_jsonl(run.candidates, rows + references)
    store_plan(run, plan_rungs(len(shortlist), config.halving()), config.options,
               run_configs(config, inputs))
    reset_damaged_trials(run)
    if config.strategy == "supernet":
        return _supernet_locked(config, inputs, run, resumed, rows, counts, started)
    timing: dict[str, float] = {}
    mark = time.monotonic()
    outcome, winner, winner_trial, winner_method, baselines, reference_trials, selection = _train_and_choose(
        config, inputs, run, shortlist, references)
    timing["training_s"] = round(time.monotonic() - mark, 2)
    trials = _trial_entries(config, outcome, winner, baselines) + reference_entries(config, references)
    if selection["final_retrain"]:  # the chosen arm retrained on train + validation ships (run.final_retrain)
        trials.append(retrain_entry(selection["final_retrain"]))
    specs = {row["id"]: row["spec"] for row in shortlist}
    rung_depths = [sorted(spec_depth(specs[tid]) for tid in alive) for alive in outcome.survivors]
    say(config.progress, "depths per rung: " + " | ".join(
        f"rung {r.index} ({rung_method(config, r)}, {r.epochs} ep): {d}"
        for r, d in zip(outcome.rungs, rung_depths)))
    rungs = outcome.rungs
    record = {
        **counts,
        "shortlist": [row["id"] for row in shortlist],
        "rungs": [dataclasses.asdict(r) for r in rungs],
        "survivors": outcome.survivors,
        "finalists": [rungs[-1].folder(tid) for tid in outcome.finalists],
        "winner_method": winner_method,
        "rung_depths": rung_depths,
        "epochs_spent": epochs_spent(rungs),
        "epochs_full": len(shortlist) * config.epochs,
        "baselines": baselines,
        "references": reference_trials,
        "selected": winner_trial,
        **selection,
    }
    shipped = selection["final_retrain"]["trial"] if selection["final_retrain"] else winner_trial
    return _ship(config, inputs, run, trials, shipped, record, timing, resumed, started, outcome.trained)


def _supernet_locked(config: CompressConfig, inputs: Inputs, run: RunDir, resumed: bool,
                     rows: list[dict], counts: dict, started: float) -> Summary:
    """The supernet strategy (edgekd.run.supernet_stage) in place of halving, on the run's
    executor."""
    from edgekd.distill.config import TrainConfig
    from edgekd.run.supernet_stage import supernet_run

    train = TrainConfig(**train_config(config, config.selection_method(), config.epochs or 1))
    executor = _executor(config, inputs, run)
    try:
        found, record, timing = supernet_run(config, inputs, run, rows, counts, train, executor,
                                             functools.partial(say, config.progress))
    finally:
        executor.close()
    return _ship(config, inputs, run, found.trials, found.winner_trial, record, timing, resumed,
                 started, [])


def _ship(config: CompressConfig, inputs: Inputs, run: RunDir, trials: list[dict], winner_trial: str,
          record: dict, timing: dict[str, float], resumed: bool, started: float,
          trained: list[tuple[int, str]]) -> Summary:
    """Export, measure, outcome.json, report and bundle of the trained ``trials``."""
    from edgekd.report.report import headline, write_report
    from edgekd.run.repair import restore_results

    restore_results(run, [t["trial"] for t in trials])
    mark = time.monotonic()
    note = functools.partial(say, config.progress)  # plain lines: no silent minutes in a log
    note(f"exporting the teacher and {len(trials)} student(s) to ONNX, each parity-checked")
    teacher_stage(inputs, run)
    export_stage(inputs, run, [t["trial"] for t in trials], note)
    if inputs.profile.runtime.backend == "trt":  # INT8 is an option there: its delta per finalist
        int8_stage(inputs, run, [t["trial"] for t in trials if t["role"] in ("final", "retrained")], note)
    timing["export_s"] = round(time.monotonic() - mark, 2)
    mark = time.monotonic()
    note(f"measuring {len(trials) + 1} models on this host (ONNX Runtime, batch "
         f"{inputs.profile.budget.batch}, one thread; {config.measure_rounds} rounds, teacher and "
         f"students in turn, >= {config.measure_seconds:g} s each)")
    measure_stage(config, inputs, run, ["teacher"] + [t["trial"] for t in trials], note)
    timing["measure_s"] = round(time.monotonic() - mark, 2)
    write_doc(OUTCOME, run.outcome, {
        **record,
        "winner": winner_trial,
        "trials": trials,
        "target_is_host": inputs.profile.name == "host-cpu",
        "timing": timing,
    })
    note("writing the report")
    summary = write_report(run.root, lock=False)  # held since open_run
    if config.bundle:
        note("writing the device bundle")
    bundle = bundle_stage(inputs, run, winner_trial, config.int8_tolerance) if config.bundle else None
    return Summary(run.root, run.report_md, run.report_html, summary,
                   headline(summary), bundle, resumed, time.monotonic() - started, trained)


def _train_and_choose(config: CompressConfig, inputs: Inputs, run: RunDir, shortlist: list[dict],
                      references: list[dict]) -> tuple[Any, dict, str, str, dict[str, str] | None,
                                                       dict[str, str] | None, dict[str, Any]]:
    """:func:`_train`: (outcome, winner row, the chosen arm's trial, its method, arms, reference
    trials, outcome.json's ``teacher_bias``, ``arm_scores`` and ``final_retrain``)."""
    bias = inputs.teacher_bias  # measured by _compress before the run's identity
    outcome, winner, baselines, reference_trials, chosen = _train(config, inputs, run, shortlist, references, bias)
    (winner_method, winner_trial, scores), retrain = chosen
    return (outcome, winner, winner_trial, winner_method, baselines, reference_trials,
            {"teacher_bias": bias, "arm_scores": scores, "final_retrain": retrain})


def _arms(config: CompressConfig, run: RunDir, winner: dict, winner_trial: str, executor: Executor,
          bias: dict[str, Any]) -> dict[str, str] | None:
    """The winner's other arms: every ablation arm with ``--baselines``; else the scratch arm when
    the method learns from the teacher and the teacher is not clearly stronger than the student
    (:func:`edgekd.run.selection.teacher_clearly_stronger`; the scratch arm: the baseline
    methods that learn from labels alone); else none."""
    from edgekd.distill.methods import METHODS, get_method
    from edgekd.run.selection import teacher_clearly_stronger
    if config.baselines:
        return baseline_stage(config, run, winner, winner_trial, executor)
    if not get_method(config.method).uses_teacher:
        return None
    student_val = run.read(RESULT, run.trial_file(winner_trial, RESULT_JSON))["val_acc"]
    if teacher_clearly_stronger(bias, student_val):
        return None
    say(config.progress, f"the teacher ({100 * bias['test']:.2f}% test) is not clearly stronger than the student "
                         f"({100 * float(student_val or 0):.2f}% validation): training its scratch arm too")
    scratch = tuple(m.name for m in METHODS.values() if m.baseline and not m.uses_teacher)
    return baseline_stage(config, run, winner, winner_trial, executor, scratch)


def _train(config: CompressConfig, inputs: Inputs, run: RunDir, shortlist: list[dict], references: list[dict],
           bias: dict[str, Any]) -> tuple[Any, dict, dict[str, str] | None, dict[str, str] | None, tuple]:
    """Successive halving, the other arms (:func:`_arms`), the reference students, the arm
    (edgekd.run.selection) and its retraining on every labelled image (edgekd.run.final_retrain):
    (halving outcome, winner row, arms, reference model -> trial, ((method, trial, scores), retrain))."""
    from edgekd.run.progress import SearchProgress

    executor = _executor(config, inputs, run)
    try:
        with SearchProgress(enabled=config.progress) as progress:
            outcome = halving_stage(config, inputs, run, shortlist, executor,
                                    counting_the_finish(progress.update, finish_seconds(config)))
        winner = {row["id"]: row for row in shortlist}[outcome.finalists[0]]
        winner_trial = outcome.rungs[-1].folder(winner["id"])
        baselines = _arms(config, run, winner, winner_trial, executor, bias)
        reference_trials = (reference_stage(config, run, references, executor)
                            if config.trains_references() else None)
        arm = best_arm(run, baselines, bias) if baselines else (config.method, winner_trial, None)
        retrain = (retrain_stage(run, inputs.dataset, arm[1], winner["id"], executor, functools.partial(
            say, config.progress)) if config.final_retrain else None)
    finally:
        executor.close()
        on_cpu(inputs.teacher)  # trials may have moved it to the GPU; the stages after training run on CPU
    return outcome, winner, baselines, reference_trials, (arm, retrain)


def _executor(config: CompressConfig, inputs: Inputs, run: RunDir) -> LocalExecutor | RayExecutor:
    """The run's executor (``--executor``) over its teacher and data."""
    from edgekd.run.executors import TrialContext, make_executor

    context = TrialContext([inputs.teacher], inputs.dataset, [inputs.teacher_fp],
                           threads=config.threads_per_trial)
    return make_executor(config.executor, run, context, address=config.ray_address,
                         num_cpus=config.ray_cpus, gpus_per_trial=config.gpus_per_trial)


def _trial_entries(config: CompressConfig, outcome: HalvingResult, winner: dict,
                   baselines: dict[str, str] | None) -> list[dict]:
    """outcome.json's ``trials``: every trained trial folder, in the order the rungs trained
    them, then the baselines."""
    seen: dict[str, dict] = {}  # trial folder -> entry
    for rung, alive in zip(outcome.rungs, outcome.survivors):
        for tid in alive:
            folder = rung.folder(tid)  # trials/ID, or ID-final for the fresh final rung
            seen[folder] = {"trial": folder, "candidate": tid, "method": rung_method(config, rung),
                            "rung": rung.index, "role": "final" if rung.fresh else "search"}
    trials = list(seen.values())
    for method, trial_id in (baselines or {}).items():
        if trial_id not in seen:
            trials.append({"trial": trial_id, "candidate": winner["id"], "method": method,
                           "role": "baseline"})
    return trials
