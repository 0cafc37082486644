"""The method registry: a training method's name -> its stages, their loss objects, its CLI help.

In the spirit of timm's ``register_model`` and torchdistill's loss registry: the trainer, the
click choices of ``edgekd train``/``edgekd compress`` and the pipeline read the method list
from here, so adding a method is one :func:`register_method` call plus its loss object.

A method is a sequence of :class:`Stage`\\ s (``fitnet`` = a ``hint`` stage, then a ``kd``
stage); each stage names what the trainer computes for it (``kind``: the student's and the
teachers' ``"logits"``, or the FitNets ``"hint"`` features through the regressor) and builds
a loss object from the :class:`~edgekd.distill.config.TrainConfig`. Every loss object has
ONE signature::

    loss_object.forward(student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut

A method may instead bring its own driver (``train``), which trains whole students through
:func:`~edgekd.distill.trainer.train_student` (``ban``: one student per generation).

This module imports no torch (the CLI reads it at start-up): built-in loss objects live in
:mod:`edgekd.distill.objectives` and are imported when a stage first builds one.

Example, a method at test time or in a plugin module::

    from edgekd.distill import losses
    from edgekd.distill.methods import LossOut, Method, Stage, register_method

    class HalfKD:                       # any object with this forward()
        def __init__(self, config): self.t = config.temperature
        def forward(self, student, teacher, batch):
            loss = 0.5 * losses.kd_soft_loss(student.logits, teacher.logits, self.t)
            return LossOut(loss, {"kd": float(loss.detach())})

    register_method(Method("halfkd", "half the soft KD term, no labels",
                           stages=(Stage("halfkd", HalfKD, teacher=True),)))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Mapping, Protocol

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:
    import torch

    from edgekd.distill.config import TrainConfig, TrainResult

__all__ = ["StudentOut", "TeacherOut", "Batch", "LossOut", "Loss", "Stage", "Method", "METHODS",
           "register_method", "unregister_method", "get_method", "method_names", "methods_help",
           "lazy_loss"]


# ----------------------------------------------------------------------------- loss I/O
@dataclass
class StudentOut:
    """What the student produced on a batch: float32 ``logits`` (logits stages) or ``hint``,
    the regressor applied to the guided layer's output (hint stages)."""

    logits: torch.Tensor | None = None
    hint: torch.Tensor | None = None


@dataclass
class TeacherOut:
    """The teachers' side: their combined ``logits`` (cached or computed; None when the stage
    takes no teacher), or the first teacher's ``hint``-layer output (hint stages)."""

    logits: torch.Tensor | None = None
    hint: torch.Tensor | None = None


@dataclass
class Batch:
    """The labels of the batch and how far training is through the current stage (0..1, per
    step, for schedules inside a loss such as FitNets' lambda)."""

    x: torch.Tensor
    y: torch.Tensor
    progress: float = 0.0


@dataclass
class LossOut:
    """The scalar to back-propagate and named parts logged per epoch (``loss_parts``)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


class Loss(Protocol):
    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut: ...


#: Builds a stage's loss object from the training config (a class taking ``config`` fits).
LossFactory = Callable[["TrainConfig"], Loss]
#: A driver that trains whole students itself (``ban``); the signature of ``train_student``'s core.
Driver = Callable[..., "TrainResult"]


def lazy_loss(module: str, name: str, **kwargs: object) -> LossFactory:
    """A factory that imports ``module.name`` on first use and calls ``name(config, **kwargs)``
    (keeps torch out of the CLI's start-up)."""

    def build(config: TrainConfig) -> Loss:
        return getattr(importlib.import_module(module), name)(config, **kwargs)

    build.__qualname__ = f"lazy_loss({module}.{name})"
    return build


# ----------------------------------------------------------------------------- registry types
@dataclass(frozen=True)
class Stage:
    """One stage of a method.

    ``name`` is what metrics.jsonl records (``"stage"``) and what the checkpoint's optimizer is
    keyed by. ``kind`` says what the trainer computes: ``"logits"`` (student logits; the
    teachers' combined logits when ``teacher``) or ``"hint"`` (FitNets features: the trainer
    pairs layers, adds a regressor to the optimizer, skips validation). ``epochs(config)``
    is the stage's epoch count; None takes the epochs left (the last stage).
    """

    name: str
    loss: LossFactory
    kind: Literal["logits", "hint"] = "logits"
    teacher: bool = False
    epochs: Callable[[TrainConfig], int] | None = None


@dataclass(frozen=True)
class Method:
    """A training method: ``stages`` in order (or a ``train`` driver), the one-line ``help``
    shown by the CLI, whether ``edgekd compress`` can search with it (``compress``), whether
    it reads teachers at all (``uses_teacher``: scratch does not), and an optional
    ``validate(config)`` that returns ``(what is wrong, what to do)`` or None."""

    name: str
    help: str
    stages: tuple[Stage, ...] = ()
    train: Driver | None = None
    compress: bool = True
    uses_teacher: bool = True
    validate: Callable[[TrainConfig], tuple[str, str] | None] | None = None

    def __post_init__(self) -> None:
        if not self.stages and self.train is None:
            raise ValueError(f"method {self.name!r}: give stages or a train driver")
        if len({stage.name for stage in self.stages}) != len(self.stages):
            raise ValueError(f"method {self.name!r}: stage names must differ")
        if self.stages and self.stages[-1].epochs is not None:
            raise ValueError(f"method {self.name!r}: the last stage takes the epochs left (epochs=None)")

    @property
    def needs_teacher(self) -> bool:
        """Whether a stage takes the teachers' outputs (training without a teacher is refused)."""
        return any(stage.teacher for stage in self.stages)

    @property
    def has_hint_stage(self) -> bool:
        return any(stage.kind == "hint" for stage in self.stages)


class _Registry(Mapping[str, Method]):
    """name -> Method, in registration order; ``", ".join(METHODS)`` lists the names."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def __getitem__(self, name: str) -> Method:
        return self._methods[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)


METHODS = _Registry()


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to the registry (``replace=True`` to override one of the same name)."""
    if method.name in METHODS._methods and not replace:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS._methods[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a method (tests that registered a toy method clean up with this)."""
    METHODS._methods.pop(name, None)


def get_method(name: str) -> Method:
    """The method called ``name``; an unknown name is one :class:`EdgekdError` line."""
    try:
        return METHODS[name]
    except KeyError:
        raise EdgekdError(f"unknown method {name!r}: use one of {', '.join(METHODS)}") from None


def method_names(*, compress: bool = False) -> list[str]:
    """Registered names (only those ``edgekd compress`` can search with when ``compress``)."""
    return [m.name for m in METHODS.values() if m.compress or not compress]


def methods_help(*, compress: bool = False) -> str:
    """``name: help; name: help`` for a click option's help text."""
    return "; ".join(f"{m.name}: {m.help}" for m in METHODS.values() if m.compress or not compress) + "."


# ----------------------------------------------------------------------------- built-ins
_OBJECTIVES = "edgekd.distill.objectives"


def _check_fitnet(config: TrainConfig) -> tuple[str, str] | None:
    # joint hints may skip stage 1: the hint loss then only acts as KD's auxiliary term
    low = 0 if getattr(config, "hint_mode", "single") == "joint" else 1
    if not (isinstance(config.hint_epochs, int) and config.hint_epochs >= low):
        return (f"fitnet needs hint_epochs >= {low} (got {config.hint_epochs!r})",
                "give the hint stage's epoch budget (added on top of --epochs), e.g. --hint-epochs 5"
                + ("" if low == 0 else "; 0 only with --hint-mode joint"))
    return None


def _check_mimic(config: TrainConfig) -> tuple[str, str] | None:
    if config.ensemble == "probs":
        return ("mimic regresses onto logits, and averaged probabilities give logits only up to "
                "a shift per image", "use --ensemble logits with --method mimic")
    return None


def _check_ban(config: TrainConfig) -> tuple[str, str] | None:
    if config.generations < 1:
        return f"generations={config.generations}", "give at least 1"
    return None


def _train_ban(*args: object, **kwargs: object) -> TrainResult:
    from edgekd.distill.ban import train_ban

    return train_ban(*args, **kwargs)


def _hint_epochs(config: TrainConfig) -> int:
    return config.hint_epochs


register_method(Method(
    "scratch", "labels only (cross-entropy)", uses_teacher=False,
    stages=(Stage("scratch", lazy_loss(_OBJECTIVES, "CrossEntropyLoss")),)))
register_method(Method(
    "kd", "Hinton KD (a*CE + (1-a)*T^2*KL)",
    stages=(Stage("kd", lazy_loss(_OBJECTIVES, "KDLoss"), teacher=True),)))
register_method(Method(
    "fitnet", "hint stage then KD (FitNets)", validate=_check_fitnet,
    stages=(Stage("hint", lazy_loss(_OBJECTIVES, "HintLoss"), kind="hint", epochs=_hint_epochs),
            Stage("kd", lazy_loss(_OBJECTIVES, "KDLoss", anneal=True), teacher=True))))
register_method(Method(
    "dkd", "decoupled KD (Zhao et al. 2022: CE + alpha*TCKD + beta*NCKD)",
    stages=(Stage("dkd", lazy_loss(_OBJECTIVES, "DKDLoss"), teacher=True),)))
register_method(Method(
    "lskd", "KD on z-scored logits (Sun et al. 2024)",
    stages=(Stage("lskd", lazy_loss(_OBJECTIVES, "LSKDLoss"), teacher=True),)))
for _second in ("dkd", "lskd"):  # FitNets' hint stage, then a modern logit method as stage 2
    register_method(Method(
        f"fitnet-{_second}", f"hint stage then {_second.upper()}", validate=_check_fitnet,
        stages=(Stage("hint", lazy_loss(_OBJECTIVES, "HintLoss"), kind="hint", epochs=_hint_epochs),
                Stage(_second, lazy_loss(_OBJECTIVES, f"{_second.upper()}Loss"), teacher=True))))
register_method(Method(
    "mimic", "logit L2 (Ba & Caruana)", validate=_check_mimic,
    stages=(Stage("mimic", lazy_loss(_OBJECTIVES, "MimicLoss"), teacher=True),)))
register_method(Method(
    "ban", "born-again generations", compress=False, validate=_check_ban, train=_train_ban))
