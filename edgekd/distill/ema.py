"""Exponential moving average of a student's weights (``TrainConfig.ema``, ``--ema DECAY``).

After every optimiser step of the distillation stage the shadow copy moves toward the trained
weights (Polyak & Juditsky 1992; as in timm's ``ModelEmaV2``), with the warm-up of TensorFlow's
``ExponentialMovingAverage(num_updates=t)`` so that the weights of the first steps (near the
random initialisation) fade out within a short run::

    d_t    = min(decay, (1 + t) / (10 + t))                 (t = updates so far)
    shadow <- d_t * shadow + (1 - d_t) * weights            (floating-point parameters and buffers)
    shadow <- weights                                       (integer buffers: BN's batch counter)

Without the warm-up a 280-step run at decay 0.99 kept 0.99^280 = 6% of its first step's weights
in the shadow and tested 7 points below the plain weights (benchmarks/ema_check.py).

The shadow is what is validated, selected as the best epoch, tested and checkpointed: an
average over the last ~1/(1-decay) steps smooths the noise of the final SGD steps. It starts as
a copy of the weights at the first step after the hint stage (the hint stage trains only the
student's lower layers toward the teacher's features; averaging across it would mix two
objectives). ``decay = 0`` is off.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["WeightEMA"]


class WeightEMA:
    """The shadow weights of ``model`` (a deep copy in eval mode, never trained directly)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay} is not in (0, 1)")
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step: every floating entry of the state moves ``1 - d_t`` of the way to the model's."""
        decay = self.decay_at(self.updates)
        current = model.state_dict()
        for name, value in self.shadow.state_dict().items():
            new = current[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(new.to(value.dtype), alpha=1.0 - decay)
            else:
                value.copy_(new)
        self.updates += 1

    def decay_at(self, updates: int) -> float:
        """``d_t = min(decay, (1 + t) / (10 + t))``: the warm-up of the decay."""
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.shadow.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.shadow.load_state_dict(state)
        self.updates = updates
