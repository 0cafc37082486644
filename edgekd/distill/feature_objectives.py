"""Loss objects that read intermediate features through the tap interface of
:mod:`edgekd.distill.methods` (``taps()`` names the node pairs; the trainer fills
``student_out.features`` and ``teacher_out.features``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from edgekd.distill import losses, pairing
from edgekd.distill.methods import Batch, LossOut, StudentOut, TapPair, TeacherOut

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.hints import LayerInfo

__all__ = ["ATLoss"]


class ATLoss:
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying More Attention to
    Attention"), the paper's eq. 2 as its authors' code computes it:

    ``L = CE(y, p_s) + beta/2 * sum_j mean_{i,b} (Q_s^j / ||Q_s^j||_2 - Q_t^j / ||Q_t^j||_2)^2``

    where ``Q^j = vec(mean_c |A_c^j|^p)`` is the spatial attention map of the ``j``-th tapped
    activation ``A^j`` (``p`` = ``at.p``, 2; ``beta`` = ``at.beta``, 1000), and the mean runs over
    the images and the map's positions. Taps: one pair per teacher stage end with a student node
    of its resolution (:func:`edgekd.distill.pairing.stage_pairs`: the paper's group ends), else
    the single pair of :func:`~edgekd.distill.pairing.best_pair`; when the two maps differ in size
    the larger attention map is average-pooled to the smaller. Channel counts may differ (the
    maps are summed over channels). ``label_smoothing`` smooths the CE."""

    def __init__(self, config: TrainConfig) -> None:
        self.beta, self.p = config.option("at.beta"), config.option("at.p")
        self.label_smoothing = config.option("label_smoothing")

    def taps(self, teacher_layers: list[LayerInfo], student_layers: list[LayerInfo]) -> list[TapPair]:
        chosen = pairing.stage_pairs(teacher_layers, student_layers)
        if not chosen:
            best = pairing.best_pair(teacher_layers, student_layers)
            chosen = [best] if best is not None else []
        return [TapPair(t.name, s.name, tuple(t.shape), tuple(s.shape)) for t, s in chosen]

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        ce = losses.cross_entropy(student_out.logits, batch.y, self.label_smoothing)
        terms = [losses.attention_transfer_loss(s, t, self.p)
                 for s, t in zip(student_out.features, teacher_out.features)]
        at = torch.stack(terms).sum()
        return LossOut(ce + 0.5 * self.beta * at, {"ce": float(ce.detach()), "at": float(at.detach())})
