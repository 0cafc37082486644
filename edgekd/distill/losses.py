"""Distillation losses, one small function each, with the formula and the paper.

All functions take raw logits (never probabilities) and return a scalar tensor averaged
over the batch, so they can be summed with weights by the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy", "kd_soft_loss", "kd_terms", "kd_loss", "hint_loss", "logit_mimic_loss",
           "combine_teacher_logits"]


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hard-label cross-entropy, ``CE(y, p_s) = -mean_i log softmax(z_s)_i[y_i]``."""
    return F.cross_entropy(student_logits, labels)


def kd_soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """The soft part of Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network"):

    ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient magnitude of the soft term independent of ``T``
    (the gradient of the KL term scales as ``1/T^2``), as the paper prescribes.
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def kd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             temperature: float, alpha: float, soft_weight: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hinton KD (Hinton et al. 2015), the one place its formula is written:

    ``L = (a * CE(y, p_s) + (1 - a) * w * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))) / (a + (1 - a) * w)``

    ``alpha`` (``a``) is the weight of the hard labels (``alpha=0``: pure soft targets,
    ``alpha=1``: plain back-prop). ``soft_weight`` (``w``, 1 for plain KD) is FitNets'
    ``lambda`` on the soft term; dividing by ``a + (1 - a) w`` keeps the loss scale (so the
    effective learning rate) that of plain KD, where the denominator is 1.

    Returns ``(L, CE, T^2 KL)`` so a caller can log the parts without computing them twice.
    """
    hard = cross_entropy(student_logits, labels)
    soft = kd_soft_loss(student_logits, teacher_logits, temperature)
    w = soft_weight
    loss = (alpha * hard + (1.0 - alpha) * w * soft) / (alpha + (1.0 - alpha) * w)
    return loss, hard, soft


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float, soft_weight: float = 1.0) -> torch.Tensor:
    """The KD loss ``L`` of :func:`kd_terms` alone."""
    return kd_terms(student_logits, teacher_logits, labels, temperature, alpha, soft_weight)[0]


def hint_loss(teacher_hint: torch.Tensor, regressed_guided: torch.Tensor,
              reduction: str = "sum") -> torch.Tensor:
    """FitNets hint loss (Romero et al. 2015, eq. 3): ``1/2 * ||u_h(x) - r(v_g(x))||^2``.

    ``u_h`` is the teacher's hint-layer output, ``r(v_g)`` the regressor applied to the
    student's guided-layer output. ``reduction="sum"`` is the paper's per-example loss: the
    squared L2 norm summed over the feature dimensions, then averaged over the batch.
    ``reduction="mean"`` also divides by the number of hint elements ``D = C_h*H_h*W_h``
    (same minimiser, gradients ``D`` times smaller): the trainer uses it so that one
    learning rate is stable for both FitNets stages, whatever the hint layer's size.
    """
    if teacher_hint.shape != regressed_guided.shape:
        raise ValueError(f"hint shape {tuple(teacher_hint.shape)} != regressor output "
                         f"shape {tuple(regressed_guided.shape)}")
    diff = (teacher_hint - regressed_guided).flatten(1)
    per_example = 0.5 * diff.pow(2).sum(dim=1)
    if reduction == "mean":
        per_example = per_example / diff.shape[1]
    elif reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}: use 'sum' or 'mean'")
    return per_example.mean()


def logit_mimic_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Logit regression of Ba & Caruana 2014 ("Do Deep Nets Really Need to be Deep?"):

    ``1/2 * ||z_s - z_t||^2``, summed over classes and averaged over the batch.
    """
    return 0.5 * (student_logits - teacher_logits).pow(2).sum(dim=1).mean()


def combine_teacher_logits(logits: list[torch.Tensor], mode: str = "logits",
                           temperature: float = 1.0) -> torch.Tensor:
    """Average an ensemble of teachers into one logit tensor.

    ``mode="logits"``: ``z = mean_k z_k`` (Ba & Caruana average the ensemble's logits).
    ``mode="probs"``: ``z = T * log(mean_k softmax(z_k / T))``, the logits whose tempered
    softmax is exactly the averaged tempered probabilities (up to a constant shift, which
    softmax ignores), so the KD loss at temperature ``T`` sees the averaged soft targets.
    """
    if not logits:
        raise ValueError("no teacher logits to combine")
    if len(logits) == 1:
        return logits[0]
    stacked = torch.stack([z.float() for z in logits])
    if mode == "logits":
        return stacked.mean(dim=0)
    if mode == "probs":
        t = float(temperature)
        log_probs = F.log_softmax(stacked / t, dim=2)
        n = torch.log(torch.tensor(float(len(logits))))
        return t * (torch.logsumexp(log_probs, dim=0) - n)
    raise ValueError(f"unknown ensemble mode {mode!r}: use 'logits' or 'probs'")
