"""Distillation losses, one small function each, with the formula and the paper.

All functions take raw logits (never probabilities) and return a scalar tensor averaged
over the batch, so they can be summed with weights by the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.core.errors import EdgekdError

__all__ = ["cross_entropy", "kd_soft_loss", "kd_terms", "kd_loss", "dkd_terms",
           "standardize_logits", "lskd_soft_loss", "hint_loss", "logit_mimic_loss", "combine_teacher_logits",
           "attention_map", "attention_transfer_loss"]


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Hard-label cross-entropy, ``CE(y, p_s) = -mean_i log softmax(z_s)_i[y_i]``; with label
    smoothing ``e`` (Szegedy et al. 2016) the target is ``(1-e) onehot(y) + e/K``."""
    return F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)


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
             temperature: float, alpha: float, soft_weight: float = 1.0,
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hinton KD (Hinton et al. 2015), the one place its formula is written:

    ``L = (a * CE(y, p_s) + (1 - a) * w * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))) / (a + (1 - a) * w)``

    ``alpha`` (``a``) is the weight of the hard labels (``alpha=0``: pure soft targets,
    ``alpha=1``: plain back-prop). ``soft_weight`` (``w``, 1 for plain KD) is FitNets'
    ``lambda`` on the soft term; dividing by ``a + (1 - a) w`` keeps the loss scale (so the
    effective learning rate) that of plain KD, where the denominator is 1.

    Returns ``(L, CE, T^2 KL)`` so a caller can log the parts without computing them twice.
    """
    hard = cross_entropy(student_logits, labels, label_smoothing)
    soft = kd_soft_loss(student_logits, teacher_logits, temperature)
    w = soft_weight
    loss = (alpha * hard + (1.0 - alpha) * w * soft) / (alpha + (1.0 - alpha) * w)
    return loss, hard, soft


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float, soft_weight: float = 1.0) -> torch.Tensor:
    """The KD loss ``L`` of :func:`kd_terms` alone."""
    return kd_terms(student_logits, teacher_logits, labels, temperature, alpha, soft_weight)[0]


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of Decoupled KD (Zhao et al., CVPR 2022, "Decoupled Knowledge
    Distillation"), each averaged over the batch and multiplied by ``T^2``.

    With ``p = softmax(z/T)`` and ``t`` the target class of each image:

    - TCKD (target-class KD), a binary KL between "target" and "all others":
      ``b = [p_t, 1 - p_t]``, ``TCKD = KL(b^T || b^S)``;
    - NCKD (non-target-class KD), the KL between the distributions among the non-target
      classes only: ``p_hat_i = softmax_{i != t}(z_i/T)``, ``NCKD = KL(p_hat^T || p_hat^S)``.

    Classical KD is ``KL(p^T||p^S) = TCKD + (1 - p_t^T) * NCKD`` (the paper's eq. 5), which
    ties NCKD's weight to the teacher's confidence; DKD frees it
    (:class:`edgekd.distill.objectives.DKDLoss`).
    Returns ``(T^2 * TCKD, T^2 * NCKD)``.
    """
    if student_logits.shape[1] < 2:  # no non-target class: TCKD and NCKD are undefined (nan)
        raise EdgekdError(f"decoupled KD needs at least 2 classes, but the data has "
                          f"{student_logits.shape[1]}: give data with two or more classes, or use "
                          "--method kd")
    t = float(temperature)
    mask = F.one_hot(labels, student_logits.shape[1]).to(torch.bool)

    def binary_log_probs(z: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(z / t, dim=1)
        log_target = log_p.masked_select(mask)
        # log(1 - p_t) = logsumexp over the non-target log-probabilities (stable)
        log_other = torch.logsumexp(log_p.masked_fill(mask, float("-inf")), dim=1)
        return torch.stack([log_target, log_other], dim=1)

    tckd = F.kl_div(binary_log_probs(student_logits), binary_log_probs(teacher_logits),
                    reduction="batchmean", log_target=True)

    def non_target_log_probs(z: torch.Tensor) -> torch.Tensor:
        # the target class gets probability 0 (its log-prob is -inf and is excluded below)
        return F.log_softmax((z / t).masked_fill(mask, float("-inf")), dim=1)

    ls, lt = non_target_log_probs(student_logits), non_target_log_probs(teacher_logits)
    keep = ~mask
    per_class = torch.where(keep, lt.exp() * (lt - ls), torch.zeros_like(lt))
    nckd = per_class.sum(dim=1).mean()
    return tckd * (t * t), nckd * (t * t)


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score of each logit vector (Sun et al., CVPR 2024, "Logit Standardization in
    Knowledge Distillation"): ``Z(z) = (z - mean(z)) / (std(z) + eps)`` over the classes,
    with the unbiased standard deviation (``n - 1``), as in the authors' code."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def lskd_soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """KD on standardised logits (Sun et al. 2024): ``tau^2 * KL(softmax(Z(z_t)/tau) ||
    softmax(Z(z_s)/tau))``, averaged over the batch.

    The temperature rule of the paper: teacher and student need not share one temperature;
    each image's effective temperature is ``tau * std(z)`` of its own logits, so the student
    matches the teacher's *relations* between logits, not their range. ``tau`` is the base
    temperature (the authors use 2 where vanilla KD uses 4). The soft targets are invariant
    to shifting and scaling either network's logits.
    """
    return kd_soft_loss(standardize_logits(student_logits), standardize_logits(teacher_logits),
                        temperature)


def hint_loss(teacher_hint: torch.Tensor, regressed_guided: torch.Tensor,
              reduction: str = "sum") -> torch.Tensor:
    """FitNets hint loss (Romero et al. 2015, eq. 3): ``1/2 * ||u_h(x) - r(v_g(x))||^2``.

    ``u_h`` is the teacher's hint-layer output, ``r(v_g)`` the regressor applied to the
    student's guided-layer output. Three scales of the same minimiser:

    - ``"sum"``: the paper's per-example loss, the squared L2 norm summed over all
      ``D = C*H*W`` feature elements, averaged over the batch;
    - ``"channel"``: summed over channels, averaged over spatial positions (and the batch):
      ``1/(H W) * sum_{h,w} 1/2 ||u[:, h, w] - r(v)[:, h, w]||^2``. This is what the hint
      stage uses: each position's term is the paper's loss of a ``C``-vector, and the scale
      does not depend on the map size (``"sum"`` grows with ``H*W``) while it does not shrink
      by ``C`` (``"mean"`` divided the gradient by ``C*H*W``, which left the regressor under-fit
      at R^2 ~ 0.3 with the KD learning rate);
    - ``"mean"``: divided by ``D`` (per element).

    A vector hint ``(B, D)`` has ``H = W = 1``: ``"channel"`` equals ``"sum"``.
    """
    if teacher_hint.shape != regressed_guided.shape:
        raise ValueError(f"hint shape {tuple(teacher_hint.shape)} != regressor output "
                         f"shape {tuple(regressed_guided.shape)}")
    diff = (teacher_hint - regressed_guided).flatten(1)
    per_example = 0.5 * diff.pow(2).sum(dim=1)
    if reduction == "mean":
        per_example = per_example / diff.shape[1]
    elif reduction == "channel":
        positions = teacher_hint[0, 0].numel() if teacher_hint.dim() > 2 else 1
        per_example = per_example / positions
    elif reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}: use 'sum', 'channel' or 'mean'")
    return per_example.mean()


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of an activation ``A`` of shape ``(B, C, H, W)`` (Zagoruyko & Komodakis
    2017): ``F(A) = mean_c |A_c|^p``, shape ``(B, H, W)`` (the paper sums over channels; the mean
    differs by the factor ``C``, which the normalisation in :func:`attention_transfer_loss` removes)."""
    return features.abs().pow(p).mean(dim=1)


def attention_transfer_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
                            p: float = 2.0) -> torch.Tensor:
    """One attention-transfer term (Zagoruyko & Komodakis 2017, eq. 2, as in their code):

    ``mean_{b,i} (Q_s/||Q_s||_2 - Q_t/||Q_t||_2)^2`` with ``Q = vec(attention_map(A))`` per image.

    The maps may differ in channels and size: the larger attention map is average-pooled to the
    smaller one's ``(H, W)`` before the normalisation.
    """
    a_s, a_t = attention_map(student_features, p), attention_map(teacher_features, p)
    if a_s.shape[-2:] != a_t.shape[-2:]:
        size = (min(a_s.shape[-2], a_t.shape[-2]), min(a_s.shape[-1], a_t.shape[-1]))
        a_s = F.adaptive_avg_pool2d(a_s.unsqueeze(1), size).squeeze(1)
        a_t = F.adaptive_avg_pool2d(a_t.unsqueeze(1), size).squeeze(1)
    q_s, q_t = F.normalize(a_s.flatten(1), dim=1), F.normalize(a_t.flatten(1), dim=1)
    return (q_s - q_t).pow(2).mean()


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
