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

Each method declares the options its losses read (:class:`MethodOption`: name, default, range,
help). ``edgekd train``/``compress`` set them with ``--method-opt NAME=VALUE`` (``-T``, ``--alpha``
and ``--label-smoothing`` are short forms of ``T``, ``alpha`` and ``label_smoothing``); a loss reads
them with ``config.option(NAME)``, which gives the declared default when the option is not set,
and an option the method does not declare is refused (:meth:`TrainConfig.validate`).

A loss that needs intermediate features declares them with a ``taps(teacher_layers,
student_layers)`` method returning :class:`TapPair`\\ s (any nodes, any resolutions); the trainer
then fills ``student_out.features`` and ``teacher_out.features`` in the same order (one forward
pass of each network). A loss that is an ``nn.Module`` trains its own parameters with the stage
and keeps them in the checkpoint. Adding a feature method is therefore one registry entry and its
loss (``at``, attention transfer, is built that way: :mod:`edgekd.distill.feature_objectives`).

This module imports no torch (the CLI reads it at start-up) and no method: built-in loss objects
live in :mod:`edgekd.distill.objectives` and are imported when a stage first builds one; the
built-in methods are registered by :mod:`edgekd.distill.method_catalog`, which the package
``edgekd.distill`` imports first (as timm's ``models`` package imports its model files), so the
registry is full whichever module of the package is imported.

Example, a method at test time or in a plugin module::

    from edgekd.distill import losses
    from edgekd.distill.methods import LossOut, Method, Stage, register_method

    class HalfKD:                       # any object with this forward()
        def __init__(self, config): self.t = config.option("T")
        def forward(self, student, teacher, batch):
            loss = 0.5 * losses.kd_soft_loss(student.logits, teacher.logits, self.t)
            return LossOut(loss, {"kd": float(loss.detach())})

    register_method(Method("halfkd", "half the soft KD term, no labels",
                           stages=(Stage("halfkd", HalfKD, teacher=True),),
                           options=(MethodOption("T", 4.0, "softmax temperature", low=0, low_open=True),)))
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Mapping, Protocol

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:
    import torch

    from edgekd.distill.config import TrainConfig, TrainResult

__all__ = ["StudentOut", "TeacherOut", "Batch", "LossOut", "Loss", "Stage", "Method", "METHODS",
           "MethodOption", "TapPair", "OPTION_FIELDS", "register_method", "unregister_method", "get_method",
           "method_names", "lazy_loss"]

#: Method options kept in a TrainConfig field of their own (the others: ``TrainConfig.method_options``).
OPTION_FIELDS = {"T": "temperature", "alpha": "alpha", "label_smoothing": "label_smoothing"}


# ----------------------------------------------------------------------------- loss I/O
@dataclass
class StudentOut:
    """What the student produced on a batch: float32 ``logits`` (logits stages), ``hint``, the
    regressor applied to the guided layer's output (hint stages), and ``features``: the outputs
    of the student nodes of the loss's :class:`TapPair`\\ s, in order (losses with ``taps``)."""

    logits: torch.Tensor | None = None
    hint: torch.Tensor | None = None
    features: list[torch.Tensor] | None = None


@dataclass
class TeacherOut:
    """The teachers' side: their combined ``logits`` (cached or computed; None when the stage
    takes no teacher), the first teacher's ``hint``-layer output (hint stages), and ``features``:
    the first teacher's outputs at the teacher nodes of the loss's taps (no gradient)."""

    logits: torch.Tensor | None = None
    hint: torch.Tensor | None = None
    features: list[torch.Tensor] | None = None


@dataclass(frozen=True)
class TapPair:
    """A (teacher node, student node) pair a feature loss asked for, with each node's output
    shape without the batch (``edgekd layers`` names the nodes; the resolutions may differ)."""

    teacher: str
    student: str
    teacher_shape: tuple[int, ...]
    student_shape: tuple[int, ...]


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
class MethodOption:
    """An option a method's loss reads: ``--method-opt NAME=VALUE``, ``default`` when not given,
    the closed range ``[low, high]`` (``low_open``/``high_open`` exclude an end) and a one-line
    ``help``. ``key`` names it in the training identity (default: the name with ``_`` for ``.``);
    ``T``, ``alpha`` and ``label_smoothing`` live in TrainConfig fields (:data:`OPTION_FIELDS`)."""

    name: str
    default: float
    help: str
    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    key: str = ""

    @property
    def identity_key(self) -> str:
        return self.key or OPTION_FIELDS.get(self.name) or self.name.replace(".", "_")

    def span(self) -> str:
        """The range as text, e.g. ``(0, inf)`` or ``[0, 1]`` (values are always finite)."""
        high = "inf)" if math.isinf(self.high) else f"{self.high:g}{')' if self.high_open else ']'}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {high}"

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range, or None."""
        ok = math.isfinite(value) and (value > self.low if self.low_open else value >= self.low) and (
            value < self.high if self.high_open else value <= self.high)
        return None if ok else f"{self.name}={value:g} is outside {self.span()}"

@dataclass(frozen=True)
class PlotStyle:
    """How the report draws a method's students, the same in every plot: a matplotlib colour
    and marker; ``shades`` are the colours of a second, third ... trial of the method in one
    plot (darker and lighter tones of ``color``), so every line has its own colour and still
    reads as its method's. Red and black are taken (the Pareto front, the winner, the teacher)."""

    color: str
    marker: str
    shades: tuple[str, ...] = ()

    def shade(self, n: int) -> str:
        """The colour of the method's ``n``-th line (0: the method's own colour)."""
        tones = (self.color, *self.shades)
        return tones[n % len(tones)]


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
    it reads teachers at all (``uses_teacher``: scratch does not), an optional
    ``validate(config)`` that returns ``(what is wrong, what to do)`` or None, and the
    ``options`` its losses read (:class:`MethodOption`; any other is refused).

    What ``compress`` and the report ask of it: ``baseline``, whether it is an arm of the
    ``--baselines`` ablation (the winner's architecture trained with each baseline method, in
    registration order; a hint method stands in for the baseline hint arm); ``rung_method``,
    the method the short selection rungs train instead of this one (None: this one); ``plot``,
    its colour and marker in the report's plots (None: a spare style chosen from its name)."""

    name: str
    help: str
    stages: tuple[Stage, ...] = ()
    train: Driver | None = None
    compress: bool = True
    uses_teacher: bool = True
    validate: Callable[[TrainConfig], tuple[str, str] | None] | None = None
    options: tuple[MethodOption, ...] = ()
    baseline: bool = False
    rung_method: str | None = None
    plot: PlotStyle | None = None

    def option(self, name: str) -> MethodOption | None:
        """The declared option ``name`` (None: the method does not use it)."""
        return next((o for o in self.options if o.name == name), None)

    def options_text(self, defaults: bool = True) -> str:
        """``T=4, alpha=0.1`` (the declared options and their defaults; only the names without
        ``defaults``), or ``no options``."""
        return ", ".join(f"{o.name}={o.default:g}" if defaults else o.name for o in self.options) or "no options"

    def __post_init__(self) -> None:
        if not self.stages and self.train is None:
            raise ValueError(f"method {self.name!r}: give stages or a train driver")
        if len({stage.name for stage in self.stages}) != len(self.stages):
            raise ValueError(f"method {self.name!r}: stage names must differ")
        if self.stages and self.stages[-1].epochs is not None:
            raise ValueError(f"method {self.name!r}: the last stage takes the epochs left (epochs=None)")
        if len({o.name for o in self.options}) != len(self.options):
            raise ValueError(f"method {self.name!r}: option names must differ")

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
