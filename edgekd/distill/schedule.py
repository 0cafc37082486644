"""The training schedule: the stages' epoch spans, the optimiser of a stage (SGD with momentum
and Nesterov, or AdamW, weight decay on weights only; the hint stage's own Adam) and the
learning rate per step (linear warm-up, then a cosine to a floor)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from edgekd.distill.config import TrainConfig
from edgekd.distill.methods import Stage, get_method

__all__ = ["horizon", "lr_factor", "make_optimizer", "stage_at", "stage_bounds", "stage_spans", "warmup_steps"]


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


def stage_spans(config: TrainConfig, hint_end: int | None = None) -> dict[str, tuple[Stage, int, int]]:
    """stage name -> (stage, first epoch, number of epochs) of the config's method, in order;
    the last stage takes the epochs left. Hint stages (``kind="hint"``) come ON TOP of
    ``config.epochs``: the horizon is ``epochs`` + their epochs; ``hint_end`` is
    the hint epochs actually trained once the plateau rule or the budget ended that stage."""
    stages = get_method(config.method).stages
    spans: dict[str, tuple[Stage, int, int]] = {}
    first = 0
    extra = 0
    for stage in stages:
        if stage.kind == "hint":
            extra += hint_end if hint_end is not None else stage.epochs(config)
    end = config.epochs + extra
    for stage in stages:
        if stage.epochs is None:
            span = end - first
        elif stage.kind == "hint" and hint_end is not None:
            span = hint_end
        else:
            span = stage.epochs(config)
        spans[stage.name] = (stage, first, span)
        first += span
    return spans


def horizon(spans: dict[str, tuple[Stage, int, int]]) -> int:
    """The total number of epochs of a run (hint epochs included)."""
    _, first, span = list(spans.values())[-1]
    return first + span


def stage_at(spans: dict[str, tuple[Stage, int, int]], epoch: int) -> str:
    """The name of the stage that trains epoch ``epoch`` (0-based); past the horizon, the last."""
    for name, (_, first, span) in spans.items():
        if epoch < first + span:
            return name
    return list(spans)[-1]


def stage_bounds(spans: dict[str, tuple[Stage, int, int]], name: str, config: TrainConfig) -> tuple[int, int]:
    """(first epoch, number of epochs) of stage ``name`` under the current horizon (a hint
    stage's cosine spans its whole budget even when the plateau rule stops it early)."""
    spec, first, span = spans[name]
    if spec.kind == "hint":
        return first, spec.epochs(config)
    return first, span


def make_optimizer(params: list[nn.Parameter], config: TrainConfig, *, hint: bool) -> torch.optim.Optimizer:
    """The optimiser of one stage: the hint stage's own Adam (``hint_lr``, no weight decay; the
    :mod:`edgekd.distill.hint_stage` docstring says why), otherwise SGD (Nesterov when
    ``momentum > 0``) or AdamW with ``weight_decay`` on the weights (ndim > 1) only."""
    cfg = config
    if hint:
        return torch.optim.Adam(params, lr=cfg.hint_lr)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)
