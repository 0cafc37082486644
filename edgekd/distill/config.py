"""The training configuration and result: :class:`TrainConfig` (every training default, once)
and :class:`TrainResult` (what ``result.json`` holds). Torch-free, so the CLI can read the
defaults without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.configdoc import config_fields
from edgekd.core.errors import EdgekdError
from edgekd.distill.methods import METHODS, OPTION_FIELDS, Method

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["OPTIMIZERS", "HINT_MODES", "TRAIN_CONFIG_FORMAT", "TrainConfig", "TrainResult", "default_lr",
           "identity_of"]

#: The format tag of a TrainConfig document outside result.json (run.json's ``configs.train``).
TRAIN_CONFIG_FORMAT = "edgekd.train-config/1"

OPTIMIZERS = ("sgd", "adamw")
#: ``hint_mode`` / ``--hint-mode`` values (edgekd.distill.hint_stage says what each does)
HINT_MODES = ("single", "multi", "joint")
#: Config fields that do not change what is trained (may differ between calls on one out_dir).
_RUNTIME_FIELDS = ("epochs", "device", "cache_dir", "use_cache")


def default_lr(optimizer: str) -> float:
    """The learning rate used when ``TrainConfig.lr`` is None: SGD 0.1, AdamW 0.002 (docs/recipe.md)."""
    return {"sgd": 0.1, "adamw": 0.002}[optimizer]


@dataclass
class TrainConfig:
    """How to train one student. ``epochs`` counts the epochs trained on labels/logits;
    fitnet's hint stage (at most ``hint_epochs``) comes on top. Every training
    default lives here once: ``edgekd train`` reads its option defaults from these fields."""

    method: str = "fitnet"
    epochs: int = 10
    hint_epochs: int = 1  # also compress's (CompressConfig reads it)
    #: method options (edgekd.distill.methods.MethodOption): ``T``, ``alpha``, ``label_smoothing``
    #: here, the others in ``method_options``; None or absent: the method's declared default
    temperature: float | None = None
    alpha: float | None = None
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
    augment: str = "none"
    teacher_views: int = 0
    warmup_epochs: float = 1.0
    lr_floor: float = 0.0
    label_smoothing: float | None = None
    method_options: dict[str, float] = field(default_factory=dict)
    #: decay of the EMA of the weights that are validated and kept (edgekd.distill.ema); 0: off
    ema: float = 0.0
    #: fitnet's hint stage (edgekd.distill.hint_stage): its own Adam lr, and the R^2 plateau rule
    hint_lr: float = 5e-3
    hint_patience: int = 2
    hint_min_delta: float = 0.01
    #: the hint stage stops after its first epoch, its weights dropped, when R^2 is below this
    #: (0: the regressor predicts the teacher's hint no better than each channel's mean)
    hint_min_r2: float = 0.0
    #: hint pairs and their use (edgekd.distill.hint_stage): single | multi (one pair per teacher
    #: stage) | joint (beta * L_hint added during KD, the regressor kept to the end)
    hint_mode: str = "single"
    hint_beta: float = 1.0
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
        self._validate_options(method, bad)
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad(f"lr={self.lr}", "give a positive learning rate")
        if not -1.0 <= self.hint_min_r2 <= 1.0:
            raise bad(f"hint_min_r2={self.hint_min_r2}", "give a threshold between -1 and 1 (R^2; -1: off)")
        if not (self.hint_lr > 0 and math.isfinite(self.hint_lr)) or self.hint_patience < 0 or self.hint_min_delta < 0:
            raise bad(f"hint_lr={self.hint_lr}, hint_patience={self.hint_patience}, "
                      f"hint_min_delta={self.hint_min_delta}", "give hint_lr > 0, patience and min_delta >= 0")
        if self.hint_mode not in HINT_MODES or not (self.hint_beta >= 0 and math.isfinite(self.hint_beta)):
            raise bad(f"hint_mode={self.hint_mode!r}, hint_beta={self.hint_beta}",
                      f"use hint_mode {' | '.join(HINT_MODES)} and hint_beta >= 0")
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
        if not 0.0 <= self.ema < 1.0:
            raise bad(f"ema={self.ema}", "give 0 (off) or a decay below 1, e.g. 0.999")

    def given_options(self) -> dict[str, float]:
        """The method options set in this config (name -> value), defaults left out."""
        given = {name: getattr(self, attr) for name, attr in OPTION_FIELDS.items()
                 if getattr(self, attr) is not None}
        return {**given, **self.method_options}

    def _validate_options(self, method: Method, bad: Callable[[str, str], EdgekdError]) -> None:
        if not isinstance(self.method_options, dict):
            raise bad(f"method_options={self.method_options!r}", "give a mapping of option names to numbers")
        for name in OPTION_FIELDS:
            if name in self.method_options:
                raise bad(f"method option {name} in method_options", f"set the {OPTION_FIELDS[name]} field")
        for name, value in self.given_options().items():
            declared = method.option(name)
            if declared is None:
                raise bad(f"method {method.name} does not use option {name}",
                          f"drop it (its options: {method.options_text()})")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(f"{name}={value!r}", f"give a number in {declared.span()}")
            problem = declared.problem(float(value))
            if problem is not None:
                raise bad(problem, f"give {name} in {declared.span()} ({declared.help})")

    def option(self, name: str) -> float:
        """The value of the method option ``name``: set here, else the method's declared
        default (an option the method does not declare is a KeyError)."""
        declared = METHODS[self.method].option(name)
        if declared is None:
            raise KeyError(f"method {self.method!r} declares no option {name!r}")
        value = self.given_options().get(name)
        return declared.default if value is None else float(value)

    def options(self) -> dict[str, float]:
        """Every option the method declares, with its value (given or default)."""
        return {o.name: self.option(o.name) for o in METHODS[self.method].options}

    def for_method(self, name: str) -> "TrainConfig":
        """This config with method ``name`` and only the options that method declares (a
        born-again generation or a compress baseline trained with another method)."""
        method = METHODS[name]
        keep = {k: v for k, v in self.method_options.items() if method.option(k) is not None}
        fields_ = {attr: (getattr(self, attr) if method.option(opt) is not None else None)
                   for opt, attr in OPTION_FIELDS.items()}
        return replace(self, method=name, method_options=keep, **fields_)

    @property
    def ensemble_temperature(self) -> float:
        """The temperature at which ``ensemble="probs"`` averages the teachers: the method's
        ``T`` (1 for a method without one)."""
        return self.option("T") if METHODS[self.method].option("T") is not None else 1.0

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.optimizer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The inverse of :meth:`to_dict` (a ``format`` tag, when there, must be ours)."""
        return cls(**config_fields(cls, data, tag=TRAIN_CONFIG_FORMAT, what="training config",
                                   upgrade=_from_legacy))

    def identity(self) -> dict[str, Any]:
        """The fields that define what is trained (all but epochs/device/cache settings); the
        method options as their values (given or default) under their identity keys, only those
        the method declares."""
        identity = {k: v for k, v in self.to_dict().items()
                    if k not in _RUNTIME_FIELDS and k != "method_options" and k not in OPTION_FIELDS.values()}
        identity.update({o.identity_key: self.option(o.name) for o in METHODS[self.method].options})
        if not identity["ema"]:  # no EMA: the same as a folder trained before the option existed
            del identity["ema"]
        if identity["hint_min_r2"] == TrainConfig.hint_min_r2:  # folders trained before the rule
            del identity["hint_min_r2"]
        if identity["hint_mode"] == "single":  # likewise for folders trained before --hint-mode
            del identity["hint_mode"]
        if identity.get("hint_mode") != "joint":  # beta only weighs the joint term
            del identity["hint_beta"]
        return identity


#: Fields of configs written before methods declared their options, and the option each became.
_LEGACY_FIELDS = {"dkd_alpha": "dkd.alpha", "dkd_beta": "dkd.beta", "dkd_warmup": "dkd.warmup",
                  "lambda_start": "fitnet.lambda_start", "lambda_end": "fitnet.lambda_end"}


def _from_legacy(data: dict[str, Any]) -> None:
    """Rewrite (in place) a config document written before methods declared their options into
    the options that reproduce what it trained: the lskd loss was ``alpha*CE + (1-alpha)*KD`` at
    ``ls_temperature``, dkd's CE took neither label smoothing nor a weight, and options the method
    did not read are dropped (they changed nothing)."""
    if "ls_temperature" not in data:
        return
    ls_temperature = data.pop("ls_temperature")
    method = METHODS.get(data.get("method", "fitnet"))
    options = {new: data.pop(old) for old, new in _LEGACY_FIELDS.items() if old in data}
    if method is not None and method.option("lskd.kd") is not None:
        alpha = data.get("alpha", 0.1)
        options.update({"lskd.ce": alpha, "lskd.kd": 1.0 - alpha})
        data["temperature"], data["label_smoothing"] = ls_temperature, 0.0
    if method is not None and method.option("dkd.ce") is not None:
        data["label_smoothing"] = 0.0
    declared = (lambda name: method is not None and method.option(name) is not None)  # noqa: E731
    data["method_options"] = {k: v for k, v in options.items() if declared(k)}
    for name, attr in OPTION_FIELDS.items():
        if not declared(name):
            data.pop(attr, None)


def identity_of(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored identity in today's form (a legacy one is translated by :func:`_from_legacy`)."""
    if "ls_temperature" not in stored:
        return stored
    try:
        return TrainConfig.from_dict(stored).identity()
    except (EdgekdError, TypeError):
        return stored


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
    #: every (hint, guided) pair (``hint`` is the first; one per teacher stage with hint_mode multi)
    hints: list[dict[str, Any]] | None = None
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

