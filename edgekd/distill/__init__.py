"""Distillation engine: the method registry (methods: name -> stages, loss objects, CLI help;
torch-free), the loss objects (objectives) and formulas (losses: KD, hints, logit mimic),
FitNets hint taps and regressors, and the one trainer for every registered method (imports
torch). The trainer's parts: config (TrainConfig, TrainResult; torch-free), schedule (stage
spans, learning rate), trainset (the split as tensors), targets (cached teacher logits and
views), checkpointing (save, resume, result.json), hint_training (the FitNets part), evaluate
(device, logits, accuracy), trainer (the loop, holding its checkpoint and FitNets parts) and ban (born-again generations: a driver above the trainer, run once per
generation). builtin_teacher trains the built-in
teacher through that trainer (and loads teachers with it); commands holds the helpers of
``edgekd train`` and ``edgekd layers``.

May import: ``edgekd.core``, ``edgekd.inputs``, ``edgekd.search``. Not ship, report, run or cli.

Importing the package registers the built-in methods (``method_catalog``, torch-free), so the
registry in ``methods`` is full whichever module of the package is imported first; the registry
itself imports no method. The trainer's names below are imported on first use, so that reading
the method registry (which the CLI does at start-up) does not import torch.
"""

from __future__ import annotations

from typing import Any

from edgekd.distill import method_catalog as _method_catalog  # noqa: F401  (registers the built-in methods)

__all__ = ["METHODS", "TrainConfig", "TrainResult", "train_student"]


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        from edgekd.distill.methods import METHODS

        return METHODS
    if name in ("TrainConfig", "TrainResult"):
        from edgekd.distill import config

        return getattr(config, name)
    if name == "train_student":
        from edgekd.distill.trainer import train_student

        return train_student
    raise AttributeError(f"module 'edgekd.distill' has no attribute {name!r}")
