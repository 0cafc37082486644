"""The configuration of ``edgekd compress``: :class:`CompressConfig` (every option, ``None``
for "the profile's or the data-size default"), the defaults that depend on the data size and
on the embedded default run, and the check that refuses an absurd plan."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.core.configdoc import config_fields
from edgekd.core.errors import EdgekdError
from edgekd.distill.config import TrainConfig
from edgekd.distill.methods import METHODS
from edgekd.run.halving import HalvingConfig, Rung, epochs_spent
from edgekd.ship.bundle import BundleConfig

__all__ = ["COMPRESS_CONFIG_FORMAT", "CompressConfig", "DEFAULT_METHOD",
           "DEFAULT_SAMPLES_PER_TRIAL", "DEFAULT_SAMPLES_PER_TRIAL_CUDA", "DEFAULT_TEACHER_VIEWS_CPU", "EMBEDDED_LATENCY_MS", "EMBEDDED_STEM_STRIDES",
           "HINT_FIELDS", "TRIAL_THREADS_CPU", "check_effort", "default_epochs", "has_hints", "train_config"]

COMPRESS_CONFIG_FORMAT = "edgekd.compress-config/1"

#: The embedded default (no profile, teacher or data given): host-cpu with this latency
#: budget (ms, predicted), half the profile's: on a 2-core x86 host the built-in teacher runs
#: in about 0.1 ms through ONNX Runtime, and students predicted under 0.1 ms measure about as
#: fast, so the default asks for a speed-up that shows in the measured numbers.
EMBEDDED_LATENCY_MS = 0.05
#: Its search space also offers stride-2 stems, which halve the side of every feature map: on
#: 28x28 digits ONNX Runtime's per-call cost dominates, and only such students run clearly faster
#: than the built-in teacher (measured: benchmarks/results/default_run.md).
EMBEDDED_STEM_STRIDES = (1, 2)
#: The method of ``compress`` when --method is not given (change it here only); why, with the
#: measured comparisons: docs/methods.md.
DEFAULT_METHOD = "fitnet"
#: The hint options of ``train``/``compress`` that a compress run hands to every trial (TrainConfig
#: fields; only values other than TrainConfig's defaults are passed and enter the run's identity).
HINT_FIELDS = ("hint_mode", "hint_beta", "hint_lr", "hint_patience", "hint_min_delta", "hint_min_r2")


@dataclass
class CompressConfig:
    """Everything ``edgekd compress`` takes. ``None`` means: the profile's or the default.
    Every default of the command lives here once; the CLI reads its option defaults from these
    fields. ``hint_epochs`` is :class:`~edgekd.distill.config.TrainConfig`'s (one default for
    ``edgekd train`` and ``compress``); the other training fields that compress leaves unset
    (``batch_size`` None, ...) take TrainConfig's."""

    profile: str | None = None
    teacher: str | None = None
    arch: str | None = None
    trust_code: bool = False
    data: str | None = None
    #: how pixels reach the teacher and the students (deploy.onnxmeta.parse_normalize):
    #: dataset | imagenet | none | MEAN,STD
    normalize: str = "dataset"
    #: validation images the teacher never saw (a data spec); None: held out of the training images
    val_data: str | None = None
    max_macs: int | None = None
    latency_ms: float | None = None
    batch: int | None = None
    candidates: int = 6
    epochs: int | None = None  # None: default_epochs(training images), printed
    min_epochs: int | None = None  # None: a third of epochs (a rung long enough to rank on)
    hint_epochs: int = TrainConfig.hint_epochs
    eta: int = 3
    finalists: int = 2
    rungs: int | None = None
    method: str = DEFAULT_METHOD
    #: method of the selection rungs (None: kd for fitnet, whose hint stage does not fit a
    #: short rung, else the method itself); the fresh final rung trains ``method``
    rung_method: str | None = None
    depth_groups: bool = True
    augment: str | None = None  # None: auto
    teacher_views: int | None = None  # None: 8 cached views on CPU, the teacher per batch on CUDA
    #: method options of ``--method`` (``--method-opt``, ``--label-smoothing``); every trial gets
    #: those its own method declares (a kd baseline ignores dkd.beta). None: the method's default
    label_smoothing: float | None = None
    method_options: dict[str, float] = field(default_factory=dict)
    ema: float = 0.0  # decay of the EMA of the weights every trial keeps (0: off)
    #: stem strides of the search space (None: EMBEDDED_STEM_STRIDES for the embedded default, else 1)
    stem_strides: tuple[int, ...] | None = None
    #: student families searched (None: the default for the input size and the profile's device)
    families: tuple[str, ...] | None = None
    #: the hint stage of hint methods (TrainConfig's fields of the same names; None: its default)
    hint_mode: str | None = None
    hint_beta: float | None = None
    hint_lr: float | None = None
    hint_patience: int | None = None
    hint_min_delta: float | None = None
    hint_min_r2: float | None = None
    device: str = "auto"
    #: images of the ONNX parity check (None: edgekd.ship.export.MIN_PARITY_SAMPLES, or every
    #: image of a smaller data set, said in one line)
    parity_samples: int | None = None
    calibration: str | None = None
    baselines: bool = False
    #: after selection, train the chosen arm again on the training plus the validation images and
    #: ship that model (edgekd.run.final_retrain; why it is on by default: docs/recipe.md)
    final_retrain: bool = True
    #: how candidates are trained: ``halving`` (each on its own, successive halving) or
    #: ``supernet`` (one weight-sharing supernet, its front, the best fine-tuned)
    strategy: str = "halving"
    #: train the reference students within the budget (edgekd.run.references); --baselines does too
    reference: bool = False
    #: which reference models (edgekd.search.reference.REFERENCE_MODELS names; None: all of them)
    reference_models: tuple[str, ...] | None = None
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus: int | None = None
    gpus_per_trial: float = 0.0
    threads_per_trial: int | None = None  # None: 1 on CPU (TRIAL_THREADS_CPU), torch's default on CUDA
    out: Path | None = None
    resume: bool = False
    seed: int = 0
    max_train_samples: int | None = None
    batch_size: int | None = None
    measure_warmup: int = 50
    measure_iters: int = 500  # at least this many timed runs per model, over the rounds
    measure_seconds: float = 0.5  # each model timed for at least this long, over the rounds
    measure_rounds: int = 5  # teacher and students timed in turn, this many times
    bundle: bool = True
    int8_tolerance: float = BundleConfig.int8_tolerance  # points; see edgekd.ship.bundle.BundleConfig
    progress: bool = True
    command: list[str] | None = None
    options: dict[str, Any] | None = None  # every CLI option, kept in run.json (--config)
    yes: bool = False  # run a plan that check_effort finds absurd

    def to_dict(self) -> dict[str, Any]:
        """A JSON document of every field (``out`` as text), tagged with its format; run.json
        keeps it under ``configs.compress``. ``options`` and ``command`` are kept beside it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("options", "command")}
        data["out"] = str(self.out) if self.out is not None else None
        return {"format": COMPRESS_CONFIG_FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressConfig:
        """The inverse of :meth:`to_dict`; a foreign format or an unknown field is one line."""
        found = config_fields(cls, data, tag=COMPRESS_CONFIG_FORMAT, what="compress config")
        if found.get("out") is not None:
            found["out"] = Path(found["out"])
        return cls(**found)

    def identity_config(self) -> dict[str, Any]:
        """The settings that change the results (not: executor, output, measuring, progress)."""
        keys = ("candidates", "epochs", "min_epochs", "hint_epochs", "eta", "finalists", "rungs",
                "method", "max_train_samples", "batch_size", "arch", "rung_method", "depth_groups",
                "augment", "teacher_views", "label_smoothing")
        identity = {key: getattr(self, key) for key in keys}
        if self.ema:  # runs without --ema keep the identity they had before the option
            identity["ema"] = self.ema
        if identity["label_smoothing"] is None:  # likewise runs without --label-smoothing
            identity["label_smoothing"] = 0.0
        if self.method_options:  # likewise runs without --method-opt
            identity["method_options"] = dict(sorted(self.method_options.items()))
        if self.strategy != "halving":  # likewise runs of the halving strategy
            identity["strategy"] = self.strategy
        if self.normalize != "dataset":  # likewise runs fed with the data's own statistics
            identity["normalize"] = self.normalize
        if self.stem_strides not in (None, (1,)):  # likewise runs with stride-1 stems only
            identity["stem_strides"] = list(self.stem_strides)
        if self.families:  # likewise runs with the default families
            identity["families"] = list(self.families)
        identity.update(self.hint_settings())  # likewise: only hint options that differ from the default
        return identity

    def trial_options(self, method: str) -> dict[str, Any]:
        """The TrainConfig fields that carry the method options of a trial of ``method``: the
        given ones that ``method`` declares (empty when none is given)."""
        from edgekd.distill.methods import OPTION_FIELDS

        given = dict(self.method_options)
        if self.label_smoothing is not None:
            given["label_smoothing"] = self.label_smoothing
        declared = METHODS[method]
        kept = {k: v for k, v in given.items() if declared.option(k) is not None}
        values: dict[str, Any] = {OPTION_FIELDS[k]: kept.pop(k) for k in list(kept) if k in OPTION_FIELDS}
        if kept:
            values["method_options"] = kept
        return values

    def check_method_options(self) -> None:
        """Refuse an option that ``--method`` does not use (one line, before any work)."""
        from edgekd.distill.config import TrainConfig
        from edgekd.distill.methods import OPTION_FIELDS

        given = dict(self.method_options)
        if self.label_smoothing is not None:
            given["label_smoothing"] = self.label_smoothing
        fields_ = {OPTION_FIELDS[k]: given.pop(k) for k in list(given) if k in OPTION_FIELDS}
        try:
            TrainConfig(method=self.method, method_options=given, **fields_)
        except EdgekdError as error:
            raise EdgekdError(str(error).replace("training config: ", "--method-opt: ", 1)) from None

    def hint_settings(self) -> dict[str, Any]:
        """The hint options (:data:`HINT_FIELDS`) that differ from TrainConfig's defaults."""
        from edgekd.distill.config import TrainConfig

        defaults = TrainConfig.__dataclass_fields__
        values = {key: getattr(self, key) for key in HINT_FIELDS}
        return {k: v for k, v in values.items() if v is not None and v != defaults[k].default}

    def trains_references(self) -> bool:
        """Whether the run trains the reference students (``--reference`` or ``--baselines``)."""
        return self.reference or self.baselines or bool(self.reference_models)

    def validate(self) -> None:
        """Refuse (one line naming the option) a value of the wrong type or out of range, before
        anything is loaded or written: ints must be integers (not booleans, not 2.7), numbers
        finite, ``--eta`` at least 2 (each rung keeps 1/eta), counts at least 1."""
        for name, (low, optional) in _INT_RANGES.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not _is_int(value) or value < low:
                flag = "--" + name.replace("_", "-")
                raise EdgekdError(f"{flag} {value!r}: give a whole number, {flag} {low} or more"
                                  f"{_ETA_WHY if name == 'eta' else ''}")
        for name, (low, strict, optional) in _FLOAT_RANGES.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not _is_number(value) or not math.isfinite(value) or value < low or (strict and value == low):
                raise EdgekdError(f"--{name.replace('_', '-')} {value!r}: give a finite number "
                                  f"{'above' if strict else 'of at least'} {low:g}")

    def selection_method(self) -> str:
        """What the selection rungs train: ``rung_method``, else what the method's registry
        entry names for them (:attr:`~edgekd.distill.methods.Method.rung_method`: kd for the
        FitNets methods), else ``method``."""
        if self.rung_method is not None:
            return self.rung_method
        declared = METHODS.get(self.method)
        return (declared.rung_method if declared is not None else None) or self.method

    def resolved(self, n_train: int) -> "CompressConfig":
        """This config with ``epochs`` and ``min_epochs`` filled in from the data size."""
        import torch

        cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        epochs = self.epochs if self.epochs is not None else default_epochs(n_train, cuda=cuda)
        augment = self.augment if self.augment is not None else "auto"
        low = self.min_epochs if self.min_epochs is not None else max(1, round(epochs / self.eta))
        views = self.teacher_views if self.teacher_views is not None else (
            0 if cuda else DEFAULT_TEACHER_VIEWS_CPU)
        threads = self.threads_per_trial if self.threads_per_trial is not None else (
            None if cuda else TRIAL_THREADS_CPU)
        stems = self.stem_strides if self.stem_strides is not None else (
            EMBEDDED_STEM_STRIDES if self.is_embedded() else (1,))
        return dataclasses.replace(self, epochs=epochs, min_epochs=min(low, epochs), teacher_views=views,
                                   augment=augment, threads_per_trial=threads, stem_strides=tuple(stems))

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
        if (has_hints(self.method) or self.baselines) and epochs <= self.hint_epochs:
            raise EdgekdError(f"--epochs {epochs} leaves no KD epoch after "
                              f"{self.hint_epochs} hint epoch(s): use --epochs "
                              f"{self.hint_epochs + 1} or more")
        if has_hints(self.selection_method()):
            low = max(low, self.hint_epochs + 1)
        return HalvingConfig(eta=self.eta, min_epochs=min(low, epochs),
                             max_epochs=epochs, finalists=self.finalists, rungs=self.rungs)


#: Training images seen per full trial by default: ``epochs = clamp(round(SAMPLES / n), 4, 60)``
#: (30 epochs of a 10k-image set, 6 of 50k): what the embedded default needs to come within
#: half a point of its teacher, at about 4 CPU-minutes (docs/recipe.md).
DEFAULT_SAMPLES_PER_TRIAL = 300_000
#: The same on CUDA: 30 epochs of a 50k-image set (CIFAR-10), 60 (the cap) up to 25k images. A GPU
#: epoch of a CIFAR-sized student takes seconds, and CIFAR-sized data keeps gaining past the CPU
#: budget's epochs (docs/recipe.md).
DEFAULT_SAMPLES_PER_TRIAL_CUDA = 1_500_000
#: ``--teacher-views`` when not given: on CPU the teacher's outputs on 8 augmented views per
#: image are computed once per run (cached) instead of a teacher pass per batch; on CUDA the
#: teacher runs per batch (cheap there, and every step sees a fresh crop).
DEFAULT_TEACHER_VIEWS_CPU = 8
#: ``--threads-per-trial`` when not given, on CPU: one torch thread per trial. A trial's student
#: is tiny (a few MMACs per image), so a step is a few hundred small kernels, each an OpenMP
#: parallel region whose barrier waits for the slowest thread; when the cores are shared one of
#: two threads is regularly descheduled and every barrier waits out its time slice (an epoch
#: was up to 10x slower with 2 threads on a busy 2-core machine).
TRIAL_THREADS_CPU = 1


#: Integer options of compress: field -> (smallest value, None allowed).
_INT_RANGES = {"candidates": (1, False), "epochs": (1, True), "min_epochs": (1, True),
               "hint_epochs": (0, False), "eta": (2, False), "finalists": (1, False),
               "rungs": (1, True), "max_macs": (1, True), "batch": (1, True),
               "teacher_views": (0, True), "parity_samples": (1, True), "ray_cpus": (1, True),
               "threads_per_trial": (1, True), "seed": (0, False), "max_train_samples": (1, True),
               "batch_size": (1, True), "measure_warmup": (0, False), "measure_iters": (1, False)}
#: Real-valued options: field -> (smallest value, strictly above it, None allowed).
_FLOAT_RANGES = {"latency_ms": (0.0, True, True), "gpus_per_trial": (0.0, False, False),
                 "label_smoothing": (0.0, False, True), "ema": (0.0, False, False),
                 "int8_tolerance": (0.0, False, False)}
_ETA_WHY = " (each rung keeps the best 1/eta of the students; 2 halves them)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def has_hints(name: str) -> bool:
    """Whether method ``name`` has a hint stage (an unknown name is refused elsewhere)."""
    method = METHODS.get(name)
    return method is not None and method.has_hint_stage


def default_epochs(n_train: int, *, cuda: bool = False) -> int:
    """Epochs of a full trial when --epochs is not given: ``clamp(round(S / n_train), 4, 60)``
    with S = DEFAULT_SAMPLES_PER_TRIAL on CPU, DEFAULT_SAMPLES_PER_TRIAL_CUDA on a GPU."""
    samples = DEFAULT_SAMPLES_PER_TRIAL_CUDA if cuda else DEFAULT_SAMPLES_PER_TRIAL
    return int(min(60, max(4, round(samples / max(n_train, 1)))))


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


def train_config(config: CompressConfig, method: str, epochs: int) -> dict[str, Any]:
    """The TrainConfig fields of one trial of ``config`` trained with ``method`` for ``epochs``
    (:class:`~edgekd.distill.config.TrainConfig`'s defaults for the fields left out)."""
    values: dict[str, Any] = {"method": method, "epochs": epochs, "seed": config.seed,
                              "max_train_samples": config.max_train_samples,
                              "hint_epochs": config.hint_epochs, "augment": config.augment,
                              "teacher_views": config.teacher_views, "device": config.device}
    values.update(config.trial_options(method))
    if config.batch_size is not None:
        values["batch_size"] = config.batch_size
    if config.ema:
        values["ema"] = config.ema
    values.update(config.hint_settings())
    return values
