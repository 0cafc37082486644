"""A faster eval-mode copy of a network for computing logits on the CPU: the teacher's
distillation targets, and the student's validation pass after every epoch.

On the CPU a KD run with augmentation spends most of its time in the teacher: the built-in
teacher costs 7.7M MACs per 28x28 image, ten times the students it teaches, and its logits
are needed on every augmented view (cached views, or one pass per batch). Two rewrites of an
eval-mode copy make that pass about 1.9x cheaper in CPU time (measured: 0.28 -> 0.15 s per
512 images on one thread, benchmarks/results/train_throughput.md):

1. BatchNorm folded into the convolution before it (``torch.fx.experimental.optimization.fuse``;
   in eval mode ``BN(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + eps)`` and
   ``b' = (b - m) * g / sqrt(v + eps) + beta``);
2. weights and inputs in ``channels_last`` (NHWC), the layout oneDNN's CPU convolutions and
   pooling run fastest in.

The student's validation pass (1,000 images after every epoch) costs about 0.2 CPU-s with the
student as it is and 0.09 with the copy (the copy made anew each epoch included): 4% of a KD epoch
of benchmarks/train_throughput.py's student.

Only networks built from torch, torchvision or edgekd modules are rewritten (a user module's
``forward`` may have side effects a traced copy would lose), and the copy is used only when
its logits match the original's on a sample (``|d| <= 1e-4 * (1 + max|z|)``); otherwise, and
on CUDA (where the trainer already runs channels_last under AMP), the teacher is used as is.
Feature taps (FitNets hints) always use the original teacher: fusing renames nothing but
folds the BatchNorm the tapped activation may follow.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["fast_copy", "logit_teachers"]

_TRUSTED = ("torch.nn.", "torchvision.", "edgekd.")


def _plain(model: nn.Module) -> bool:
    """Whether every module of ``model`` is torch's, torchvision's or edgekd's own (a traced
    copy of those computes exactly what their forward does)."""
    return not isinstance(model, torch.jit.ScriptModule) and all(
        type(m).__module__.startswith(_TRUSTED) for m in model.modules())


class _ChannelsLast(nn.Module):
    """``model`` fed channels_last inputs (the layout of its weights)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)


def fast_copy(model: nn.Module, device: torch.device, sample: torch.Tensor) -> nn.Module:
    """The network that computes ``model``'s eval-mode logits fastest on ``device``: on the CPU
    a fused, channels_last copy (module docstring) when it applies and matches ``model`` in eval
    mode on ``sample`` (a few input images), else ``model`` itself (its train/eval mode is left
    as it was)."""
    if device.type != "cpu" or not _plain(model) or sample.dim() != 4:
        return model
    from torch.fx.experimental.optimization import fuse

    from edgekd.search.blocks import deployed

    was_training = model.training
    try:
        fast = fuse(deployed(copy.deepcopy(model).eval().cpu()))
        fast = _ChannelsLast(fast.to(memory_format=torch.channels_last)).eval()
        with torch.no_grad():
            expected, got = model.eval()(sample).float(), fast(sample).float()
    except Exception:  # noqa: BLE001 - not symbolically traceable: keep the model as it is
        return model
    finally:
        model.train(was_training)
    if expected.shape != got.shape or not bool(
            ((expected - got).abs().max() <= 1e-4 * (1 + expected.abs().max())).item()):
        return model
    return fast


def logit_teachers(teachers: list[nn.Module], device: torch.device, sample: torch.Tensor,
                   wanted: bool = True) -> list[nn.Module]:
    """:func:`fast_copy` of each teacher (the teachers themselves when not ``wanted``)."""
    if not wanted:
        return list(teachers)
    sample = sample.to(device)
    return [fast_copy(t, device, sample) for t in teachers]
