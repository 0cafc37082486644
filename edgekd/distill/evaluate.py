"""Where a trainer runs and how it evaluates: the device, autocast, logits and top-1 accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from edgekd.core.errors import EdgekdError

__all__ = ["accuracy", "autocast", "predict_logits", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:N]``; one error line otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EdgekdError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdgekdError(f"device {name!r} asked for but CUDA is not available: use --device cpu")
    return device


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on a float tensor (or a
    :class:`~edgekd.distill.trainset.NormalizedImages`), on the CPU, float32; in batches of at
    most ``batch_size`` images and about :data:`edgekd.inputs.data.EVAL_BATCH_PIXELS` pixels."""
    from edgekd.inputs.data import eval_batch

    device = device or next(model.parameters()).device
    batch_size = eval_batch(tuple(x.shape[1:]), batch_size) if len(x) else batch_size
    was_training = model.training
    model.eval()
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(dim=1) == labels).float().mean())



def autocast(device: torch.device) -> Any:
    """float16 autocast on CUDA (AMP); a disabled context on CPU."""
    return (torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda"
            else torch.autocast("cpu", enabled=False))
