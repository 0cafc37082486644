"""The trainer's FitNets part (a mixin of :class:`edgekd.distill.trainer._Trainer`): pairing and
regressors (:class:`~edgekd.distill.hint_stage.HintSet`), the hint stage's loss over every pair,
the joint term of the KD stage, R^2 per epoch and the end of the hint stage (its budget or the
R^2 plateau rule). What each hint mode does is in :mod:`edgekd.distill.hint_stage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from edgekd.core.progress import say
from edgekd.distill.hint_stage import HintSet, hint_record, plateaued
from edgekd.distill.hints import HintPair
from edgekd.distill.pairing import hint_pairs
from edgekd.distill.methods import Batch, StudentOut, TeacherOut, get_method
from edgekd.distill.objectives import JointHintLoss
from edgekd.distill.schedule import stage_spans

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.methods import Loss, Stage

__all__ = ["HintTraining"]


class HintTraining:
    """Hint state and steps of a trainer. The trainer provides ``config``, ``method``,
    ``stages``, ``losses``, ``teachers``, ``model``, ``dataset``, ``device``, ``data`` and
    ``_autocast``, and calls :meth:`_init_hints` in its constructor."""

    config: TrainConfig
    method: str
    stages: dict[str, tuple[Stage, int, int]]
    losses: dict[str, Loss]
    teachers: list[nn.Module]
    model: nn.Module
    device: torch.device

    def _init_hints(self) -> None:
        self.pairs: list[HintPair] = []
        self.hints: HintSet | None = None  # taps + one regressor per pair (hint methods only)
        self.hint_end: int | None = None  # hint epochs trained, once the hint stage has ended
        self.r2_history: list[float] = []

    @property
    def joint(self) -> bool:
        """Joint hints: the regressor trains with (and its loss is added to) the KD stage."""
        return self.config.hint_mode == "joint" and get_method(self.method).has_hint_stage

    def _is_hint(self, stage: str) -> bool:
        return self.stages[stage][0].kind == "hint"

    def _measures_r2(self, stage: str) -> bool:
        """R^2 is logged after every hint epoch, and after every KD epoch in joint mode."""
        return self._is_hint(stage) or (self.joint and self.stages[stage][0].teacher)

    def _setup_hints(self) -> None:
        """Pair the layers (one pair, or one per teacher stage with ``hint_mode="multi"``), build
        the regressors and, in joint mode, wrap the KD stage's loss with the hint term."""
        cfg = self.config
        self.pairs = hint_pairs(self.teachers[0], self.model, tuple(self.dataset.input_shape),
                                hint_layer=cfg.hint_layer, guided_layer=cfg.guided_layer,
                                stages="all" if cfg.hint_mode == "multi" else "one")
        # the student as initialised: a hint stage that does not learn is undone (_end_hint_stage)
        self.initial_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        torch.manual_seed(cfg.seed + 1)
        self.hints = HintSet(self.teachers[0], self.model, self.pairs, with_logits=self.joint).to(self.device)
        if self.joint:
            for stage, _, _ in self.stages.values():
                if stage.kind == "logits" and stage.teacher:
                    self.losses[stage.name] = JointHintLoss(cfg, self.losses[stage.name])

    def _hint_params(self, stage: str) -> list[nn.Parameter]:
        """The regressors' parameters when ``stage`` trains them (hint stage; every stage in joint mode)."""
        if self.hints is None or not (self._is_hint(stage) or self.joint):
            return []
        return list(self.hints.regressors.parameters())

    def _train_regressors(self, stage: str) -> None:
        if self.hints is not None:
            self.hints.train(self._is_hint(stage) or self.joint)

    def _hint_stage_loss(self, stage: str, x: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """``sum_k L_hint(u_k, r_k(v_k))`` over the pairs, each through the stage's loss object."""
        targets, predictions, _ = self.hints.features(x)
        outs = [self.losses[stage].forward(StudentOut(hint=r), TeacherOut(hint=u), batch)
                for u, r in zip(targets, predictions)]
        return torch.stack([o.loss for o in outs]).sum(), {"hint": sum(o.parts["hint"] for o in outs)}

    def _joint_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint mode, one student pass: ``(logits, r(v), teacher hint as the loss sees it)``."""
        (target,), (prediction,), logits = self.hints.features(x)
        return logits, prediction, target

    @torch.no_grad()
    def _hint_r2(self, limit: int = 2048) -> dict[str, Any]:
        """R^2 of each regressor in eval mode on (up to ``limit``) validation images (training
        images when there is no validation split); ``r2_mean`` is the mean over the pairs."""
        x = self.data.x_val if len(self.data.y_val) else self.data.x_train
        self.model.eval()
        self.hints.eval()
        with self._autocast():
            meters = self.hints.r2(x[:limit].to(self.device))
        self.model.train()
        self.hints.train()
        return hint_record(meters, self.pairs)

    def _end_hint_stage(self, epoch: int, stage: str, record: dict[str, Any]) -> None:
        """Record R^2; end the hint stage at its budget, when R^2 plateaus
        (:func:`edgekd.distill.hint_stage.plateaued`), or after its first epoch when R^2 is
        below ``hint_min_r2``: the regressor did not learn to predict the teacher's hint, so the
        guided layers were fitted to noise; the student goes back to its initial weights and
        the KD stage starts as ``kd`` would."""
        cfg = self.config
        self.r2_history.append(float(record["r2_mean"]))
        first, budget = self._stage_bounds(stage)
        done = epoch + 1 - first
        if done == 1 and cfg.hint_min_r2 > -1.0 and not self.r2_history[0] >= cfg.hint_min_r2:  # nan too; -1: off
            self.hint_end = done
            self.model.load_state_dict(self.initial_state)
            record["hint_stop"] = (f"R^2 {self.r2_history[0]:.3f} after the first hint epoch is below "
                                   f"--hint-min-r2 {cfg.hint_min_r2:g}: the hint did not learn; its weights "
                                   "are dropped and KD starts from the initial student")
            say(getattr(self, "progress", False), f"hint stage stopped: {record['hint_stop']}")
        elif done >= budget:
            self.hint_end = done
        elif plateaued(self.r2_history, cfg.hint_patience, cfg.hint_min_delta):
            self.hint_end = done
            record["hint_stop"] = (f"R^2 plateau (best of the last {cfg.hint_patience} epochs < "
                                   f"{cfg.hint_min_delta} above the best before)")
        if self.hint_end is not None:
            self.stages = stage_spans(cfg, self.hint_end)

    def _hint_state(self) -> dict[str, Any]:
        """The checkpoint's hint fields."""
        return {"regressors": self.hints.regressors.state_dict() if self.hints is not None else None,
                "hint_end": self.hint_end, "r2_history": self.r2_history}

    def _restore_hints(self, state: dict[str, Any]) -> None:
        if self.hints is not None and state.get("regressors") is not None:
            self.hints.regressors.load_state_dict(state["regressors"])
        elif self.hints is not None and state.get("regressor") is not None:  # a single-pair checkpoint
            self.hints.regressors[0].load_state_dict(state["regressor"])
        self.hint_end, self.r2_history = state.get("hint_end"), list(state.get("r2_history") or [])
        if self.hint_end is not None:
            self.stages = stage_spans(self.config, self.hint_end)

    def _hint_result(self) -> dict[str, Any]:
        """result.json's hint fields."""
        return {"hint": self.pairs[0].to_dict() if self.pairs else None,
                "hints": [p.to_dict() for p in self.pairs] or None,
                "hint_epochs_done": self.hint_end or 0,
                "hint_r2": list(self.r2_history) if self.pairs else None}
