"""``edgekd compress``: the whole pipeline in one call, resumable from its run folder.

    profile + teacher + data
      -> search (every student within the budget; shortlist the first ``candidates``)
      -> successive halving (edgekd.run.halving; local or Ray executor, edgekd.run.executors)
      -> final training of the finalists (the last rung) [+ baselines: scratch / kd / fitnet]
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
from typing import Any, Callable

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, sha256_file, write_jsonl
from edgekd.distill.methods import METHODS, method_names
from edgekd.run.halving import (HalvingConfig, Rung, SuccessiveHalving, TrialJob, epochs_spent,
                                plan_record, plan_rungs)
from edgekd.run.progress import say
from edgekd.run.rundir import RunDir, default_out, identity, open_run
from edgekd.core.runfolder import EXPORT, MEASUREMENT, OUTCOME, TEACHER, read_doc_or_none, write_doc

#: The ablation block: the winner's architecture trained with each of these methods.
ABLATION_METHODS = ("scratch", "kd", "fitnet")
BASELINE_RUNG = -1  # rung index under which baseline trials are recorded in halving.jsonl
#: The embedded default (no profile, teacher or data given): host-cpu with this latency
#: budget (ms, predicted), half the profile's: on a 2-core x86 host the built-in teacher runs
#: in about 0.1 ms through ONNX Runtime, and students predicted under 0.1 ms measure about as
#: fast, so the default asks for a speed-up that shows in the measured numbers.
EMBEDDED_LATENCY_MS = 0.05
#: ... and this schedule, unless --epochs/--augment are given: the embedded default is the demo of
#: the README's first command and must finish in a few minutes on 2 CPU cores. The data-size
#: default (15 epochs with augmentation and 8 cached teacher views) took over 20 CPU-minutes on the
#: shipped 10k-image subset; 6 epochs without augmentation take about 3 (see the README).
EMBEDDED_EPOCHS = 6
EMBEDDED_AUGMENT = "none"


@dataclass
class CompressConfig:
    """Everything ``edgekd compress`` takes. ``None`` means: the profile's or the default."""

    profile: str | None = None
    teacher: str | None = None
    arch: str | None = None
    trust_code: bool = False
    data: str | None = None
    max_macs: int | None = None
    latency_ms: float | None = None
    batch: int | None = None
    candidates: int = 6
    epochs: int | None = None  # None: default_epochs(training images), printed
    min_epochs: int | None = None  # None: a third of epochs (a rung long enough to rank on)
    hint_epochs: int = 1
    eta: int = 3
    finalists: int = 2
    rungs: int | None = None
    method: str = "fitnet"
    #: method of the selection rungs (None: kd for fitnet, whose hint stage does not fit a
    #: short rung, else the method itself); the fresh final rung trains ``method``
    rung_method: str | None = None
    depth_groups: bool = True
    augment: str | None = None  # None: auto (none for the embedded default, see EMBEDDED_AUGMENT)
    teacher_views: int | None = None  # None: 8 cached views on CPU, the teacher per batch on CUDA
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of the EMA of the weights every trial keeps (0: off)
    device: str = "auto"
    parity_samples: int = 256  # images of the ONNX parity check (edgekd.export.MIN_PARITY_SAMPLES)
    calibration: str | None = None
    baselines: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus: int | None = None
    gpus_per_trial: float = 0.0
    threads_per_trial: int | None = None
    out: Path | None = None
    resume: bool = False
    seed: int = 0
    max_train_samples: int | None = None
    batch_size: int | None = None
    measure_warmup: int = 50
    measure_iters: int = 500
    bundle: bool = True
    progress: bool = True
    command: list[str] | None = None
    options: dict[str, Any] | None = None  # every CLI option, kept in run.json (--config)
    yes: bool = False  # run a plan that check_effort finds absurd

    def identity_config(self) -> dict[str, Any]:
        """The settings that change the results (not: executor, output, measuring, progress)."""
        keys = ("candidates", "epochs", "min_epochs", "hint_epochs", "eta", "finalists", "rungs",
                "method", "max_train_samples", "batch_size", "arch", "rung_method", "depth_groups",
                "augment", "teacher_views", "label_smoothing")
        identity = {key: getattr(self, key) for key in keys}
        if self.ema:  # runs without --ema keep the identity they had before the option
            identity["ema"] = self.ema
        return identity

    def selection_method(self) -> str:
        """What the selection rungs train: ``rung_method``, else kd for fitnet (a short rung
        spent mostly on the hint stage ranks deep students at ~chance), else ``method``."""
        if self.rung_method is not None:
            return self.rung_method
        return "kd" if _has_hints(self.method) else self.method

    def resolved(self, n_train: int) -> "CompressConfig":
        """This config with ``epochs`` and ``min_epochs`` filled in from the data size."""
        embedded = self.is_embedded()
        epochs = self.epochs if self.epochs is not None else (
            EMBEDDED_EPOCHS if embedded else default_epochs(n_train))
        augment = self.augment if self.augment is not None else (
            EMBEDDED_AUGMENT if embedded else "auto")
        low = self.min_epochs if self.min_epochs is not None else max(1, round(epochs / self.eta))
        views = self.teacher_views
        if views is None:
            import torch

            cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
            views = 0 if cuda else DEFAULT_TEACHER_VIEWS_CPU
        return dataclasses.replace(self, epochs=epochs, min_epochs=min(low, epochs), teacher_views=views,
                                   augment=augment)

    def is_embedded(self) -> bool:
        """The embedded default: no profile, teacher or data given."""
        return self.profile is None and self.teacher is None and self.data is None

    def halving(self) -> HalvingConfig:
        """The schedule (``epochs``/``min_epochs`` resolved, see :meth:`resolved`); with a hint
        method in the selection rungs every rung must reach past the hint stage, so the first
        rung trains at least ``hint_epochs + 1`` epochs (one of them with KD)."""
        if self.epochs is None:
            raise ValueError("CompressConfig.halving() before resolved(): epochs unknown")
        epochs = self.epochs
        low = self.min_epochs if self.min_epochs is not None else max(1, round(epochs / self.eta))
        # fitnet trials (the final's, or the --baselines ablation's) need a KD epoch after the hints
        if (_has_hints(self.method) or self.baselines) and epochs <= self.hint_epochs:
            raise EdgekdError(f"--epochs {epochs} leaves no KD epoch after "
                              f"{self.hint_epochs} hint epoch(s): use --epochs "
                              f"{self.hint_epochs + 1} or more")
        if _has_hints(self.selection_method()):
            low = max(low, self.hint_epochs + 1)
        return HalvingConfig(eta=self.eta, min_epochs=min(low, epochs),
                             max_epochs=epochs, finalists=self.finalists, rungs=self.rungs)


#: Training images seen per full trial by default: ``epochs = clamp(round(SAMPLES / n), 4, 60)``
#: (15 epochs of a 10k-image set, which keeps the default MNIST run near 10 CPU-minutes on 2
#: cores; 4 on full MNIST-sized sets of 60k). CIFAR-sized data with crop + flip converges
#: further with more (pass --epochs 30 on a GPU).
DEFAULT_SAMPLES_PER_TRIAL = 150_000
#: ``--teacher-views`` when not given: on CPU the teacher's outputs on 8 augmented views per
#: image are computed once per run (cached) instead of a teacher pass per batch; on CUDA the
#: teacher runs per batch (cheap there, and every step sees a fresh crop).
DEFAULT_TEACHER_VIEWS_CPU = 8


def _has_hints(name: str) -> bool:
    """Whether method ``name`` has a hint stage (an unknown name is refused elsewhere)."""
    method = METHODS.get(name)
    return method is not None and method.has_hint_stage


def default_epochs(n_train: int) -> int:
    """Epochs of a full trial when --epochs is not given (see DEFAULT_SAMPLES_PER_TRIAL)."""
    return int(min(60, max(4, round(DEFAULT_SAMPLES_PER_TRIAL / max(n_train, 1)))))


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


#: Trial-epochs (and epochs of one trial) past which a plan is taken for a typo (1e6
#: candidates, 1e20 epochs) and needs --yes: about a year of the tiny MNIST trials on 2 CPUs.
ABSURD_TRIAL_EPOCHS = 100_000
ABSURD_EPOCHS = 10_000


def check_effort(config: CompressConfig, rungs: list[Rung]) -> None:
    """Refuse (unless ``config.yes``) a plan so large it is surely a typo."""
    spent = epochs_spent(rungs) + (2 * config.epochs if config.baselines else 0)
    if config.yes or (spent <= ABSURD_TRIAL_EPOCHS and config.epochs <= ABSURD_EPOCHS):
        return
    raise EdgekdError(f"--candidates {config.candidates} --epochs {config.epochs} plans {spent:,} "
                      "trial-epochs, which would take months or more: lower them, or add --yes "
                      "if you mean it")


# ============================================================================ inputs
@dataclass
class Inputs:
    profile: Any
    dataset: Any
    teacher: Any
    teacher_fp: str
    parity_samples: int = 256


def train_images(dataset: Any, config: CompressConfig) -> int:
    """How many images a trial trains on (before the validation split)."""
    n = len(dataset.y_train)
    return min(n, config.max_train_samples) if config.max_train_samples else n


def load_inputs(config: CompressConfig, dataset: Any = None) -> Inputs:
    """Profile (with budget overrides), data (unless given) and teacher, checked against
    each other."""
    from edgekd.inputs.data import load_dataset
    from edgekd.inputs.profiles import load_profile
    from edgekd.inputs.teachers import check_teacher, load_teacher, model_fingerprint

    if config.method not in method_names(compress=True):
        raise EdgekdError(f"unknown method {config.method!r}: use one of {', '.join(method_names(compress=True))}")
    latency_ms = config.latency_ms
    if latency_ms is None and config.is_embedded():
        latency_ms = EMBEDDED_LATENCY_MS
    profile = load_profile(config.profile or "host-cpu").with_budget(
        latency_ms=latency_ms, macs=config.max_macs, batch=config.batch)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    teacher = load_teacher(config.teacher, arch=config.arch, num_classes=dataset.num_classes,
                           trust_code=config.trust_code, dataset=dataset)
    check_teacher(teacher, dataset.input_shape, dataset.num_classes)
    return Inputs(profile, dataset, teacher, model_fingerprint(teacher), config.parity_samples)


def run_identity(config: CompressConfig, inputs: Inputs) -> dict:
    profile = inputs.profile.to_dict()
    budget = profile.pop("budget")
    profile.pop("source", None)
    return identity(
        teacher={"name": config.teacher or "builtin", "fingerprint": inputs.teacher_fp},
        data={"name": inputs.dataset.name, "fingerprint": inputs.dataset.fingerprint()},
        profile=profile, budget=budget, seed=config.seed, config=config.identity_config())


# ============================================================================ search
def search_stage(config: CompressConfig, inputs: Inputs) -> tuple[list[dict], list[dict], dict]:
    """Enumerate, cost and filter students (edgekd.search.search, which refuses a budget no student
    meets, naming the smallest); returns (feasible rows for candidates.jsonl, the shortlist
    rows in the search's order, counts)."""
    from edgekd.search.search import default_cost_cache, search_candidates

    found = search_candidates(inputs.profile, inputs.dataset.input_shape,
                              inputs.dataset.num_classes, shortlist=config.candidates,
                              cost_cache=default_cost_cache(), calibration=config.calibration)
    rows = [c.to_record() for c in found.feasible]
    shortlist = [c.to_record() for c in found.shortlist]
    return rows, shortlist, {"candidates_enumerated": len(found.candidates),
                             "candidates_in_budget": len(found.feasible)}


# ============================================================================ training
def train_config(config: CompressConfig, method: str, epochs: int) -> dict[str, Any]:
    """The TrainConfig fields of one trial (edgekd.distill.TrainConfig defaults elsewhere)."""
    values: dict[str, Any] = {"method": method, "epochs": epochs, "seed": config.seed,
                              "max_train_samples": config.max_train_samples,
                              "hint_epochs": config.hint_epochs, "augment": config.augment,
                              "teacher_views": config.teacher_views,
                              "label_smoothing": config.label_smoothing, "device": config.device}
    if config.batch_size is not None:
        values["batch_size"] = config.batch_size
    if config.ema:
        values["ema"] = config.ema
    return values


def halving_stage(config: CompressConfig, inputs: Inputs, run: RunDir, shortlist: list[dict],
                  executor: Any, on_event: Any) -> Any:
    from edgekd.run.executors import trial_payload

    specs = {row["id"]: row["spec"] for row in shortlist}

    def make_job(trial_id: str, rung: Rung) -> TrialJob:
        return TrialJob(trial_id, rung.index, rung.epochs, trial_payload(
            specs[trial_id], train_config(config, rung_method(config, rung), rung.epochs)),
            folder=trial_folder(trial_id, rung))

    groups = None
    if config.depth_groups:
        from edgekd.run.halving import depth_groups

        groups = depth_groups({tid: spec_depth(spec) for tid, spec in specs.items()})
    scheduler = SuccessiveHalving(config.halving(), make_job, run, on_event, groups=groups)
    return scheduler.run([row["id"] for row in shortlist], executor)


def run_folder(config: CompressConfig) -> Path:
    """``--out``, or the default folder (runs/default, runs/PROFILE-DATA-TEACHER) numbered like
    Ultralytics' runs: a rerun writes a new runs/default2, runs/default3 ... instead of
    refusing, and ``--resume`` continues the latest of them. An explicit ``--out`` is used as
    given (and refused when it holds another run)."""
    if config.out:
        return Path(config.out)
    base = default_out(config.profile, config.data, config.teacher)

    def numbered(i: int) -> Path:
        return base if i == 1 else base.with_name(f"{base.name}{i}")

    def occupied(path: Path) -> bool:
        return path.exists() and (not path.is_dir() or any(path.iterdir()))

    i = 1
    while occupied(numbered(i)):
        i += 1
    return numbered(max(1, i - 1)) if config.resume else numbered(i)


def store_plan(run: RunDir, rungs: list[Rung], options: dict[str, Any] | None = None) -> None:
    """run.json's ``plan`` (rungs x trials x epochs), written before any training, and the
    command's ``options`` (``edgekd compress --config run.json`` runs it again); the same
    identity gives the same plan, so a resumed run leaves both as they are."""
    manifest = run.manifest()
    extra: dict[str, Any] = {"plan": plan_record(rungs)}
    if options is not None and "options" not in manifest:
        extra["options"] = options
    if any(manifest.get(key) != value for key, value in extra.items()):
        atomic_write_json(run.run_json, {**manifest, **extra})


def run_methods(config: CompressConfig) -> set[str]:
    """Every method the run trains with: the final rung's, the selection rungs', the baselines'."""
    return {config.method, config.selection_method(), *(ABLATION_METHODS if config.baselines else ())}


def rung_method(config: CompressConfig, rung: Rung) -> str:
    """The method a rung trains: the fresh final rung ``method``, selection rungs
    :meth:`CompressConfig.selection_method`."""
    return config.method if rung.fresh else config.selection_method()


def spec_depth(spec: dict) -> int:
    from edgekd.search.space import StudentSpec

    return StudentSpec.from_dict(spec).depth


def trial_folder(candidate_id: str, rung: Rung) -> str:
    """trials/ID for continued rungs; trials/ID-final for the fresh final training."""
    return rung.folder(candidate_id)


def best_method(run: RunDir, trials: dict[str, str]) -> tuple[str, str]:
    """(method, trial) with the best validation accuracy among the trials of one
    architecture (method -> trial); ties go to the first listed (the search's method)."""
    from edgekd.core.fileio import read_json

    best: tuple[float, str, str] | None = None
    for method, trial in trials.items():
        val = read_json(run.trial(trial) / "result.json").get("val_acc")
        score = float("-inf") if val is None else float(val)
        if best is None or score > best[0]:
            best = (score, method, trial)
    assert best is not None
    return best[1], best[2]


def baseline_stage(config: CompressConfig, run: RunDir, winner: dict, winner_trial: str,
                   executor: Any) -> dict[str, str]:
    """Train the winner's architecture with the other ablation methods (from scratch, for
    ``--epochs``, like the final training); returns method -> trial."""
    from edgekd.run.executors import trial_payload

    trials = {config.method: winner_trial}
    jobs = []
    for method in ABLATION_METHODS:
        if method == config.method:
            continue
        trial_id = f"{winner['id']}-{method}"
        trials[method] = trial_id
        if run.rung_result(BASELINE_RUNG, trial_id, config.epochs) is None:
            jobs.append(TrialJob(trial_id, BASELINE_RUNG, config.epochs, trial_payload(
                winner["spec"], train_config(config, method, config.epochs))))
    if jobs:
        executor.run(jobs, lambda job, result: run.record_rung(BASELINE_RUNG, job.trial_id,
                                                                job.epochs, result, folder=job.folder))
    return trials


# ============================================================================ export + measure
def teacher_stage(inputs: Inputs, run: RunDir) -> dict:
    """teacher.json (MACs, params, test accuracy, predicted target latency) and teacher.onnx."""
    from edgekd.search.cost import module_cost
    from edgekd.search.kernel_model import find_table
    from edgekd.search.latency import predict_latency
    from edgekd.inputs.teachers import accuracy

    info = read_doc_or_none(TEACHER, run.teacher_json)  # damaged: made again
    if info is None or info["fingerprint"] != inputs.teacher_fp:
        data = inputs.dataset
        cost = module_cost(inputs.teacher, data.input_shape)
        table = find_table(inputs.profile)  # edgekd calibrate's table: a *calibrated* figure
        latency = (table.predict(cost, inputs.profile.budget.batch) if table is not None
                   else predict_latency(cost, inputs.profile))
        info = {"fingerprint": inputs.teacher_fp, "macs": int(cost.macs), "params": int(cost.params),
                "test_acc": accuracy(inputs.teacher, data.x_test, data.y_test, data.normalization),
                "predicted_latency": {"ms": float(latency.ms), "label": latency.label,
                                      "batch": inputs.profile.budget.batch}}
        write_doc(TEACHER, run.teacher_json, info)
    _export(inputs.teacher, "teacher", inputs, run, source_sha=inputs.teacher_fp,
            metadata=_metadata(inputs, "teacher", accuracy=info["test_acc"]))
    return info


def _export(model: Any, name: str, inputs: Inputs, run: RunDir, *, source_sha: str,
            metadata: dict[str, Any]) -> Path:
    """export/NAME.onnx with a parity check; skipped when export/NAME.json says the same
    weights were exported already (so measurements brought back still match its sha256)."""
    from edgekd.ship.export import export_onnx, parity_inputs

    onnx_path, marker = run.export_onnx(name), run.export_marker(name)
    done = read_doc_or_none(EXPORT, marker) if onnx_path.exists() else None  # damaged: again
    if done and done["source_sha256"] == source_sha and done["onnx_sha256"] == sha256_file(onnx_path):
        return onnx_path
    export_onnx(model, inputs.dataset.input_shape, onnx_path, batch=inputs.profile.budget.batch,
                metadata=metadata, parity_x=parity_inputs(inputs.dataset, inputs.parity_samples),
                parity_min=inputs.parity_samples)
    write_doc(EXPORT, marker, {"source_sha256": source_sha, "onnx_sha256": sha256_file(onnx_path)})
    return onnx_path


def _metadata(inputs: Inputs, name: str, *, spec: Any = None, accuracy: float | None = None,
              method: str | None = None) -> dict[str, Any]:
    from edgekd.ship.export import student_metadata

    data = inputs.dataset
    return student_metadata(spec=spec, classes=list(data.classes), input_shape=data.input_shape,
                            normalization=data.normalization, accuracy=accuracy,
                            profile=inputs.profile.name, model_id=name, method=method)


def export_stage(inputs: Inputs, run: RunDir, trial_ids: list[str],
                 note: Callable[[str], None] = lambda text: None) -> list[Path]:
    from edgekd.core.checkpoint import load_student

    paths = []
    for number, trial_id in enumerate(trial_ids, 1):
        checkpoint = run.trial_file(trial_id, "checkpoint.pt")
        model, info = load_student(checkpoint)
        metadata = _metadata(inputs, trial_id, spec=info.spec, method=info.method,
                             accuracy=info.metrics.get("test_acc"))
        paths.append(_export(model, trial_id, inputs, run, source_sha=sha256_file(checkpoint),
                             metadata=metadata))
        note(f"exported {trial_id} ({number}/{len(trial_ids)})")
    return paths


def measure_stage(config: CompressConfig, inputs: Inputs, run: RunDir, names: list[str],
                  note: Callable[[str], None] = lambda text: None) -> None:
    """measurements/host-NAME.json for each exported model (skipped when already measured)."""
    from edgekd.ship.measure import measure_onnx

    from edgekd.core import fmt

    for number, name in enumerate(names, 1):
        onnx_path, out = run.export_onnx(name), run.host_measurement(name)
        done = read_doc_or_none(MEASUREMENT, out)  # damaged: measured again
        if done is not None and done["sha256"] == sha256_file(onnx_path):
            continue
        found = measure_onnx(onnx_path, batch=inputs.profile.budget.batch, backend="ort",
                             warmup=config.measure_warmup, iters=config.measure_iters, out=out)
        note(f"measured {name}: {fmt.ms(found['latency_ms']['median'])} ms "
             f"({number}/{len(names)})")


def bundle_stage(inputs: Inputs, run: RunDir, winner_trial: str) -> Path:
    from edgekd.ship.export import make_bundle

    return make_bundle(run.export_onnx(winner_trial), run.bundle, profile=inputs.profile,
                       dataset=inputs.dataset, teacher_onnx=run.export_onnx("teacher"),
                       run_dir=run.root)


# ============================================================================ the command
def compress(config: CompressConfig) -> Summary:
    """Run (or resume) the whole pipeline and return where the report is. The run folder is
    locked for the whole call (edgekd.run.rundir.open_run) and repaired before training
    (edgekd.run.repair)."""
    from edgekd.inputs.data import load_dataset
    from edgekd.run import preflight
    from edgekd.search.space import StudentSpec

    started = time.monotonic()
    for name, flag in ((config.method, "--method"), (config.rung_method, "--rung-method")):
        if name is not None and name not in method_names(compress=True):
            raise EdgekdError(f"unknown method {name!r} for {flag}: use one of "
                              f"{', '.join(method_names(compress=True))}")
    dataset = load_dataset(config.data)
    explicit = config.epochs is not None
    config = config.resolved(train_images(dataset, config))
    how = ("as given" if explicit else "the embedded default's" if config.is_embedded()
           else f"default for {train_images(dataset, config)} training images")
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
    preflight.check_parity_sample(dataset, config.parity_samples)
    inputs = load_inputs(config, dataset)
    rows, shortlist, counts = search_stage(config, inputs)  # refuses an infeasible budget
    preflight.check_hint_taps(inputs.teacher, [StudentSpec.from_dict(r["spec"]) for r in shortlist],
                              tuple(dataset.input_shape), run_methods(config))
    run, resumed = open_run(out, run_identity(config, inputs), resume=config.resume,
                            command=config.command if config.command is not None else sys.argv)
    say(config.progress, schedule_line)  # once every check has passed, before the first trial
    try:
        return _compress_locked(config, inputs, run, resumed, rows, shortlist, counts, started)
    finally:
        run.release()


def _compress_locked(config: CompressConfig, inputs: Inputs, run: RunDir, resumed: bool,
                     rows: list[dict], shortlist: list[dict], counts: dict, started: float) -> Summary:
    from edgekd.report.report import headline, write_report
    from edgekd.run.repair import reset_damaged_trials, restore_results

    write_jsonl(run.candidates, rows)
    store_plan(run, plan_rungs(len(shortlist), config.halving()), config.options)
    reset_damaged_trials(run)
    timing: dict[str, float] = {}
    mark = time.monotonic()
    outcome, winner, baselines = _train(config, inputs, run, shortlist)
    winner_trial = trial_folder(winner["id"], outcome.rungs[-1])
    timing["training_s"] = round(time.monotonic() - mark, 2)
    winner_method = config.method
    if baselines:  # the best by validation among the winner's architecture's methods
        winner_method, winner_trial = best_method(run, baselines)
    trials = _trial_entries(config, outcome, winner, winner_trial, baselines)
    specs = {row["id"]: row["spec"] for row in shortlist}
    rung_depths = [sorted(spec_depth(specs[tid]) for tid in alive) for alive in outcome.survivors]
    say(config.progress, "depths per rung: " + " | ".join(
        f"rung {r.index} ({rung_method(config, r)}, {r.epochs} ep): {d}"
        for r, d in zip(outcome.rungs, rung_depths)))
    restore_results(run, [t["trial"] for t in trials])
    mark = time.monotonic()
    note = functools.partial(say, config.progress)  # plain lines: no silent minutes in a log
    note(f"exporting the teacher and {len(trials)} student(s) to ONNX, each parity-checked")
    teacher_stage(inputs, run)
    export_stage(inputs, run, [t["trial"] for t in trials], note)
    timing["export_s"] = round(time.monotonic() - mark, 2)
    mark = time.monotonic()
    note(f"measuring {len(trials) + 1} models on this host (ONNX Runtime, batch "
         f"{inputs.profile.budget.batch}, {config.measure_iters} iterations each)")
    measure_stage(config, inputs, run, ["teacher"] + [t["trial"] for t in trials], note)
    timing["measure_s"] = round(time.monotonic() - mark, 2)
    rungs = outcome.rungs
    write_doc(OUTCOME, run.outcome, {
        **counts,
        "shortlist": [row["id"] for row in shortlist],
        "rungs": [dataclasses.asdict(r) for r in rungs],
        "survivors": outcome.survivors,
        "finalists": [trial_folder(tid, rungs[-1]) for tid in outcome.finalists],
        "winner": winner_trial,
        "winner_method": winner_method,
        "rung_depths": rung_depths,
        "epochs_spent": epochs_spent(rungs),
        "epochs_full": len(shortlist) * config.epochs,
        "baselines": baselines,
        "trials": trials,
        "target_is_host": inputs.profile.name == "host-cpu",
        "timing": timing,
    })
    note("writing the report")
    summary = write_report(run.root)
    if config.bundle:
        note("writing the device bundle")
    bundle = bundle_stage(inputs, run, winner_trial) if config.bundle else None
    return Summary(run.root, run.report / "report.md", run.report / "report.html", summary,
                   headline(summary), bundle, resumed, time.monotonic() - started,
                   outcome.trained)


def _train(config: CompressConfig, inputs: Inputs, run: RunDir, shortlist: list[dict]
           ) -> tuple[Any, dict, dict[str, str] | None]:
    """Successive halving, then the baselines: (halving outcome, winner row, baselines)."""
    from edgekd.run.executors import TrialContext, make_executor
    from edgekd.run.progress import SearchProgress

    context = TrialContext([inputs.teacher], inputs.dataset, [inputs.teacher_fp],
                           threads=config.threads_per_trial)
    executor = make_executor(config.executor, run, context, address=config.ray_address,
                             num_cpus=config.ray_cpus, gpus_per_trial=config.gpus_per_trial)
    try:
        with SearchProgress(enabled=config.progress) as progress:
            outcome = halving_stage(config, inputs, run, shortlist, executor, progress.update)
        winner = {row["id"]: row for row in shortlist}[outcome.finalists[0]]
        winner_trial = trial_folder(winner["id"], outcome.rungs[-1])
        baselines = (baseline_stage(config, run, winner, winner_trial, executor)
                     if config.baselines else None)
    finally:
        executor.close()
        inputs.teacher.to("cpu")  # trials may have moved it to the GPU; export and costing run on CPU
    return outcome, winner, baselines


def _trial_entries(config: CompressConfig, outcome: Any, winner: dict, winner_trial: str,
                   baselines: dict[str, str] | None) -> list[dict]:
    """outcome.json's ``trials``: every trained trial folder, in the order the rungs trained
    them, then the baselines."""
    seen: dict[str, dict] = {}  # trial folder -> entry
    for rung, alive in zip(outcome.rungs, outcome.survivors):
        for tid in alive:
            folder = trial_folder(tid, rung)
            seen[folder] = {"trial": folder, "candidate": tid, "method": rung_method(config, rung),
                            "rung": rung.index, "role": "final" if rung.fresh else "search"}
    trials = list(seen.values())
    for method, trial_id in (baselines or {}).items():
        if trial_id not in seen:
            trials.append({"trial": trial_id, "candidate": winner["id"], "method": method,
                           "role": "baseline"})
    return trials
