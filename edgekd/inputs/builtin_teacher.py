"""The built-in teacher as an input: its architecture (:class:`BuiltinCNN`), its training recipe
(:class:`TeacherRecipe`, the one place it is defined) and its cache file.

The built-in teacher is a wide, shallow CNN trained on the data (by default the shipped MNIST
subset) in about a minute on two CPU cores and cached in
``<cache>/teachers/builtin-cnn-<hash>.pt``, the hash covering the architecture, the data
fingerprint and the training recipe (see :mod:`edgekd.core.cache` for ``<cache>``). It is
trained by the one trainer (:mod:`edgekd.distill.builtin_teacher`); this stage only reads and
writes the cache, so inputs never imports the trainer.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from edgekd.core.cache import cache_root
from edgekd.core.checkpoint import load_weights
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_torch_save, sha256_json
from edgekd.core.progress import say

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.data import ImageDataset

__all__ = ["BUILTIN", "BUILTIN_ARCH", "BUILTIN_FORMAT", "BuiltinCNN", "TeacherRecipe",
           "builtin_recipe", "builtin_teacher_path", "read_builtin_teacher", "save_builtin_teacher",
           "model_from_payload"]

BUILTIN = "builtin"
BUILTIN_ARCH = "edgekd:builtin-cnn"
BUILTIN_FORMAT = "edgekd.builtin-teacher/1"


class BuiltinCNN(nn.Module):
    """The built-in teacher: a wide, shallow CNN.

    ``features`` is three blocks conv3x3 -> BatchNorm -> ReLU -> maxpool2 of widths
    (32, 64, 128), so a 28x28 input goes 28 -> 14 -> 7 -> 3; ``head`` is
    flatten -> linear(128*3*3, 256) -> ReLU -> dropout -> linear(256, classes).
    At 1x28x28 and 10 classes: 0.39M parameters, 7.7M multiply-accumulates. Its stage ends
    (the FitNets hint candidates of :mod:`edgekd.distill.pairing`) include ``features.1.2``,
    the 64-channel map of the middle block before its pooling.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 widths: Sequence[int] = (32, 64, 128), hidden: int = 256,
                 dropout: float = 0.25) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in input_shape)
        scale = 2 ** len(widths)
        if height < scale or width < scale:
            raise EdgekdError(f"the built-in teacher needs images of at least {scale}x{scale}, "
                              f"got {height}x{width}: use larger images or your own teacher")
        blocks = []
        for out_channels in widths:
            blocks.append(nn.Sequential(
                nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        flat = channels * (height // scale) * (width // scale)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.config = {"input_shape": [int(v) for v in input_shape], "num_classes": int(num_classes),
                       "widths": [int(w) for w in widths], "hidden": int(hidden),
                       "dropout": float(dropout)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class TeacherRecipe:
    """How the built-in teacher is trained (by :func:`edgekd.distill.trainer.train_student`,
    method ``scratch``: cross-entropy on the labels): AdamW, a linear warm-up of
    ``warmup_epochs`` (at most a fifth of the stage, here the whole run) then a cosine down to ``lr_floor * lr``
    (Loshchilov & Hutter 2017), seeded initialisation and data order, all training images
    (no validation split: the last epoch's weights are the teacher). ``max_train_samples``
    (tests) trains on a seeded subset. Every field is part of the cache key."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    max_train_samples: int | None = None
    warmup_epochs: float = 0.6
    lr_floor: float = 0.0
    #: what trains it: the one trainer (the old private loop had no such field, so its cache
    #: files are never mistaken for these)
    trainer: str = "edgekd.distill.trainer/scratch"


def builtin_recipe(epochs: int | None = None, max_train_samples: int | None = None) -> TeacherRecipe:
    """The default recipe with ``epochs`` and ``max_train_samples`` overridden (tests use a
    tiny budget)."""
    base = asdict(TeacherRecipe())
    return TeacherRecipe(**{**base, **({"epochs": epochs} if epochs is not None else {}),
                            "max_train_samples": max_train_samples})


def builtin_teacher_path(dataset: "ImageDataset", recipe: TeacherRecipe, *, training: dict[str, Any],
                         cache_dir: Path | None = None) -> Path:
    """Cache path keyed by the architecture, the data fingerprint, the recipe and ``training``,
    the trainer's whole configuration for it (so a changed trainer default is a new teacher,
    not a stale cache hit); :func:`edgekd.distill.builtin_teacher.builtin_teacher_path` fills it."""
    arch = BuiltinCNN(dataset.input_shape, dataset.num_classes).config
    key = sha256_json({"format": BUILTIN_FORMAT, "arch": arch, "data": dataset.fingerprint(),
                       "recipe": asdict(recipe), "training": training})
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "teachers" / f"builtin-cnn-{key[:16]}.pt"


def read_builtin_teacher(path: Path, *, progress: bool = True) -> BuiltinCNN | None:
    """The cached teacher at ``path`` in eval mode; None when there is none or it is unreadable
    (then it is trained again)."""
    if not path.is_file():
        return None
    try:
        return model_from_payload(torch.load(path, map_location="cpu", weights_only=True), path)
    except (EdgekdError, RuntimeError, OSError, EOFError, ValueError, KeyError,
            zipfile.BadZipFile) as error:
        say(progress, f"built-in teacher cache {path} is unreadable ({error}); retraining")
        return None


def save_builtin_teacher(path: Path, model: BuiltinCNN, dataset: "ImageDataset",
                         recipe: TeacherRecipe, metrics: dict[str, Any]) -> None:
    """Write the cache file atomically: architecture, weights, classes, normalisation, data
    fingerprint, recipe and training metrics (a teacher file ``--teacher`` also reads)."""
    atomic_torch_save(path, {"format": BUILTIN_FORMAT, "arch": model.config,
                             "state_dict": model.state_dict(), "classes": list(dataset.classes),
                             "normalization": dataset.normalization.to_dict(),
                             "data_fingerprint": dataset.fingerprint(), "recipe": asdict(recipe),
                             "metrics": metrics})


def model_from_payload(payload: dict, path: Path) -> BuiltinCNN:
    """Rebuild :class:`BuiltinCNN` from its cache-file payload."""
    if payload.get("format") != BUILTIN_FORMAT:
        raise EdgekdError(f"'{path}' is not a built-in teacher file: delete it to retrain")
    model = BuiltinCNN(**payload["arch"])
    load_weights(model, payload["state_dict"], what=f"teacher '{path}'", arch=BUILTIN_ARCH)
    return model.eval()
