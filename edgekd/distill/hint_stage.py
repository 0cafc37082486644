"""FitNets hint-stage measurements: the regressor's R^2 and the plateau rule.

The hint stage (:mod:`edgekd.distill.trainer`, the ``hint`` stage of ``fitnet``/``fitnet-*``):

- **Loss scale**: per channel (:class:`edgekd.distill.objectives.HintLoss`,
  ``reduction="channel"``: ``1/2 ||u - r(v)||^2`` over the channels of each position, averaged
  over positions). A per-element mean divides the gradient by ``C*H*W`` and left the
  regressor under-fit (R^2 ~ 0.3 on MNIST); the paper's sum grows with the map size.
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

Hint modes (``hint_mode``, ``edgekd train/compress --hint-mode``):

- ``single`` (default): one (hint, guided) pair, the teacher stage end nearest the middle of
  the teacher with an equal-resolution student node (:mod:`edgekd.distill.pairing`).
- ``multi``: one pair per teacher stage that has a student node of the same spatial size
  (:func:`edgekd.distill.pairing.stage_pairs`), one regressor each; stage 1 minimises
  ``sum_k L_hint(u_k, r_k(v_k))`` and R^2 is the mean over the pairs (each pair's too).
- ``joint``: the single pair; after the hint stage (if ``hint_epochs > 0``) the regressor is
  *kept* and trained until the end, and the KD stage minimises
  ``L_logit + beta * L_hint(u, r(v))`` (``hint_beta``;
  :class:`edgekd.distill.objectives.JointHintLoss`), an auxiliary feature loss during
  distillation as in later feature-distillation work, next to FitNets' two stages.

:class:`HintSet` holds the taps and regressors of every pair: one partial forward pass of the
teacher up to its deepest hint, one of the student up to its deepest guided layer (or, in
joint mode, one full student pass that also returns the logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgekd.core.errors import EdgekdError
from edgekd.distill.config import HINT_MODES
from edgekd.distill.hints import FeatureTap, HintPair, make_regressor

__all__ = ["HINT_MODES", "R2Meter", "plateaued", "hint_record", "MultiTap", "HintSet"]


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


class MultiTap(nn.Module):
    """``tap(x)`` = ``[output of node_1, ..., output of node_k]`` (+ the model's output when
    ``with_logits``) from ONE forward pass (torchvision's fx feature extractor; it computes only
    what the nodes need). Shares its parameters with ``model``. A single node without logits is
    a :class:`~edgekd.distill.hints.FeatureTap` (which also taps models fx cannot trace); several
    nodes of an untraceable model fall back to one FeatureTap each (and a plain forward pass for
    the logits): correct, only slower."""

    def __init__(self, model: nn.Module, nodes: list[str], with_logits: bool = False) -> None:
        super().__init__()
        if not nodes:
            raise EdgekdError("no hint layers to tap: check --hint-layer/--guided-layer ('edgekd layers')")
        self.nodes, self.with_logits = list(nodes), with_logits
        self.extractor: nn.Module | None = None
        self.taps = nn.ModuleList()
        self.whole: list[nn.Module] = []  # the model for the logits in the fallback (not a submodule)
        if len(nodes) > 1 or with_logits:
            self.extractor = _fx_extractor(model, self.nodes, with_logits)
        if self.extractor is None:
            self.taps.extend(FeatureTap(model, node) for node in self.nodes)
            if with_logits:
                self.whole.append(model)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.extractor is not None:
            out = self.extractor(x)
            return [out[f"n{i}"] for i in range(len(self.nodes))] + ([out["logits"]] if self.with_logits else [])
        outs = [tap(x) for tap in self.taps]
        return outs + ([self.whole[0](x)] if self.whole else [])


def _fx_extractor(model: nn.Module, nodes: list[str], with_logits: bool) -> nn.Module | None:
    """An fx feature extractor returning ``n0..n{k-1}`` (and ``logits``: the graph's last node),
    or None when fx cannot trace the model (or torchvision is absent)."""
    try:
        from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

        names = {node: f"n{i}" for i, node in enumerate(nodes)}
        if with_logits:
            train_nodes, eval_nodes = get_graph_node_names(model, suppress_diff_warning=True)
            if train_nodes[-1] != eval_nodes[-1] or train_nodes[-1] in names:
                return None
            names[train_nodes[-1]] = "logits"
        return create_feature_extractor(model, return_nodes=names)
    except Exception:  # noqa: BLE001 - any tracing failure: FeatureTap per node
        return None


class HintSet(nn.Module):
    """Every (hint, guided) pair of a run: the teacher's taps, the student's taps and one
    :class:`~edgekd.distill.hints.HintRegressor` per pair (``regressors``, the only parameters
    of its own; the taps share the models' parameters)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, pairs: list[HintPair],
                 with_logits: bool = False) -> None:
        super().__init__()
        self.pairs = list(pairs)
        self.with_logits = with_logits
        self.regressors = nn.ModuleList(make_regressor(p.guided_shape, p.hint_shape) for p in self.pairs)
        # taps are kept out of the module tree: state_dict/parameters() are the regressors' only
        self._taps = (MultiTap(teacher, [p.hint_layer for p in self.pairs]),
                      MultiTap(student, [p.guided_layer for p in self.pairs], with_logits))

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """``(targets, predictions, logits)`` on a batch: per pair the teacher hint as the loss
        sees it (``regressor.target(u_k)``, float32, no gradient) and ``r_k(v_k)`` (float32);
        the student's logits when ``with_logits`` (else None)."""
        teacher_tap, student_tap = self._taps
        with torch.no_grad():
            hints = teacher_tap(x)
        guided = student_tap(x)
        targets = [reg.target(u.float()) for reg, u in zip(self.regressors, hints)]
        predictions = [reg(v).float() for reg, v in zip(self.regressors, guided)]
        logits = guided[len(self.pairs)].float() if self.with_logits else None
        return targets, predictions, logits

    @torch.no_grad()
    def r2(self, x: torch.Tensor, batch_size: int = 256) -> list[R2Meter]:
        """One :class:`R2Meter` per pair over the images ``x`` (in the models' current mode)."""
        meters = [R2Meter() for _ in self.pairs]
        for i in range(0, len(x), batch_size):
            targets, predictions, _ = self.features(x[i:i + batch_size])
            for meter, u, r in zip(meters, targets, predictions):
                meter.update(u, r)
        return meters
