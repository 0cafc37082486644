"""One trainer for every method: scratch, kd, fitnet, mimic and ban.

Methods (registered in :mod:`edgekd.distill.methods`, formulas in :mod:`edgekd.distill.losses`):

- ``scratch``: cross-entropy on the labels (plain back-prop).
- ``kd`` (Hinton et al. 2015): ``a*CE + (1-a)*T^2*KL(p_t^T || p_s^T)``.
- ``fitnet`` (Romero et al. 2015), two stages. Stage 1 (``"hint"``,
  :mod:`edgekd.distill.hint_stage`): the student up to its guided layer plus a regressor
  (:mod:`edgekd.distill.pairing`: equal resolutions) are trained on ``1/2 ||u_h - r(v_g)||^2``
  summed over channels, averaged over positions (``reduction="channel"``), with their own Adam
  (``hint_lr``) and cosine, for at most ``hint_epochs`` epochs **in addition to** the
  ``epochs`` of stage 2, stopping early when the regressor's R^2 plateaus (``hint_patience``,
  ``hint_min_delta``); R^2 is logged per hint epoch (metrics.jsonl) and in result.json
  (``hint_r2``, ``hint_epochs_done``). The teacher runs up to its hint layer on every batch of
  stage 1 (hint maps are too large to cache). Stage 2 (``"kd"``) trains the whole student
  for ``epochs`` epochs with KD whose soft term is weighted by ``lambda``, annealed
  *linearly per step* from ``lambda_start`` (4) to ``lambda_end`` (1) over stage 2, with the
  weights renormalised so the loss scale (hence the effective learning rate) stays that of ``kd``::

      L = (a*CE + (1-a)*lambda(t)*T^2*KL) / (a + (1-a)*lambda(t))

  This is the paper's schedule (FitNets weight their soft cross-entropy by a lambda that
  starts at 4 and decays linearly to 1, so soft targets dominate early and the labels
  matter more and more). The renormalisation is ours: without it the soft gradient is 4x
  larger at the start of stage 2, a 4x jump of the effective learning rate right after
  the hint stage. At lambda = 1 the loss is exactly ``kd``'s, so
  ``fitnet`` vs ``kd`` isolates the hints and the annealing. The regressor is thrown away
  after stage 1. ``scratch``, ``kd`` and ``fitnet`` with the same ``epochs`` get the same
  number of KD passes; fitnet's hint epochs are extra (compare at equal wall-clock as well).
- ``mimic`` (Ba & Caruana 2014): ``1/2 ||z_s - z_t||^2`` on logits, no labels.
- ``ban`` (Furlanello et al. 2018, born-again networks): ``generations`` students of the
  same architecture in ``out_dir/gen{g}``; generation 1 learns with ``kd`` from the given
  teachers (or with ``scratch`` when there are none, which is the paper's label-trained
  first model), generation ``g > 1`` with ``kd`` from generation ``g - 1``. The result
  reports every generation and the ensemble of all generations (averaged logits).

Teacher ensembles: several teachers are combined with ``ensemble="logits"`` (mean logits)
or ``"probs"`` (mean tempered probabilities), :func:`~edgekd.distill.losses.combine_teacher_logits`.
With augmentation off, each teacher's logits on the training images are computed once and
cached on disk by :func:`edgekd.inputs.data.teacher_logits` (key: teacher fingerprint + data
fingerprint), so a KD epoch does no teacher forward pass; a different teacher gets a
different file.

Augmentation (``augment``, :mod:`edgekd.distill.augment`): drawn once per batch; the one
augmented tensor is what the student and the teacher see. The teacher then runs per batch,
or, with ``teacher_views = K``, on K augmented views per image drawn once at the start
(each batch serves a random one of the K views and its cached targets): K teacher passes in
all instead of one per epoch (benchmarks/train_throughput.py measures which is faster).

Optimisation: SGD (momentum, Nesterov) or AdamW; the learning rate of each stage warms up
linearly over ``warmup_epochs`` (at most a fifth of the stage), then follows a cosine from
``lr`` down to ``lr_floor * lr`` at the stage's end (:func:`lr_factor`), set per step from
``(step, stage horizon)``; the KD/scratch stage is one schedule over all its epochs.
``label_smoothing`` smooths the hard-label term. **When the horizon
grows** (successive halving calls again with a larger ``epochs``), training continues from
the checkpoint and the cosine is recomputed for the new horizon: the rate jumps back up to
the new curve's value at the current step (a warm restart, as in SGDR) and decays to the
floor at the new end. A run that goes straight to ``epochs=E`` therefore differs from one that
stopped at ``E/2`` and was extended; an interrupted-and-resumed run with the same
``epochs`` is identical to an uninterrupted one.

Determinism: the data order (and any augmentation) of epoch ``e`` comes from a generator
seeded with ``(seed, e)``; weights, optimizer, best-so-far and the torch/numpy/python RNG
states are saved atomically in ``checkpoint.pt`` after every epoch. On CPU, resuming
after an interrupted epoch gives exactly the weights of an uninterrupted run.

Selection: the weights with the best validation accuracy (``split_train_val``, ties go to
the later epoch) are the student; test accuracy is measured on them once, at the end.
On CUDA: AMP (float16 autocast + GradScaler) and channels_last.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn

from edgekd.core.checkpoint import make_checkpoint, read_checkpoint
from edgekd.distill import augment, losses
from edgekd.distill.hint_stage import R2Meter, hint_record, plateaued
from edgekd.distill.hints import FeatureTap, HintPair, make_regressor, pair_layers
from edgekd.distill.methods import METHODS, Batch, Loss, Stage, StudentOut, TeacherOut, get_method
from edgekd.core.errors import EdgekdError
from edgekd.core.fmt import epoch_line
from edgekd.core.progress import StepBar, say
from edgekd.core.fileio import (append_jsonl, atomic_torch_save, atomic_write_json, read_json,
                           read_jsonl, sha256_file, write_jsonl)

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train_student", "predict_logits",
           "accuracy", "default_lr"]

OPTIMIZERS = ("sgd", "adamw")
#: Config fields that do not change what is trained (may differ between calls on one out_dir).
_RUNTIME_FIELDS = ("epochs", "device", "cache_dir", "use_cache")


def default_lr(optimizer: str) -> float:
    """The learning rate used when ``TrainConfig.lr`` is None: SGD 0.05, AdamW 0.002."""
    return {"sgd": 0.05, "adamw": 0.002}[optimizer]


@dataclass
class TrainConfig:
    """How to train one student. ``epochs`` counts the epochs trained on labels/logits;
    fitnet's hint stage (at most ``hint_epochs``) comes on top (issue 12)."""

    method: str = "kd"
    epochs: int = 10
    hint_epochs: int = 2
    temperature: float = 4.0
    alpha: float = 0.1
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    val_fraction: float = 0.1
    generations: int = 3
    hint_layer: str | None = None
    guided_layer: str | None = None
    ensemble: str = "logits"
    max_train_samples: int | None = None
    device: str = "auto"
    momentum: float = 0.9
    lambda_start: float = 4.0
    lambda_end: float = 1.0
    augment: str = "none"
    teacher_views: int = 0
    warmup_epochs: float = 1.0
    lr_floor: float = 0.01
    label_smoothing: float = 0.0
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_warmup: float = 0.1
    ls_temperature: float = 2.0
    #: fitnet's hint stage (edgekd.distill.hint_stage): its own Adam lr, and the R^2 plateau rule
    hint_lr: float = 5e-3
    hint_patience: int = 2
    hint_min_delta: float = 0.01
    #: added to ``seed`` for initialisation and data order only (born-again generations)
    seed_offset: int = 0
    cache_dir: str | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):  # configs written when --augment was a flag (2 px shifts)
            self.augment = "shift" if self.augment else "none"
        self.validate()

    def validate(self) -> None:
        def bad(what: str, fix: str) -> EdgekdError:
            return EdgekdError(f"training config: {what}: {fix}")

        if self.method not in METHODS:
            raise bad(f"unknown method {self.method!r}", f"use one of {', '.join(METHODS)}")
        method = METHODS[self.method]
        if self.optimizer not in OPTIMIZERS:
            raise bad(f"unknown optimizer {self.optimizer!r}", "use sgd or adamw")
        if self.ensemble not in ("logits", "probs"):
            raise bad(f"unknown ensemble mode {self.ensemble!r}", "use logits or probs")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad(f"epochs={self.epochs!r}", "give a positive integer")
        if self.temperature <= 0:
            raise bad(f"temperature={self.temperature}", "give T > 0 (typical 2..8)")
        if not 0.0 <= self.alpha <= 1.0:
            raise bad(f"alpha={self.alpha}", "give 0 <= alpha <= 1 (the weight of the hard labels)")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad(f"lr={self.lr}", "give a positive learning rate")
        if not (self.hint_lr > 0 and math.isfinite(self.hint_lr)) or self.hint_patience < 0 or self.hint_min_delta < 0:
            raise bad(f"hint_lr={self.hint_lr}, hint_patience={self.hint_patience}, "
                      f"hint_min_delta={self.hint_min_delta}", "give hint_lr > 0, patience and min_delta >= 0")
        if self.batch_size < 1:
            raise bad(f"batch_size={self.batch_size}", "give a positive integer")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise bad(f"max_train_samples={self.max_train_samples}", "give a positive integer or None")
        problem = method.validate(self) if method.validate is not None else None
        if problem is not None:
            raise bad(*problem)
        from edgekd.distill.augment import AUGMENTS

        if self.augment not in AUGMENTS:
            raise bad(f"unknown augmentation {self.augment!r}", f"use one of {', '.join(AUGMENTS)}")
        if self.teacher_views < 0:
            raise bad(f"teacher_views={self.teacher_views}", "give 0 (teacher per batch) or K >= 1 cached views")
        if self.warmup_epochs < 0 or not 0.0 <= self.lr_floor <= 1.0:
            raise bad(f"warmup_epochs={self.warmup_epochs}, lr_floor={self.lr_floor}",
                      "give warmup_epochs >= 0 and 0 <= lr_floor <= 1 (a fraction of --lr)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad(f"label_smoothing={self.label_smoothing}", "give 0 <= label_smoothing < 1")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.optimizer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EdgekdError(f"training config: unknown field(s) {', '.join(unknown)}: "
                              f"use only {', '.join(sorted(known))}")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields that define what is trained (all but epochs/device/cache settings)."""
        return {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_FIELDS}


@dataclass
class TrainResult:
    """What a training run produced; ``to_dict()`` is result.json (JSON-serialisable)."""

    method: str
    val_acc: float | None
    test_acc: float
    epochs_done: int
    checkpoint: Path
    seconds: float
    best_epoch: int | None = None
    train_samples: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    hint: dict[str, Any] | None = None
    generations: list[dict[str, Any]] | None = None
    inputs: dict[str, Any] | None = None  # fingerprints of the data and the teachers (see _inputs)
    ensemble_val_acc: float | None = None
    ensemble_test_acc: float | None = None
    #: fitnet: hint epochs trained (on top of ``epochs``) and the regressor's R^2 per hint epoch
    hint_epochs_done: int = 0
    hint_r2: list[float] | None = None
    #: The trained student (in memory only, never serialised).
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        data["checkpoint"] = str(self.checkpoint)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainResult":
        known = {f.name for f in fields(cls)} - {"model"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["checkpoint"] = Path(kwargs["checkpoint"])
        return cls(**kwargs)


# ----------------------------------------------------------------------------- helpers
def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EdgekdError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdgekdError(f"device {name!r} asked for but CUDA is not available: use --device cpu")
    return device


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on a float tensor, on the CPU, float32."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(dim=1) == labels).float().mean())


def _cosine(step: int, total: int) -> float:
    """Cosine factor ``0.5 (1 + cos(pi step / total))`` from 1 down to 0."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """The learning-rate multiplier at ``step`` of ``total``: a linear warm-up from ``1/warmup``
    to 1 over the first ``warmup`` steps (Goyal et al. 2017), then a cosine from 1 down to
    ``floor`` at ``total`` (Loshchilov & Hutter 2017)::

        f(s) = (s + 1) / W                                             s < W
        f(s) = floor + (1 - floor) * 0.5 (1 + cos(pi (s - W) / (T - W)))  otherwise
    """
    if step < warmup:
        return (step + 1) / warmup
    return floor + (1.0 - floor) * _cosine(step - warmup, max(total - warmup, 1))


def warmup_steps(warmup_epochs: float, span_epochs: int, steps_per_epoch: int) -> int:
    """Warm-up length in steps: ``warmup_epochs``, but at most a fifth of the stage (so a
    2-epoch halving rung is not all warm-up)."""
    return int(round(min(warmup_epochs, 0.2 * span_epochs) * steps_per_epoch))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 17)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached": float(np_state[4])},
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    random.setstate(_as_tuple(state["python"]))


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _teacher_fingerprints(teachers: list[nn.Module], given: list[str] | None) -> list[str]:
    if given is not None:
        if len(given) != len(teachers):
            raise EdgekdError(f"{len(given)} teacher fingerprints for {len(teachers)} teachers: "
                              "give one per teacher")
        return list(given)
    from edgekd.inputs.teachers import model_fingerprint

    return [model_fingerprint(t) for t in teachers]


def _cache_dir(config: TrainConfig) -> Path | None:
    if not config.use_cache:
        return None
    if config.cache_dir:
        return Path(config.cache_dir)
    from edgekd.core.cache import cache_root

    return cache_root() / "teacher_logits"


@dataclass
class _Data:
    """Float tensors of the split, plus (optionally) the teacher targets of the train part."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    train_idx: np.ndarray
    pad_value: torch.Tensor


def _prepare_data(dataset: Any, config: TrainConfig) -> _Data:
    from edgekd.inputs.data import split_train_val, to_tensor

    n = len(dataset.y_train)
    if config.val_fraction > 0:
        train_idx, val_idx = split_train_val(n, config.val_fraction, config.seed)
    else:
        train_idx, val_idx = np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if config.max_train_samples is not None and config.max_train_samples < len(train_idx):
        rng = np.random.default_rng(config.seed)
        train_idx = np.sort(rng.choice(train_idx, config.max_train_samples, replace=False))
    norm = dataset.normalization
    mean = torch.tensor(norm.mean, dtype=torch.float32)
    std = torch.tensor(norm.std, dtype=torch.float32)
    return _Data(
        x_train=to_tensor(dataset.x_train[train_idx], norm),
        y_train=torch.as_tensor(dataset.y_train[train_idx], dtype=torch.long),
        x_val=to_tensor(dataset.x_train[val_idx], norm) if len(val_idx) else
        torch.zeros((0, *dataset.input_shape)),
        y_val=torch.as_tensor(dataset.y_train[val_idx], dtype=torch.long),
        x_test=to_tensor(dataset.x_test, norm),
        y_test=torch.as_tensor(dataset.y_test, dtype=torch.long),
        train_idx=train_idx, pad_value=-mean / std)


def _cached_teacher_targets(teachers: list[nn.Module], fps: list[str], dataset: Any,
                            train_idx: np.ndarray, config: TrainConfig) -> torch.Tensor:
    """Combined teacher logits for the training images, from the on-disk cache.

    Each teacher's logits are computed on *all* training images (so every seed, split and
    rung of a run shares one cache file per teacher) and then indexed.
    """
    from edgekd.inputs.data import teacher_logits

    cache_dir = _cache_dir(config)
    per_teacher = [torch.from_numpy(teacher_logits(t, dataset.x_train, dataset.normalization,
                                                   cache_dir=cache_dir, teacher_fp=fp))[train_idx]
                   for t, fp in zip(teachers, fps)]
    for index, logits in enumerate(per_teacher):
        _check_teacher_finite(logits, index)
    return losses.combine_teacher_logits(per_teacher, config.ensemble, config.temperature)


def _check_teacher_finite(logits: torch.Tensor, index: int) -> None:
    """A teacher that outputs nan/inf is named as the cause (no --lr helps it)."""
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).reshape(len(logits), -1).any(1).sum())
        raise EdgekdError(f"teacher {index + 1} outputs nan or inf for {bad} of {len(logits)} "
                          "training images: the teacher is broken (check its weights, and that it "
                          "expects the data's normalisation), not the student's training")


def _check_finite(loss: torch.Tensor, stage: str, epoch: int, batch: int, lr: float) -> None:
    if not bool(torch.isfinite(loss)):
        what = "nan" if bool(torch.isnan(loss)) else "inf"
        raise EdgekdError(f"loss became {what} in stage '{stage}' at epoch {epoch + 1} (batch {batch + 1}): "
                          f"lower --lr (now {lr:g}), or check the data and the teacher's outputs")


def _stage_spans(config: TrainConfig, hint_end: int | None = None) -> dict[str, tuple[Stage, int, int]]:
    """stage name -> (stage, first epoch, number of epochs) of the config's method, in order;
    the last stage takes the epochs left. Hint stages (``kind="hint"``) come ON TOP of
    ``config.epochs`` (issue 12): the horizon is ``epochs`` + their epochs; ``hint_end`` is
    the hint epochs actually trained once the plateau rule or the budget ended that stage."""
    stages = get_method(config.method).stages
    spans: dict[str, tuple[Stage, int, int]] = {}
    first = 0
    extra = 0
    for stage in stages:
        if stage.kind == "hint":
            extra += hint_end if hint_end is not None else stage.epochs(config)
    horizon = config.epochs + extra
    for stage in stages:
        if stage.epochs is None:
            span = horizon - first
        elif stage.kind == "hint" and hint_end is not None:
            span = hint_end
        else:
            span = stage.epochs(config)
        spans[stage.name] = (stage, first, span)
        first += span
    return spans


_CHECK_EVERY = 25  # steps between finiteness checks on CUDA (each one is a host sync)


def _check_first_bad(first_bad: torch.Tensor, loss: torch.Tensor, stage: str, epoch: int,
                     lr_at: Any) -> None:
    """Raise the named error for the first non-finite batch tracked on the device, if any."""
    b = int(first_bad)
    if b >= 0:
        _check_finite(torch.tensor(float("nan") if bool(torch.isnan(loss)) else float("inf")),
                      stage, epoch, b, lr_at(b))


def _horizon(spans: dict[str, tuple[Stage, int, int]]) -> int:
    """The total number of epochs of a run (hint epochs included)."""
    _, first, span = list(spans.values())[-1]
    return first + span


# ----------------------------------------------------------------------------- the trainer
class _Trainer:
    """Trains one student (any method but ban) into ``out_dir``; see the module docstring."""

    def __init__(self, student: Any, teachers: list[nn.Module], dataset: Any, config: TrainConfig,
                 out_dir: Path, teacher_fps: list[str] | None, progress: bool,
                 inputs: dict[str, Any] | None = None) -> None:
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.inputs = inputs
        self.dataset, self.teachers = dataset, list(teachers)
        self.method = config.method
        self.stages = _stage_spans(config)
        self.losses: dict[str, Loss] = {stage.name: stage.loss(config) for stage, _, _ in self.stages.values()}
        if get_method(self.method).needs_teacher and not self.teachers:
            raise EdgekdError(f"method '{self.method}' needs a teacher: pass --teacher "
                              "(or use --method scratch)")
        self.teacher_fps = teacher_fps
        self.device = _resolve_device(config.device)
        self.cuda = self.device.type == "cuda"
        self.spec = student if hasattr(student, "to_dict") and hasattr(student, "stages") else None
        torch.manual_seed(config.seed + config.seed_offset)
        if self.spec is not None:
            from edgekd.search.space import build

            self.model: nn.Module = build(self.spec)
        elif isinstance(student, nn.Module):
            self.model = copy.deepcopy(student)
        else:
            raise EdgekdError(f"student must be a StudentSpec or an nn.Module, got {type(student).__name__}: "
                              "pass a spec JSON or a model")
        self._check_dataset()
        self.model.to(self.device)
        if self.cuda:
            self.model.to(memory_format=torch.channels_last)
        for teacher in self.teachers:
            teacher.eval().to(self.device)
        self.pair: HintPair | None = None
        self.regressor: nn.Module | None = None
        self.hint_end: int | None = None  # hint epochs trained, once the hint stage has ended
        self.r2_history: list[float] = []

    # -- setup -------------------------------------------------------------------------
    def _check_dataset(self) -> None:
        shape, classes = tuple(self.dataset.input_shape), self.dataset.num_classes
        if self.spec is not None:
            if tuple(self.spec.input) != shape or self.spec.classes != classes:
                raise EdgekdError(f"student spec is for input {list(self.spec.input)} and {self.spec.classes} "
                                  f"classes but the data has {list(shape)} and {classes}: use a spec made "
                                  "for this data")

    def _stage(self, epoch: int) -> str:
        """The name of the stage that trains epoch ``epoch`` (0-based)."""
        for name, (_, first, span) in self.stages.items():
            if epoch < first + span:
                return name
        return list(self.stages)[-1]  # past the horizon: the last stage

    def _stage_bounds(self, stage: str) -> tuple[int, int]:
        """(first epoch, number of epochs) of a stage under the current horizon (a hint
        stage's cosine spans its whole budget even when the plateau rule stops it early)."""
        spec, first, span = self.stages[stage]
        if spec.kind == "hint":
            return first, spec.epochs(self.config)
        return first, span

    @property
    def total_epochs(self) -> int:
        return _horizon(self.stages)

    def _end_hint_stage(self, epoch: int, stage: str, record: dict[str, Any]) -> None:
        """Record R^2; end the hint stage at its budget or when R^2 plateaus
        (:func:`edgekd.distill.hint_stage.plateaued`)."""
        cfg = self.config
        self.r2_history.append(float(record["r2_mean"]))
        first, budget = self._stage_bounds(stage)
        done = epoch + 1 - first
        if done >= budget:
            self.hint_end = done
        elif plateaued(self.r2_history, cfg.hint_patience, cfg.hint_min_delta):
            self.hint_end = done
            record["hint_stop"] = (f"R^2 plateau (best of the last {cfg.hint_patience} epochs < "
                                   f"{cfg.hint_min_delta} above the best before)")
        if self.hint_end is not None:
            self.stages = _stage_spans(cfg, self.hint_end)

    def _is_hint(self, stage: str) -> bool:
        return self.stages[stage][0].kind == "hint"

    def _setup_hints(self) -> None:
        cfg = self.config
        self.pair = pair_layers(self.teachers[0], self.model, tuple(self.dataset.input_shape),
                                hint_layer=cfg.hint_layer, guided_layer=cfg.guided_layer, spec=self.spec)
        torch.manual_seed(cfg.seed + 1)
        self.regressor = make_regressor(self.pair.guided_shape, self.pair.hint_shape).to(self.device)
        self.teacher_tap = FeatureTap(self.teachers[0], self.pair.hint_layer)
        self.student_tap = FeatureTap(self.model, self.pair.guided_layer)

    def _optimizer(self, stage: str) -> torch.optim.Optimizer:
        cfg = self.config
        params = list(self.model.parameters())
        if self._is_hint(stage) and self.regressor is not None:
            params += list(self.regressor.parameters())
        if self._is_hint(stage):  # the hint stage's own optimiser (hint_stage module docstring)
            return torch.optim.Adam(params, lr=cfg.hint_lr)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum,
                                   nesterov=cfg.momentum > 0)
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.config
        started = time.monotonic()
        self.data = _prepare_data(self.dataset, cfg)
        n_train = len(self.data.y_train)
        if n_train < 2:
            raise EdgekdError(f"only {n_train} training image(s) after the validation split: "
                              "give more data or a smaller --val-fraction")
        self.batch = min(cfg.batch_size, n_train)
        self.steps = n_train // self.batch  # drop the last partial batch
        self.augment = augment.resolve(cfg.augment, tuple(self.dataset.input_shape))
        self.targets: torch.Tensor | None = None
        self.views: tuple[augment.AugParams, torch.Tensor] | None = None
        if get_method(self.method).needs_teacher and not self.augment.active:
            fps = self.inputs["teachers"] if self.inputs else _teacher_fingerprints(self.teachers, self.teacher_fps)
            self.targets = _cached_teacher_targets(self.teachers, fps, self.dataset,
                                                   self.data.train_idx, cfg)
        elif get_method(self.method).needs_teacher and cfg.teacher_views > 0:
            self.views = self._teacher_views(cfg.teacher_views)
        if get_method(self.method).has_hint_stage:
            self._setup_hints()
        self.scaler = torch.amp.GradScaler("cuda") if self.cuda else None

        state = self._restore()
        epoch, seconds = state["epoch"], state["seconds"]
        self.best_val, self.best_epoch = state["best_val"], state["best_epoch"]
        self.best_state = state["best_state"]
        optimizer, opt_stage = state["optimizer"], state["opt_stage"]
        seconds += time.monotonic() - started  # setup time of this call
        while epoch < self.total_epochs:
            t0 = time.monotonic()
            stage = self._stage(epoch)
            if optimizer is None or opt_stage != stage:
                optimizer, opt_stage = self._optimizer(stage), stage
            record = self._train_epoch(epoch, stage, optimizer)
            if self._is_hint(stage):
                self._end_hint_stage(epoch, stage, record)
            else:
                record["val_acc"] = self._evaluate_val()
                # ties (and no validation set: nan) go to the later epoch
                if self.best_state is None or not record["val_acc"] < self.best_val:
                    self.best_val, self.best_epoch = record["val_acc"], epoch + 1
                    self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            epoch += 1
            elapsed = time.monotonic() - t0
            seconds += elapsed
            record["seconds"] = round(elapsed, 4)
            # the curve point first: a kill between the two leaves a line past the checkpoint,
            # which _restore drops (and that epoch trains again); the other order lost it
            append_jsonl(self.out_dir / "metrics.jsonl", record)
            self._save(epoch, seconds, optimizer, opt_stage)
            # one plain line per epoch: pipes and CI logs see progress too
            say(self.progress, epoch_line(record, self.total_epochs))
        return self._finish(epoch, seconds)

    def _teacher_views(self, k: int) -> tuple[augment.AugParams, torch.Tensor]:
        """K augmented views per training image and the combined teacher targets on each:
        (params stacked view-major as (K*N,), targets (K, N, classes)) for the N training images
        of this split. The views are drawn once for the whole data set (seeded by ``seed``) and
        each teacher's logits on them are cached on disk like :func:`_cached_teacher_targets`'
        (key: teacher, data, augmentation, K, seed), so every trial of a run shares one file and
        pays the K teacher passes once."""
        ds, cfg = self.dataset, self.config
        n_all = len(ds.x_train)
        gen = _epoch_generator(cfg.seed, -1)
        params = [augment.sample(self.augment, n_all, gen) for _ in range(k)]
        fps = self.inputs["teachers"] if self.inputs else _teacher_fingerprints(self.teachers, self.teacher_fps)
        per_teacher = [self._view_logits(t, fp, params) for t, fp in zip(self.teachers, fps)]
        idx = torch.as_tensor(self.data.train_idx, dtype=torch.long)
        targets = torch.stack([losses.combine_teacher_logits([lt[v][idx] for lt in per_teacher],
                                                             cfg.ensemble, cfg.temperature)
                               for v in range(k)])
        stacked = augment.AugParams(torch.cat([p.oy[idx] for p in params]), torch.cat([p.ox[idx] for p in params]),
                                    torch.cat([p.flip[idx] for p in params]))
        return stacked, targets

    def _view_logits(self, teacher: nn.Module, fp: str, params: list[augment.AugParams]) -> torch.Tensor:
        """One teacher's logits (K, N_all, classes) on the views ``params``, cached on disk."""
        from edgekd.core.fileio import atomic_write_bytes
        from edgekd.inputs.data import array_fingerprint, to_tensor

        ds, aug = self.dataset, self.augment
        path = None
        cache_dir = _cache_dir(self.config)
        if cache_dir is not None:
            data_fp = array_fingerprint(ds.x_train, ds.normalization.to_dict())
            path = Path(cache_dir) / (f"views-{fp[:16]}-{data_fp[:16]}-{aug.kind}{aug.pad}-"
                                      f"k{len(params)}-s{self.config.seed}.npy")
            if path.is_file():
                try:
                    cached = np.load(path, allow_pickle=False)
                    if cached.shape[:2] == (len(params), len(ds.x_train)) and cached.dtype == np.float32:
                        return torch.from_numpy(cached)
                except (OSError, ValueError, EOFError):
                    pass  # corrupt: recompute
        views = []
        with torch.no_grad(), self._autocast():
            for p in params:
                outs = []
                for i in range(0, len(ds.x_train), 512):
                    rows = torch.arange(i, min(i + 512, len(ds.x_train)))
                    x = augment.apply(to_tensor(ds.x_train[i:i + 512], ds.normalization), aug, p[rows],
                                      self.data.pad_value)
                    outs.append(teacher(x.to(self.device)).float().cpu())
                views.append(torch.cat(outs))
        logits = torch.stack(views)
        if path is not None:
            import io

            buffer = io.BytesIO()
            np.save(buffer, logits.numpy(), allow_pickle=False)
            atomic_write_bytes(path, buffer.getvalue())
        return logits

    def _batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(batch index, images, labels, teacher targets or None) of epoch ``epoch``. Images are
        augmented here, once per batch, and the same tensor goes to student and teacher."""
        gen = _epoch_generator(self.config.seed + self.config.seed_offset, epoch)
        n = len(self.data.y_train)
        order = torch.randperm(n, generator=gen)
        view = torch.randint(0, self.views[1].shape[0], (n,), generator=gen) if self.views else None
        for b in range(self.steps):
            idx = order[b * self.batch:(b + 1) * self.batch]
            x, t = self.data.x_train[idx], None
            if self.views is not None:
                v = view[idx]
                x = augment.apply(x, self.augment, self.views[0][v * n + idx], self.data.pad_value)
                t = self.views[1][v, idx]
            elif self.augment.active:
                x = augment.apply(x, self.augment, augment.sample(self.augment, len(idx), gen),
                                  self.data.pad_value)
            if self.targets is not None:
                t = self.targets[idx]
            yield b, x, self.data.y_train[idx], t

    def _teacher_forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self._autocast():
            outs = [t(x).float() for t in self.teachers]
        for index, logits in enumerate(outs):
            _check_teacher_finite(logits, index)
        return losses.combine_teacher_logits(outs, self.config.ensemble, self.config.temperature)

    def _autocast(self) -> Any:
        return torch.autocast("cuda", dtype=torch.float16) if self.cuda else torch.autocast("cpu", enabled=False)

    def _loss(self, stage: str, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None,
              progress: float) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
        """The stage's loss object on this batch: ``(loss, logged parts, student logits or None)``."""
        spec = self.stages[stage][0]
        batch = Batch(x, y, progress)
        if spec.kind == "hint":
            with torch.no_grad():
                u = self.teacher_tap(x).float()
            v = self.student_tap(x)
            out = self.losses[stage].forward(StudentOut(hint=self.regressor(v).float()), TeacherOut(hint=self.regressor.target(u)), batch)
            return out.loss, out.parts, None
        logits = self.model(x).float()
        if spec.teacher and t is None:
            t = self._teacher_forward(x)
        out = self.losses[stage].forward(StudentOut(logits=logits), TeacherOut(logits=t if spec.teacher else None),
                                         batch)
        return out.loss, out.parts, logits

    def _train_epoch(self, epoch: int, stage: str, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        cfg = self.config
        first, span = self._stage_bounds(stage)
        total_steps = span * self.steps
        hint = self._is_hint(stage)
        # the hint stage: its own Adam lr and a plain cosine to 0 (edgekd.distill.hint_stage)
        warmup = 0 if hint else warmup_steps(cfg.warmup_epochs, span, self.steps)
        floor = 0.0 if hint else cfg.lr_floor
        self.model.train()
        if self.regressor is not None:
            self.regressor.train(hint)
        base_lr = cfg.hint_lr if hint else cfg.learning_rate
        sums: dict[str, Any] = {}
        seen, lr = 0, base_lr
        total = self.total_epochs
        # running sums stay tensors on the device: no host sync per step (on CUDA a float() per
        # step would stall the queue); the loss is checked every step on CPU, every
        # _CHECK_EVERY steps on CUDA (the first bad batch is tracked on the device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        bar = StepBar(f"epoch {epoch + 1}/{total} {stage}", self.steps, enabled=self.progress)
        lr_at = lambda b: base_lr * lr_factor((epoch - first) * self.steps + b, total_steps,  # noqa: E731
                                              warmup, floor)
        for b, x, y, t in self._batches(epoch):
            step = (epoch - first) * self.steps + b
            lr = lr_at(b)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            if t is not None:
                t = t.to(self.device, non_blocking=True)
            with self._autocast():
                loss, parts, logits = self._loss(stage, x, y, t, step / max(total_steps, 1))
            if not self.cuda:
                _check_finite(loss, stage, epoch, b, lr)
            else:
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                        torch.full_like(first_bad, b), first_bad)
                if b % _CHECK_EVERY == _CHECK_EVERY - 1 or b == self.steps - 1:
                    _check_first_bad(first_bad, loss, stage, epoch, lr_at)
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach().float() * len(y)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * len(y)
            if logits is not None:
                correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if self.progress:  # (trials of compress run without: no host sync per step there)
                bar.update(description=f"epoch {epoch + 1}/{total} {stage} loss {float(loss_sum) / seen:.4f}")
        bar.close()
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": stage, "lr_last": lr,
                                  "loss": float(loss_sum) / max(seen, 1), "samples": seen,
                                  "loss_parts": {k: float(v) / max(seen, 1) for k, v in sums.items()}}
        if not self._is_hint(stage):
            record["train_acc"] = int(correct) / max(seen, 1)
        else:
            record.update(self._hint_r2())
        return record

    @torch.no_grad()
    def _hint_r2(self, limit: int = 2048) -> dict[str, Any]:
        """R^2 of the regressor at the end of a hint epoch, in eval mode, on (up to ``limit``)
        validation images (training images when there is no validation split)."""
        x = self.data.x_val if len(self.data.y_val) else self.data.x_train
        meter = R2Meter()
        self.model.eval()
        self.regressor.eval()
        for i in range(0, min(len(x), limit), 256):
            xb = x[i:i + 256].to(self.device)
            with self._autocast():
                u = self.teacher_tap(xb).float()
                prediction = self.regressor(self.student_tap(xb)).float()
            meter.update(self.regressor.target(u), prediction)
        self.model.train()
        self.regressor.train()
        return hint_record([meter], [self.pair])

    def _evaluate_val(self) -> float:
        if len(self.data.y_val) == 0:
            return float("nan")
        return accuracy(predict_logits(self.model, self.data.x_val, device=self.device), self.data.y_val)

    # -- checkpoints ---------------------------------------------------------------------
    def _selected_state(self) -> dict[str, torch.Tensor]:
        if self.best_state is not None:
            return self.best_state
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def _describe(self, metrics: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        ds = self.dataset
        return make_checkpoint(self._selected_state(), spec=self.spec, classes=list(ds.classes),
                               input_shape=tuple(ds.input_shape), normalization=ds.normalization,
                               method=self.method, metrics=metrics, extra=extra)

    def _save(self, epoch: int, seconds: float, optimizer: torch.optim.Optimizer, opt_stage: str) -> None:
        train_state = {
            "epoch": epoch, "seconds": seconds, "identity": self.config.identity(),
            "inputs": self.inputs,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "regressor": self.regressor.state_dict() if self.regressor is not None else None,
            "hint_end": self.hint_end, "r2_history": self.r2_history,
            "optimizer": optimizer.state_dict(), "opt_stage": opt_stage,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best_val": self.best_val, "best_epoch": self.best_epoch, "best_state": self.best_state,
            "rng": _rng_state(),
        }
        metrics = {"val_acc": self.best_val, "best_epoch": self.best_epoch, "epochs_done": epoch}
        atomic_torch_save(self.out_dir / "checkpoint.pt", self._describe(metrics, {"train_state": train_state}))

    def _restore(self) -> dict[str, Any]:
        fresh = {"epoch": 0, "seconds": 0.0, "best_val": float("nan"), "best_epoch": None,
                 "best_state": None, "optimizer": None, "opt_stage": None}
        path = self.out_dir / "checkpoint.pt"
        if not path.exists():
            if (self.out_dir / "metrics.jsonl").exists():
                write_jsonl(self.out_dir / "metrics.jsonl", [])
            return fresh
        data = read_checkpoint(path)
        state = (data.get("extra") or {}).get("train_state")
        if state is None:
            raise EdgekdError(f"'{path}' holds no training state (it is an exported student): "
                              "use another --out to train")
        _check_identity(state["identity"], self.config, path)
        _check_inputs(state.get("inputs"), self.inputs, path)
        self.model.load_state_dict(state["model"])
        if self.regressor is not None and state["regressor"] is not None:
            self.regressor.load_state_dict(state["regressor"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.hint_end, self.r2_history = state.get("hint_end"), list(state.get("r2_history") or [])
        if self.hint_end is not None:
            self.stages = _stage_spans(self.config, self.hint_end)
        _set_rng_state(state["rng"])
        epoch = int(state["epoch"])
        optimizer = None
        if epoch < self.total_epochs and self._stage(epoch) == state["opt_stage"]:
            optimizer = self._optimizer(state["opt_stage"])
            optimizer.load_state_dict(state["optimizer"])
        kept = [r for r in read_jsonl(self.out_dir / "metrics.jsonl") if int(r.get("epoch", 0)) <= epoch]
        write_jsonl(self.out_dir / "metrics.jsonl", kept)
        return {"epoch": epoch, "seconds": float(state["seconds"]), "best_val": state["best_val"],
                "best_epoch": state["best_epoch"], "best_state": state["best_state"],
                "optimizer": optimizer, "opt_stage": state["opt_stage"]}

    def _finish(self, epoch: int, seconds: float) -> TrainResult:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test_logits = predict_logits(self.model, self.data.x_test, device=self.device)
        test_acc = accuracy(test_logits, self.data.y_test)
        val = None if self.best_val is None or math.isnan(self.best_val) else float(self.best_val)
        result = TrainResult(
            method=self.method, val_acc=val, test_acc=test_acc, epochs_done=epoch,
            checkpoint=self.out_dir / "checkpoint.pt", seconds=round(seconds, 3),
            best_epoch=self.best_epoch, train_samples=len(self.data.y_train),
            config=self.config.to_dict(), hint=self.pair.to_dict() if self.pair else None,
            hint_epochs_done=self.hint_end or 0, hint_r2=list(self.r2_history) if self.pair else None,
            model=self.model, inputs=self.inputs)
        # the checkpoint's metrics now carry the final numbers too (same weights, same state)
        data = read_checkpoint(result.checkpoint)
        data["metrics"] = {**data["metrics"], "val_acc": val, "test_acc": test_acc,
                           "epochs_done": epoch, "best_epoch": self.best_epoch}
        atomic_torch_save(result.checkpoint, data)
        atomic_write_json(self.out_dir / "result.json", result.to_dict())
        return result


def _check_identity(stored: dict[str, Any], config: TrainConfig, where: Path) -> None:
    current = config.identity()
    diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if diff:
        shown = ", ".join(f"{k}={stored.get(k)!r} there vs {current.get(k)!r} now" for k in diff[:3])
        raise EdgekdError(f"'{where}' was trained with a different configuration ({shown}): "
                          "use another --out, or delete that folder to start over")


def _inputs(teachers: list[nn.Module], dataset: Any, config: TrainConfig,
            teacher_fps: list[str] | None) -> dict[str, Any]:
    """What a training folder was trained from, beyond its config: the data's fingerprint and
    the teachers' (none for scratch, which ignores them)."""
    fps = _teacher_fingerprints(teachers, teacher_fps) if get_method(config.method).uses_teacher else []
    return {"data": dataset.fingerprint(), "teachers": fps}


def _check_inputs(stored: dict[str, Any] | None, current: dict[str, Any] | None, where: Path) -> None:
    if stored is None or current is None:
        return  # a folder written before inputs were recorded
    for key, what in (("data", "data set"), ("teachers", "teacher")):
        if stored.get(key) != current.get(key):
            raise EdgekdError(f"'{where}' was trained with a different {what}: use another --out, "
                              "or delete that folder to start over")


def _finished(out_dir: Path, config: TrainConfig, inputs: dict[str, Any] | None = None) -> TrainResult | None:
    path = out_dir / "result.json"
    if not path.exists() or not (out_dir / "checkpoint.pt").exists():
        return None
    try:
        stored = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("epochs_done"), int):
        return None  # damaged: the checkpoint tells where training stands
    _check_identity(TrainConfig.from_dict(stored.get("config", {})).identity(), config, path)
    _check_inputs(stored.get("inputs"), inputs, path)
    # fitnet's hint epochs come on top of config.epochs (issue 12)
    if int(stored.get("epochs_done", 0)) - int(stored.get("hint_epochs_done") or 0) < config.epochs:
        return None
    result = TrainResult.from_dict(stored)
    result.checkpoint = out_dir / "checkpoint.pt"  # the folder may have moved (Ray workers)
    return result


# ----------------------------------------------------------------------------- born-again
def _load_trained(student: Any, checkpoint: Path) -> nn.Module:
    from edgekd.core.checkpoint import load_student

    if isinstance(student, nn.Module):
        model = copy.deepcopy(student)
        model.load_state_dict(read_checkpoint(checkpoint)["state_dict"])
        return model.eval()
    return load_student(checkpoint)[0]


def train_ban(student: Any, teachers: list[nn.Module], dataset: Any, config: TrainConfig,
               out_dir: Path, teacher_fps: list[str] | None, progress: bool) -> TrainResult:
    started = time.monotonic()
    gens: list[dict[str, Any]] = []
    models: list[nn.Module] = []
    current, fps = list(teachers), teacher_fps
    seconds = 0.0
    for g in range(1, config.generations + 1):
        method = "kd" if current else "scratch"
        # each generation its own seed (init and data order); the validation split stays seed's
        gen_cfg = replace(config, method=method, seed_offset=config.seed_offset + g - 1)
        say(progress, f"born-again generation {g}/{config.generations} ({method})")
        result = train_student(student, current, dataset, gen_cfg, out_dir / f"gen{g}",
                               teacher_fps=fps, progress=progress)
        model = result.model.to("cpu").eval()
        models.append(model)
        seconds += result.seconds
        gens.append({"generation": g, "method": method, "seed": config.seed + gen_cfg.seed_offset,
                     "val_acc": result.val_acc,
                     "test_acc": result.test_acc, "epochs_done": result.epochs_done,
                     "checkpoint": str(result.checkpoint)})
        current, fps = [model], [sha256_file(result.checkpoint)]
    data = _prepare_data(dataset, replace(config, method="kd"))

    def ensemble_acc(x: torch.Tensor, y: torch.Tensor) -> float | None:
        if len(y) == 0:
            return None
        return accuracy(torch.stack([predict_logits(m, x) for m in models]).mean(0), y)

    last = read_checkpoint(gens[-1]["checkpoint"])
    result = TrainResult(
        method="ban", val_acc=gens[-1]["val_acc"], test_acc=gens[-1]["test_acc"],
        epochs_done=gens[-1]["epochs_done"], checkpoint=out_dir / "checkpoint.pt",
        seconds=round(seconds, 3), train_samples=len(data.y_train), config=config.to_dict(),
        generations=gens, ensemble_val_acc=ensemble_acc(data.x_val, data.y_val),
        ensemble_test_acc=ensemble_acc(data.x_test, data.y_test), model=models[-1])
    last["method"] = "ban"
    last["metrics"] = {**last["metrics"], "generations": gens,
                       "ensemble_test_acc": result.ensemble_test_acc,
                       "ensemble_val_acc": result.ensemble_val_acc}
    last["extra"] = {}  # the generations' folders keep their own training state
    atomic_torch_save(out_dir / "checkpoint.pt", last)
    atomic_write_json(out_dir / "result.json", result.to_dict())
    append_jsonl(out_dir / "metrics.jsonl", {"stage": "ban", "generations": gens,
                                             "ensemble_test_acc": result.ensemble_test_acc,
                                             "seconds": round(time.monotonic() - started, 3)})
    return result


# ----------------------------------------------------------------------------- entry point
def train_student(student: Any, teachers: list[nn.Module], dataset: Any, config: TrainConfig,
                  out_dir: Path, *, teacher_fps: list[str] | None = None,
                  progress: bool = True) -> TrainResult:
    """Train ``student`` (a :class:`~edgekd.search.space.StudentSpec` or any ``nn.Module``) from
    ``teachers`` on ``dataset`` into ``out_dir`` (metrics.jsonl, checkpoint.pt, result.json).

    Calling again on the same ``out_dir`` continues from its checkpoint (a larger
    ``config.epochs`` trains the extra epochs; see the module docstring for the cosine
    schedule); a finished run (``epochs_done >= config.epochs``) returns its stored result
    without training (``result.model`` is then loaded from its checkpoint). A different configuration on the
    same folder is refused.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    driver = get_method(config.method).train
    if driver is not None:  # a method that trains whole students itself (ban)
        return driver(student, teachers, dataset, config, out_dir, teacher_fps, progress)
    inputs = _inputs(teachers, dataset, config, teacher_fps)
    done = _finished(out_dir, config, inputs)
    if done is not None:
        done.model = _load_trained(student, done.checkpoint)
        return done
    return _Trainer(student, teachers, dataset, config, out_dir, teacher_fps, progress, inputs).run()
