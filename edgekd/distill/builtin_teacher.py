"""The built-in teacher trained through the one trainer, and teacher loading that can train it.

:class:`~edgekd.inputs.builtin_teacher.BuiltinCNN` is trained by
:func:`edgekd.distill.trainer.train_student` with method ``scratch`` (cross-entropy on the
labels) and the recipe :class:`~edgekd.inputs.builtin_teacher.TeacherRecipe` (AdamW, warm-up
then cosine, seeded; no validation split, so the last epoch's weights are the teacher), then
cached by the inputs stage. There is no second training loop: the data order, optimiser,
schedule, checks and progress lines are the trainer's, and the teacher's test accuracy is the
trainer's :func:`~edgekd.distill.evaluate.accuracy`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgekd.core.progress import say
from edgekd.inputs import teachers as _teachers
from edgekd.inputs import builtin_teacher as _cache
from edgekd.inputs.builtin_teacher import (BuiltinCNN, TeacherRecipe, builtin_recipe,
                                           read_builtin_teacher, save_builtin_teacher)

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import ImageDataset, Normalization

__all__ = ["builtin_teacher", "train_builtin_teacher", "teacher_train_config", "builtin_teacher_path",
           "load_teacher", "model_accuracy"]


def teacher_train_config(recipe: TeacherRecipe, *, device: str = "auto") -> "TrainConfig":
    """The trainer's configuration for ``recipe``: method ``scratch``, AdamW, all training
    images (``val_fraction=0``), no teacher-logit cache (there is no teacher)."""
    from edgekd.distill.config import TrainConfig

    return TrainConfig(method="scratch", epochs=recipe.epochs, optimizer="adamw", lr=recipe.lr,
                       weight_decay=recipe.weight_decay, batch_size=recipe.batch_size,
                       seed=recipe.seed, val_fraction=0.0, max_train_samples=recipe.max_train_samples,
                       warmup_epochs=recipe.warmup_epochs, lr_floor=recipe.lr_floor, device=device,
                       use_cache=False)


def builtin_teacher_path(dataset: "ImageDataset", recipe: TeacherRecipe, *,
                         cache_dir: Path | None = None) -> Path:
    """The cache file of the teacher ``recipe`` trains on ``dataset``: keyed by the architecture,
    the data, the recipe and the trainer's whole configuration for it."""
    return _cache.builtin_teacher_path(dataset, recipe, cache_dir=cache_dir,
                                       training=teacher_train_config(recipe).to_dict())


def train_builtin_teacher(dataset: "ImageDataset", recipe: TeacherRecipe = TeacherRecipe(), *,
                          progress: bool = True) -> tuple[BuiltinCNN, dict[str, Any]]:
    """Train :class:`BuiltinCNN` on the dataset's train split through the trainer; returns
    (model on the CPU in eval mode, metrics {test_acc, seconds, train_samples, epochs}).
    Deterministic for a given seed on a given machine; the global RNG state is restored
    afterwards."""
    from edgekd.distill.trainer import train_student

    config = teacher_train_config(recipe)
    n_images = min(len(dataset.y_train), recipe.max_train_samples or len(dataset.y_train))
    say(progress, f"training the built-in teacher: {recipe.epochs} epochs on "
                  f"{n_images:,} images (once; it is cached)")
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix="edgekd-teacher-") as tmp:
        torch.manual_seed(recipe.seed)
        model = BuiltinCNN(dataset.input_shape, dataset.num_classes)
        result = train_student(model, [], dataset, config, Path(tmp), progress=progress)
    trained = result.model.cpu().eval()
    metrics = {"test_acc": result.test_acc, "seconds": round(result.seconds, 2),
               "train_samples": int(result.train_samples), "epochs": recipe.epochs}
    return trained, metrics


def builtin_teacher(dataset: "ImageDataset | None" = None, *, cache_dir: Path | None = None,
                    epochs: int | None = None, progress: bool = True,
                    max_train_samples: int | None = None) -> nn.Module:
    """The built-in teacher for ``dataset`` (default: the shipped MNIST subset), in eval mode.

    Read from ``<cache_dir>/teachers/builtin-cnn-<hash>.pt`` when present, else trained
    (:func:`train_builtin_teacher`) and saved there atomically. ``cache_dir`` defaults to
    :func:`edgekd.core.cache.cache_root`; ``epochs`` and ``max_train_samples`` override the
    recipe (tests use a tiny budget) and are part of the cache key.
    """
    from edgekd.core import fmt
    from edgekd.inputs.loaders import load_dataset

    dataset = dataset if dataset is not None else load_dataset()
    recipe = builtin_recipe(epochs, max_train_samples)
    path = builtin_teacher_path(dataset, recipe, cache_dir=cache_dir)
    cached = read_builtin_teacher(path, progress=progress)
    if cached is not None:
        return cached
    model, metrics = train_builtin_teacher(dataset, recipe, progress=progress)
    save_builtin_teacher(path, model, dataset, recipe, metrics)
    say(progress, f"built-in teacher: test accuracy {fmt.percent(metrics['test_acc'])} "
                  f"({metrics['seconds']:.0f} s), cached in {path}")
    return model


def load_teacher(source: str | None, **kwargs: Any) -> nn.Module:
    """:func:`edgekd.inputs.teachers.load_teacher` (same arguments) with the built-in teacher
    trained here when the source is omitted or ``"builtin"``."""
    return _teachers.load_teacher(source, builtin=lambda dataset: builtin_teacher(dataset), **kwargs)


def model_accuracy(model: nn.Module, x_uint8: np.ndarray, y: np.ndarray, norm: "Normalization",
                   batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on uint8 images, normalised with ``norm``: the trainer's
    :func:`~edgekd.distill.evaluate.predict_logits` and :func:`~edgekd.distill.evaluate.accuracy`."""
    from edgekd.distill.evaluate import accuracy, predict_logits
    from edgekd.inputs.data import to_tensor

    logits = predict_logits(model, to_tensor(x_uint8, norm), batch_size=batch_size)
    return accuracy(logits, torch.as_tensor(y, dtype=torch.long))
