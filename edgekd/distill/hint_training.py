"""The trainer's FitNets part, an object the trainer holds (``trainer.hints``): pairing and
regressors (:class:`~edgekd.distill.hint_stage.HintSet`), the hint stage's loss over every pair,
the joint term of the KD stage, R^2 per epoch and the end of the hint stage (its budget or the
R^2 plateau rule). What each hint mode does is in :mod:`edgekd.distill.hint_stage`.

Its state (pairs, regressors, R^2 curve, the hint stage's end) is its own; the trainer hands it
the student and the stage at hand, and reads back when the hint stage ended
(:attr:`HintTraining.end`) to re-plan its stages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from edgekd.core.progress import say
from edgekd.distill.evaluate import autocast
from edgekd.distill.hint_stage import HintSet, hint_record, plateaued
from edgekd.distill.hints import HintPair
from edgekd.distill.pairing import hint_pairs
from edgekd.distill.methods import Batch, StudentOut, TeacherOut, get_method
from edgekd.distill.objectives import JointHintLoss

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.methods import Loss, Stage
    from edgekd.distill.trainset import TrainData

__all__ = ["HintTraining"]


class HintTraining:
    """Hint state and steps of one trainer's student (``model``, trained on ``device``).
    Inert until :meth:`setup` pairs the layers (methods with a hint stage only)."""

    def __init__(self, config: TrainConfig, model: nn.Module, device: torch.device, progress: bool) -> None:
        self.config, self.model, self.device, self.progress = config, model, device, progress
        #: joint hints: the regressor trains with (and its loss is added to) the KD stage
        self.joint = config.hint_mode == "joint" and get_method(config.method).has_hint_stage
        self.pairs: list[HintPair] = []
        self.hint_set: HintSet | None = None  # taps + one regressor per pair (hint methods only)
        self.end: int | None = None  # hint epochs trained, once the hint stage has ended
        self.r2_history: list[float] = []
        self.initial_state: dict[str, torch.Tensor] = {}

    def trains(self, stage: Stage) -> bool:
        """Whether ``stage`` trains the regressors (the hint stage; every stage in joint mode)."""
        return self.hint_set is not None and (stage.kind == "hint" or self.joint)

    def measures_r2(self, stage: Stage) -> bool:
        """R^2 is logged after every hint epoch, and after every KD epoch in joint mode."""
        return stage.kind == "hint" or (self.joint and stage.teacher)

    def setup(self, teacher: nn.Module, input_shape: tuple[int, ...], losses: dict[str, Loss],
              stages: list[Stage]) -> None:
        """Pair the layers (one pair, or one per teacher stage with ``hint_mode="multi"``), build
        the regressors and, in joint mode, wrap the KD stage's loss in ``losses`` with the hint term."""
        cfg = self.config
        self.pairs = hint_pairs(teacher, self.model, input_shape,
                                hint_layer=cfg.hint_layer, guided_layer=cfg.guided_layer,
                                stages="all" if cfg.hint_mode == "multi" else "one")
        # the student as initialised: a hint stage that does not learn is undone (end_stage)
        self.initial_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        torch.manual_seed(cfg.seed + 1)
        self.hint_set = HintSet(teacher, self.model, self.pairs, with_logits=self.joint).to(self.device)
        if self.joint:
            for stage in stages:
                if stage.kind == "logits" and stage.teacher:
                    losses[stage.name] = JointHintLoss(cfg, losses[stage.name])

    def params(self, stage: Stage) -> list[nn.Parameter]:
        """The regressors' parameters when ``stage`` trains them, else none."""
        return list(self.hint_set.regressors.parameters()) if self.trains(stage) else []

    def train_mode(self, stage: Stage) -> None:
        """Regressors in train mode when ``stage`` trains them, in eval mode otherwise."""
        if self.hint_set is not None:
            self.hint_set.train(self.trains(stage))

    def stage_loss(self, loss: Loss, x: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """``sum_k L_hint(u_k, r_k(v_k))`` over the pairs, each through the stage's loss object."""
        targets, predictions, _ = self.hint_set.features(x)
        outs = [loss.forward(StudentOut(hint=r), TeacherOut(hint=u), batch) for u, r in zip(targets, predictions)]
        return torch.stack([o.loss for o in outs]).sum(), {"hint": sum(o.parts["hint"] for o in outs)}

    def joint_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint mode, one student pass: ``(logits, r(v), teacher hint as the loss sees it)``."""
        (target,), (prediction,), logits = self.hint_set.features(x)
        return logits, prediction, target

    @torch.no_grad()
    def r2(self, data: TrainData, limit: int = 2048) -> dict[str, Any]:
        """R^2 of each regressor in eval mode on (up to ``limit``) validation images (training
        images when there is no validation split); ``r2_mean`` is the mean over the pairs."""
        x = data.x_val if len(data.y_val) else data.x_train
        self.model.eval()
        self.hint_set.eval()
        with autocast(self.device):
            meters = self.hint_set.r2(x[:limit].to(self.device))
        self.model.train()
        self.hint_set.train()
        return hint_record(meters, self.pairs)

    def end_stage(self, done: int, budget: int, record: dict[str, Any]) -> bool:
        """Record R^2 after hint epoch ``done`` of ``budget``; True when the hint stage ends: at
        its budget, when R^2 plateaus (:func:`edgekd.distill.hint_stage.plateaued`), or after
        its first epoch when R^2 is below ``hint_min_r2``: the regressor did not learn to predict
        the teacher's hint, so the guided layers were fitted to noise; the student goes back to
        its initial weights and the KD stage starts as ``kd`` would."""
        cfg = self.config
        self.r2_history.append(float(record["r2_mean"]))
        if done == 1 and cfg.hint_min_r2 > -1.0 and not self.r2_history[0] >= cfg.hint_min_r2:  # nan too; -1: off
            self.end = done
            self.model.load_state_dict(self.initial_state)
            record["hint_stop"] = (f"R^2 {self.r2_history[0]:.3f} after the first hint epoch is below "
                                   f"--hint-min-r2 {cfg.hint_min_r2:g}: the hint did not learn; its weights "
                                   "are dropped and KD starts from the initial student")
            say(self.progress, f"hint stage stopped: {record['hint_stop']}")
        elif done >= budget:
            self.end = done
        elif plateaued(self.r2_history, cfg.hint_patience, cfg.hint_min_delta):
            self.end = done
            record["hint_stop"] = (f"R^2 plateau (best of the last {cfg.hint_patience} epochs < "
                                   f"{cfg.hint_min_delta} above the best before)")
        return self.end is not None

    def state(self) -> dict[str, Any]:
        """The checkpoint's hint fields."""
        return {"regressors": self.hint_set.regressors.state_dict() if self.hint_set is not None else None,
                "hint_end": self.end, "r2_history": self.r2_history}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state` saved (a checkpoint's ``train_state``)."""
        if self.hint_set is not None and state.get("regressors") is not None:
            self.hint_set.regressors.load_state_dict(state["regressors"])
        elif self.hint_set is not None and state.get("regressor") is not None:  # a single-pair checkpoint
            self.hint_set.regressors[0].load_state_dict(state["regressor"])
        self.end, self.r2_history = state.get("hint_end"), list(state.get("r2_history") or [])

    def result(self) -> dict[str, Any]:
        """result.json's hint fields."""
        return {"hint": self.pairs[0].to_dict() if self.pairs else None,
                "hints": [p.to_dict() for p in self.pairs] or None,
                "hint_epochs_done": self.end or 0,
                "hint_r2": list(self.r2_history) if self.pairs else None}
