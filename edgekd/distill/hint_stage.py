"""FitNets hint-stage measurements (issue 12): the regressor's R^2 and the plateau rule.

The hint stage (:mod:`edgekd.distill.trainer`, the ``hint`` stage of ``fitnet``/``fitnet-*``):

- **Loss scale**: per channel (:class:`edgekd.distill.objectives.HintLoss`,
  ``reduction="channel"``: ``1/2 ||u - r(v)||^2`` over the channels of each position, averaged
  over positions). A per-element mean divides the gradient by ``C*H*W`` and left the
  regressor under-fit (R^2 ~ 0.3 on MNIST, issue 12); the paper's sum grows with the map size.
- **Optimiser**: its own Adam (``hint_lr``, default 5e-3, no weight decay) on the student and
  the regressor, with its own cosine from ``hint_lr`` to 0 over the hint budget
  (``hint_epochs``). Adam is invariant to the loss scale, so one learning rate fits any hint
  layer's size; the KD stage keeps its own optimiser.
- **Budget and convergence**: at most ``hint_epochs`` epochs, *in addition to* the KD epochs;
  the stage stops earlier when :func:`plateaued` says the regressor's R^2 no longer improves
  (the best of the last ``hint_patience`` epochs is less than ``hint_min_delta`` above the best
  before them; ``hint_patience=0`` turns the rule off).
- **R^2** (:class:`R2Meter`) at the end of every hint epoch on (up to 2048) validation images in
  eval mode, logged per epoch in metrics.jsonl (``r2``, ``r2_mean``) and kept in result.json
  (``hint_r2``, ``hint_epochs_done``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from edgekd.distill.hints import HintPair

__all__ = ["R2Meter", "plateaued", "hint_record"]


@dataclass
class R2Meter:
    """Coefficient of determination of a regression ``r`` of targets ``u`` (streamed):

    ``R^2 = 1 - sum (u - r)^2 / sum_c sum (u_c - mean(u_c))^2``

    where ``c`` runs over channels and the mean of channel ``c`` is over every image and
    position seen. 1 is a perfect fit, 0 is no better than predicting each channel's mean.
    """

    residual: float = 0.0
    count: int = 0
    sums: torch.Tensor | None = field(default=None, repr=False)
    squares: torch.Tensor | None = field(default=None, repr=False)

    def update(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        u, r = target.detach().double(), prediction.detach().double()
        self.residual += float((u - r).pow(2).sum())
        per_channel = u.transpose(0, 1).reshape(u.shape[1], -1)
        s, q = per_channel.sum(1).cpu(), per_channel.pow(2).sum(1).cpu()
        self.sums = s if self.sums is None else self.sums + s
        self.squares = q if self.squares is None else self.squares + q
        self.count += per_channel.shape[1]

    def value(self) -> float:
        if self.sums is None or self.count == 0:
            return float("nan")
        total = float((self.squares - self.sums.pow(2) / self.count).sum())
        return 1.0 - self.residual / total if total > 0 else float("nan")


def plateaued(history: list[float], patience: int, min_delta: float) -> bool:
    """True when the best of the last ``patience`` values is less than ``min_delta`` above
    the best value before them (needs more than ``patience`` values)."""
    if patience < 1 or len(history) <= patience:
        return False
    before, recent = history[:-patience], history[-patience:]
    return max(recent) < max(before) + min_delta


def hint_record(meters: list[R2Meter], pairs: list[HintPair]) -> dict[str, Any]:
    """The R^2 fields of a hint epoch's metrics record."""
    values = [round(m.value(), 5) for m in meters]
    return {"r2": {p.guided_layer: v for p, v in zip(pairs, values)},
            "r2_mean": round(sum(values) / len(values), 5) if values else None}
