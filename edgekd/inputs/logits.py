"""A teacher's logits on uint8 images, computed once and cached on disk (the teacher-output
cache)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekd.core.fileio import atomic_write_bytes
from edgekd.inputs.data import array_fingerprint, eval_batch, to_tensor

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from edgekd.inputs.data import Normalization

__all__ = ["teacher_logits"]


def teacher_logits(teacher: "torch.nn.Module", x_uint8: np.ndarray, norm: "Normalization", *,
                   cache_dir: Path | None, teacher_fp: str, batch_size: int = 512) -> np.ndarray:
    """The teacher's logits on uint8 images, float32 ``(N, classes)``, cached on disk.

    The cache file is ``{cache_dir}/{teacher_fp[:16]}-{data_fp[:16]}.npy`` where ``data_fp``
    hashes the images and the normalisation; it is written atomically and reused when present
    (a file of the wrong shape or a corrupt one is recomputed). ``cache_dir=None`` disables
    the cache. The teacher runs in eval mode under ``torch.inference_mode`` on its own device.
    """
    cache_file = None
    if cache_dir is not None:
        data_fp = array_fingerprint(x_uint8, norm.to_dict())
        cache_file = Path(cache_dir) / f"{teacher_fp[:16]}-{data_fp[:16]}.npy"
        cached = _read_cached_logits(cache_file, len(x_uint8))
        if cached is not None:
            return cached
    from edgekd.core.progress import note

    started = time.monotonic()
    note(f"computing the teacher's outputs on {len(x_uint8):,} training images (once: cached)")
    logits = _compute_logits(teacher, x_uint8, norm, batch_size)
    note(f"teacher outputs computed in {time.monotonic() - started:.0f} s")
    if cache_file is not None:
        buffer = io.BytesIO()
        np.save(buffer, logits, allow_pickle=False)
        atomic_write_bytes(cache_file, buffer.getvalue())
    return logits


def _read_cached_logits(path: Path, n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        logits = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if logits.ndim != 2 or len(logits) != n or logits.dtype != np.float32:
        return None
    return logits


def _compute_logits(teacher: "torch.nn.Module", x_uint8: np.ndarray, norm: "Normalization",
                    batch_size: int) -> np.ndarray:
    import torch

    batch_size = eval_batch(x_uint8.shape[1:], batch_size)
    param = next(iter(teacher.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = teacher.training
    teacher.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, len(x_uint8), batch_size):
                batch = to_tensor(x_uint8[start:start + batch_size], norm).to(device)
                outputs.append(teacher(batch).float().cpu().numpy())
    finally:
        teacher.train(was_training)
    return np.ascontiguousarray(np.concatenate(outputs).astype(np.float32))
