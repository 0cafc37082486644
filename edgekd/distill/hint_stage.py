"""FitNets hint-stage measurements (issue 12): the regressor's R^2 and the plateau rule.

The hint stage this is written for (landed in part; the trainer integration is pending on the
method registry): loss ``1/2 ||u - r(v)||^2`` per channel (``reduction="channel"``), its own
Adam and cosine, at most ``hint_epochs`` epochs on top of the KD epochs, stopped early when
:func:`plateaued` says the regressors' R^2 (:class:`R2Meter`) no longer improves.
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
