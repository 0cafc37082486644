"""Teacher targets for the trainer.

Teacher ensembles: several teachers are combined with ``ensemble="logits"`` (mean logits)
or ``"probs"`` (mean tempered probabilities), :func:`~edgekd.distill.losses.combine_teacher_logits`.
With augmentation off, each teacher's logits on the training images are computed once and
cached on disk by :func:`edgekd.inputs.logits.teacher_logits` (key: teacher fingerprint + data
fingerprint), so a KD epoch does no teacher forward pass; a different teacher gets a
different file.

Augmentation (``augment``, :mod:`edgekd.distill.augment`): drawn once per batch; the one
augmented tensor is what the student and the teacher see. The teacher then runs per batch,
or, with ``teacher_views = K``, on K augmented views per image drawn once at the start
(each batch serves a random one of the K views and its cached targets): K teacher passes in
all instead of one per epoch (benchmarks/train_throughput.py measures which is faster).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn

from edgekd.core.progress import note
from edgekd.core.errors import EdgekdError
from edgekd.distill import augment, losses
from edgekd.distill.evaluate import autocast
from edgekd.distill.trainset import TrainData, epoch_generator

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import ImageDataset

__all__ = ["cached_teacher_targets", "check_teacher_finite", "check_views_memory", "logit_cache_dir",
           "teacher_fingerprints", "teacher_views", "views_bytes"]


def teacher_fingerprints(teachers: list[nn.Module], given: list[str] | None) -> list[str]:
    if given is not None:
        if len(given) != len(teachers):
            raise EdgekdError(f"{len(given)} teacher fingerprints for {len(teachers)} teachers: "
                              "give one per teacher")
        return list(given)
    from edgekd.inputs.teachers import model_fingerprint

    return [model_fingerprint(t) for t in teachers]


def logit_cache_dir(config: TrainConfig) -> Path | None:
    if not config.use_cache:
        return None
    if config.cache_dir:
        return Path(config.cache_dir)
    from edgekd.core.cache import cache_root

    return cache_root() / "teacher_logits"



def cached_teacher_targets(teachers: list[nn.Module], fps: list[str], dataset: ImageDataset,
                            train_idx: np.ndarray, config: TrainConfig) -> torch.Tensor:
    """Combined teacher logits for the training images, from the on-disk cache.

    Each teacher's logits are computed on *all* training images (so every seed, split and
    rung of a run shares one cache file per teacher) and then indexed.
    """
    from edgekd.inputs.logits import teacher_logits

    cache_dir = logit_cache_dir(config)
    per_teacher = [torch.from_numpy(teacher_logits(t, dataset.x_train, dataset.normalization,
                                                   cache_dir=cache_dir, teacher_fp=fp))[train_idx]
                   for t, fp in zip(teachers, fps)]
    for index, logits in enumerate(per_teacher):
        check_teacher_finite(logits, index)
    return losses.combine_teacher_logits(per_teacher, config.ensemble, config.ensemble_temperature)


def check_teacher_finite(logits: torch.Tensor, index: int) -> None:
    """A teacher that outputs nan/inf is named as the cause (no --lr helps it)."""
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).reshape(len(logits), -1).any(1).sum())
        raise EdgekdError(f"teacher {index + 1} outputs nan or inf for {bad} of {len(logits)} "
                          "training images: the teacher is broken (check its weights, and that it "
                          "expects the data's normalisation), not the student's training")




def views_bytes(k: int, n_images: int, classes: int, teachers: int = 1) -> int:
    """Memory of K cached teacher views: each teacher's float32 logits (K, N, classes), the
    combined targets of the same shape, and the view parameters (two int64 offsets and a flip
    per image and view): ``K * N * (4 * classes * (teachers + 1) + 17)`` bytes."""
    return k * n_images * (4 * classes * (teachers + 1) + 17)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable``; None when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_views_memory(k: int, n_images: int, classes: int, teachers: int = 1) -> None:
    """Refuse ``--teacher-views K`` whose cache would take more than half the memory left,
    with the estimate (:func:`views_bytes`), before anything is allocated."""
    need = views_bytes(k, n_images, classes, teachers)
    free = available_memory()
    if free is None or need <= free // 2:
        return
    fit = max(0, (free // 2) // max(1, views_bytes(1, n_images, classes, teachers)))
    raise EdgekdError(f"--teacher-views {k} would cache about {need / 2**30:,.1f} GiB of teacher "
                      f"outputs ({k} views x {n_images} images x {classes} classes), more than half "
                      f"of the {free / 2**30:,.1f} GiB of memory available: give --teacher-views "
                      f"{min(fit, 8)} or fewer (0: the teacher runs on every batch)")


def teacher_views(teachers: list[nn.Module], fps: list[str], dataset: ImageDataset, data: TrainData,
                  aug: augment.Augment, config: TrainConfig, device: torch.device,
                  k: int) -> tuple[augment.AugParams, torch.Tensor]:
    """K augmented views per training image and the combined teacher targets on each:
    (params stacked view-major as (K*N,), targets (K, N, classes)) for the N training images
    of this split. The views are drawn once for the whole data set (seeded by ``seed``) and
    each teacher's logits on them are cached on disk like :func:`cached_teacher_targets`'
    (key: teacher, data, augmentation, K, seed), so every trial of a run shares one file and
    pays the K teacher passes once."""
    n_all = len(dataset.x_train)
    check_views_memory(k, n_all, dataset.num_classes, len(teachers))
    gen = epoch_generator(config.seed, -1)
    params = [augment.sample(aug, n_all, gen) for _ in range(k)]
    per_teacher = [_view_logits(t, fp, params, dataset, aug, data.pad_value, config, device)
                   for t, fp in zip(teachers, fps)]
    idx = torch.as_tensor(data.train_idx, dtype=torch.long)
    targets = torch.stack([losses.combine_teacher_logits([lt[v][idx] for lt in per_teacher],
                                                         config.ensemble, config.ensemble_temperature)
                           for v in range(k)])
    stacked = augment.AugParams(torch.cat([p.oy[idx] for p in params]), torch.cat([p.ox[idx] for p in params]),
                                torch.cat([p.flip[idx] for p in params]))
    return stacked, targets


def _view_logits(teacher: nn.Module, fp: str, params: list[augment.AugParams], dataset: ImageDataset,
                 aug: augment.Augment, pad_value: torch.Tensor, config: TrainConfig,
                 device: torch.device) -> torch.Tensor:
    """One teacher's logits (K, N_all, classes) on the views ``params``, cached on disk."""
    from edgekd.core.fileio import atomic_write_bytes
    from edgekd.inputs.data import array_fingerprint, eval_batch, to_tensor

    ds = dataset
    path = None
    cache_dir = logit_cache_dir(config)
    if cache_dir is not None:
        data_fp = array_fingerprint(ds.x_train, ds.normalization.to_dict())
        path = Path(cache_dir) / (f"views-{fp[:16]}-{data_fp[:16]}-{aug.kind}{aug.pad}-"
                                  f"k{len(params)}-s{config.seed}.npy")
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.shape[:2] == (len(params), len(ds.x_train)) and cached.dtype == np.float32:
                    return torch.from_numpy(cached)
            except (OSError, ValueError, EOFError):
                pass  # corrupt: recompute
    views = []
    started = time.monotonic()
    note(f"caching the teacher's outputs on {len(params)} augmented views of {len(ds.x_train):,} "
         "training images (once: every trial reuses them)")
    step = eval_batch(ds.input_shape, 512)  # one chunk of augmented images at a time, never the set
    with torch.no_grad(), autocast(device):
        for number, p in enumerate(params, 1):
            outs = []
            for i in range(0, len(ds.x_train), step):
                rows = torch.arange(i, min(i + step, len(ds.x_train)))
                x = augment.apply(to_tensor(ds.x_train[i:i + step], ds.normalization), aug, p[rows], pad_value)
                outs.append(teacher(x.to(device)).float().cpu())
            views.append(torch.cat(outs))
            spent = time.monotonic() - started
            note(f"teacher outputs: view {number}/{len(params)} ({spent:.0f} s, "
                 f"~{spent / number * (len(params) - number):.0f} s left)")
    logits = torch.stack(views)
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, logits.numpy(), allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
    return logits
