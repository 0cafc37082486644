"""The built-in loss objects of :mod:`edgekd.distill.methods`, one per stage kind.

Each wraps one formula of :mod:`edgekd.distill.losses` in the registry's single signature
``forward(student_out, teacher_out, batch) -> LossOut`` and names the parts it logs. Weights and
temperatures are the method's options (``config.option(NAME)``; declared with their defaults
and sources in :mod:`edgekd.distill.method_catalog`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.distill import losses
from edgekd.distill.methods import Batch, LossOut, StudentOut, TeacherOut

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig

__all__ = ["CrossEntropyLoss", "KDLoss", "DKDLoss", "LSKDLoss", "MimicLoss", "HintLoss", "JointHintLoss"]


class CrossEntropyLoss:
    """``scratch``: ``CE(y, p_s)`` on the labels (plain back-prop)."""

    def __init__(self, config: TrainConfig) -> None:
        self.label_smoothing = config.option("label_smoothing")

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        loss = losses.cross_entropy(student_out.logits, batch.y, self.label_smoothing)
        return LossOut(loss, {"ce": float(loss.detach())})


class KDLoss:
    """Hinton KD, :func:`edgekd.distill.losses.kd_terms`:
    ``(a*CE + (1-a)*lambda*T^2*KL) / (a + (1-a)*lambda)`` with ``lambda = 1``, or with
    ``anneal`` (FitNets' stage 2) ``lambda`` going linearly from ``fitnet.lambda_start`` to
    ``fitnet.lambda_end`` over the stage (``batch.progress``). Options: ``T``, ``alpha``,
    ``label_smoothing`` (the CE's)."""

    def __init__(self, config: TrainConfig, *, anneal: bool = False) -> None:
        self.temperature, self.alpha = config.option("T"), config.option("alpha")
        self.anneal = anneal
        if anneal:
            self.start, self.end = config.option("fitnet.lambda_start"), config.option("fitnet.lambda_end")
        self.label_smoothing = config.option("label_smoothing")

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        lam = 1.0
        if self.anneal:
            lam = self.start + (self.end - self.start) * batch.progress
        loss, ce, soft = losses.kd_terms(student_out.logits, teacher_out.logits, batch.y,
                                         self.temperature, self.alpha, soft_weight=lam,
                                         label_smoothing=self.label_smoothing)
        return LossOut(loss, {"ce": float(ce.detach()), "kd": float(soft.detach()), "lambda": lam})


class DKDLoss:
    """Decoupled KD (Zhao et al., CVPR 2022), :func:`edgekd.distill.losses.dkd_terms`:

    ``L = ce * CE(y, p_s) + w * T^2 * (alpha*TCKD + beta*NCKD)``

    with ``w`` rising linearly from 0 to 1 over the first ``dkd.warmup`` of the stage. Defaults
    are the paper's CIFAR setting (its Sec. 4 and mdistiller's DKD config): ``dkd.ce`` 1,
    ``dkd.alpha`` 1, ``dkd.beta`` 8, ``T`` 4, warm-up over 20 of 240 epochs (``dkd.warmup`` =
    1/12 of the stage). ``label_smoothing`` smooths the CE."""

    def __init__(self, config: TrainConfig) -> None:
        self.temperature, self.warmup = config.option("T"), config.option("dkd.warmup")
        self.ce, self.alpha, self.beta = config.option("dkd.ce"), config.option("dkd.alpha"), config.option("dkd.beta")
        self.label_smoothing = config.option("label_smoothing")

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        warm = 1.0 if self.warmup <= 0 else min(1.0, batch.progress / self.warmup)
        ce = losses.cross_entropy(student_out.logits, batch.y, self.label_smoothing)
        tckd, nckd = losses.dkd_terms(student_out.logits, teacher_out.logits, batch.y, self.temperature)
        loss = self.ce * ce + warm * (self.alpha * tckd + self.beta * nckd)
        return LossOut(loss, {"ce": float(ce.detach()), "tckd": float(tckd.detach()),
                              "nckd": float(nckd.detach()), "warmup": warm})


class LSKDLoss:
    """KD on z-scored logits (Sun et al., CVPR 2024), :func:`edgekd.distill.losses.lskd_soft_loss`:

    ``L = ce * CE(y, p_s) + kd * tau^2 * KL(softmax(Z(z_t)/tau) || softmax(Z(z_s)/tau))``

    at the authors' weights: ``lskd.ce`` 0.1 and ``lskd.kd`` 9 with the base temperature
    ``T`` = ``tau`` 2 (their ``tools/train.py --logit-stand --base-temp 2 --kd-weight 9`` on
    the CIFAR KD config, whose CE weight is 0.1). ``label_smoothing`` smooths the CE."""

    def __init__(self, config: TrainConfig) -> None:
        self.temperature = config.option("T")
        self.ce, self.kd = config.option("lskd.ce"), config.option("lskd.kd")
        self.label_smoothing = config.option("label_smoothing")

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        ce = losses.cross_entropy(student_out.logits, batch.y, self.label_smoothing)
        soft = losses.lskd_soft_loss(student_out.logits, teacher_out.logits, self.temperature)
        loss = self.ce * ce + self.kd * soft
        return LossOut(loss, {"ce": float(ce.detach()), "lskd": float(soft.detach())})


class MimicLoss:
    """``mimic`` (Ba & Caruana 2014): ``1/2 ||z_s - z_t||^2`` on logits, no labels."""

    def __init__(self, config: TrainConfig) -> None:
        del config

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        loss = losses.logit_mimic_loss(student_out.logits, teacher_out.logits)
        return LossOut(loss, {"mimic": float(loss.detach())})


class HintLoss:
    """FitNets stage 1: ``1/2 ||u_h - r(v_g)||^2`` summed over channels, averaged over
    positions and the batch (``reduction="channel"``). A per-element mean divides the
    gradient by ``C*H*W`` and left the regressor under-fit (R^2 ~ 0.3); the paper's full sum
    grows with the map size. The stage trains with its own Adam (``hint_lr``), which is
    invariant to the loss scale, so one learning rate fits any hint layer's size."""

    def __init__(self, config: TrainConfig) -> None:
        del config

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        loss = losses.hint_loss(teacher_out.hint, student_out.hint, reduction="channel")
        return LossOut(loss, {"hint": float(loss.detach())})


class JointHintLoss:
    """``--hint-mode joint`` (:mod:`edgekd.distill.hint_stage`): the stage's logit loss plus the
    hint loss as an auxiliary term, ``L = L_logit + beta * 1/2 ||u_h - r(v_g)||^2`` (the hint
    term per channel, as :class:`HintLoss`; ``beta = config.hint_beta``). ``inner`` is the
    stage's own loss object (KD, DKD, LS-KD); the trainer fills ``student_out.hint`` with
    ``r(v_g)`` from the same forward pass as the logits and ``teacher_out.hint`` with the
    teacher's hint (pooled down to the student's size when needed), so the regressor keeps
    training until the end."""

    def __init__(self, config: TrainConfig, inner: object) -> None:
        self.beta, self.inner = config.hint_beta, inner

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        out = self.inner.forward(student_out, teacher_out, batch)
        hint = losses.hint_loss(teacher_out.hint, student_out.hint, reduction="channel")
        return LossOut(out.loss + self.beta * hint, {**out.parts, "hint": float(hint.detach())})
