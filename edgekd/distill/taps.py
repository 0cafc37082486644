"""Feature taps of the losses that declare them (the method interface of
:mod:`edgekd.distill.methods`): a loss with a ``taps(teacher_layers, student_layers)`` method
names the (teacher node, student node) pairs it needs, at any resolution; :class:`StageTaps`
resolves them once per run and, on every batch, returns the student's logits and features from
one student pass and the first teacher's features (no gradient) from one partial teacher pass
(:class:`~edgekd.distill.hint_stage.MultiTap`, torchvision's fx feature extraction).

A loss that is an ``nn.Module`` has parameters of its own (a projection, a regressor): the
trainer moves it to the device, trains its parameters with the stage and keeps its state in the
checkpoint (:func:`loss_parameters`, :func:`loss_states`). The trainer holds one
:class:`StageTaps` per tapped stage (composition: no trainer code knows which method it serves).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from edgekd.core.errors import EdgekdError
from edgekd.distill.hint_stage import MultiTap
from edgekd.distill.hints import list_layers
from edgekd.distill.methods import Loss, TapPair

__all__ = ["StageTaps", "tapped_stages", "loss_parameters", "loss_states", "load_loss_states"]


class StageTaps:
    """The taps of one stage: ``pairs`` (what the loss asked for), the teacher's and the
    student's :class:`MultiTap` (the student's also returns the logits)."""

    def __init__(self, loss: Any, teacher: nn.Module, student: nn.Module, input_shape: tuple[int, ...]) -> None:
        pairs = list(loss.taps(list_layers(teacher, input_shape), list_layers(student, input_shape)))
        if not pairs or not all(isinstance(p, TapPair) for p in pairs):
            raise EdgekdError(f"{type(loss).__name__}.taps() found no (teacher, student) node pair: check "
                              "the two networks' layers with 'edgekd layers'")
        self.pairs = pairs
        self.teacher = MultiTap(teacher, [p.teacher for p in pairs])
        self.student = MultiTap(student, [p.student for p in pairs], with_logits=True)

    def student_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(float32 logits, features)`` of the student on ``x``, one forward pass."""
        out = self.student(x)
        return out[-1].float(), [f.float() for f in out[:-1]]

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.float() for f in self.teacher(x)]


def tapped_stages(losses: Mapping[str, Loss], teacher: nn.Module | None, student: nn.Module,
                  input_shape: tuple[int, ...]) -> dict[str, StageTaps]:
    """stage name -> :class:`StageTaps` for every stage whose loss declares ``taps``."""
    tapped = {name: loss for name, loss in losses.items() if callable(getattr(loss, "taps", None))}
    if tapped and teacher is None:
        raise EdgekdError("a feature method needs a teacher: pass --teacher")
    return {name: StageTaps(loss, teacher, student, input_shape) for name, loss in tapped.items()}


def loss_parameters(loss: Loss) -> list[nn.Parameter]:
    """The parameters a loss trains (an ``nn.Module`` loss), else none."""
    return list(loss.parameters()) if isinstance(loss, nn.Module) else []


def loss_states(losses: Mapping[str, Loss]) -> dict[str, dict[str, torch.Tensor]]:
    """The state of every ``nn.Module`` loss, for the checkpoint."""
    return {name: {k: v.detach().cpu() for k, v in loss.state_dict().items()}
            for name, loss in losses.items() if isinstance(loss, nn.Module)}


def load_loss_states(losses: Mapping[str, Loss], states: Mapping[str, Any] | None) -> None:
    for name, state in (states or {}).items():
        if isinstance(losses.get(name), nn.Module):
            losses[name].load_state_dict(state)
