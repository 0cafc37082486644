"""The tensors a trainer trains on: the train/validation/test split as normalised float
tensors, and the per-epoch random generator (data order and augmentation of epoch ``e``
come from ``(seed, e)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import ImageDataset

__all__ = ["TrainData", "epoch_generator", "prepare_data"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch`` (data order, augmentation); ``epoch=-1``: cached views."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 17)


@dataclass
class TrainData:
    """Float tensors of the split, plus (optionally) the teacher targets of the train part."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    train_idx: np.ndarray
    pad_value: torch.Tensor


def prepare_data(dataset: ImageDataset, config: TrainConfig) -> TrainData:
    """Split ``dataset`` (validation part by ``val_fraction``/``seed``, optionally capped at
    ``max_train_samples``) into normalised float tensors."""
    from edgekd.inputs.data import split_train_val, to_tensor

    n = len(dataset.y_train)
    if config.val_fraction > 0:
        train_idx, val_idx = split_train_val(n, config.val_fraction, config.seed)
    else:
        train_idx, val_idx = np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if config.max_train_samples is not None and config.max_train_samples < len(train_idx):
        rng = np.random.default_rng(config.seed)
        train_idx = np.sort(rng.choice(train_idx, config.max_train_samples, replace=False))
    norm = dataset.normalization
    mean = torch.tensor(norm.mean, dtype=torch.float32)
    std = torch.tensor(norm.std, dtype=torch.float32)
    return TrainData(
        x_train=to_tensor(dataset.x_train[train_idx], norm),
        y_train=torch.as_tensor(dataset.y_train[train_idx], dtype=torch.long),
        x_val=to_tensor(dataset.x_train[val_idx], norm) if len(val_idx) else
        torch.zeros((0, *dataset.input_shape)),
        y_val=torch.as_tensor(dataset.y_train[val_idx], dtype=torch.long),
        x_test=to_tensor(dataset.x_test, norm),
        y_test=torch.as_tensor(dataset.y_test, dtype=torch.long),
        train_idx=train_idx, pad_value=-mean / std)
