"""Checks ``edgekd compress`` runs before anything is trained or written.

A run that would fail late (the fitnet baseline after the whole search, the ONNX parity check
after training, an output folder that is a file) wastes the search and leaves a run.json a
corrected rerun then collides with. ``compress`` calls these checks, in this order, and each raises an
:class:`~edgekd.errors.EdgekdError` (one line, exit status 2) at the first failure:

1. **output folder**: not an existing file; its nearest existing parent is a writable folder.
2. **calibration**: a ``--calibration`` file loads and is an edgekd calibration.
3. **hint taps**: for every method the run trains with a hint stage (any method of the
   registry with one: fitnet, fitnet-dkd, fitnet-lskd, ...; or fitnet as a ``--baselines`` arm) the teacher has a tappable hint layer and every shortlisted
   student pairs with it (:func:`edgekd.distill.pairing.pair_layers`). A TorchScript teacher
   hides its layers: it is refused here, not after the search.
4. **parity sample**: the data has at least ``parity_samples`` images for the ONNX parity
   check (test images first, topped up from the training split); ``--parity-samples N``
   states a smaller sample; by default a smaller data set is checked on all its images.
5. **trial settings**: every trial's TrainConfig passes its checks; ``--teacher-views K``
   fits in memory.
6. **teacher accuracy**: the teacher's balanced accuracy (mean per-class recall, so that always
   answering the commonest class of an imbalanced set scores chance too) on the validation
   split the trials hold out. Within :data:`CHANCE_SIGMAS` binomial standard errors of chance
   (``1/K`` for the ``K`` classes present) it is refused: a teacher fed with the wrong
   normalisation, with its classes in another order, or loaded into the wrong architecture
   scores there, and every student distilled from it would too. Below :data:`LOW_SHARE` of
   the way from chance to 100% it is one warning line.

Budget feasibility (some student within the MACs/latency budget) is checked by the search
itself (:func:`edgekd.search.search_candidates`), which runs before this and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

    from edgekd.inputs.data import ImageDataset
    from edgekd.inputs.profiles import DeviceProfile
    from edgekd.search.space import StudentSpec

__all__ = ["check_out", "check_calibration", "check_hint_taps", "check_parity_sample",
           "check_teacher_accuracy", "check_teacher_views", "check_train_configs",
           "hint_methods"]

#: Standard errors above chance under which a teacher's balanced validation accuracy is refused.
CHANCE_SIGMAS = 3.0
#: Share of the way from chance to 100% under which a teacher gets a warning line.
LOW_SHARE = 0.25
#: Validation images the teacher is checked on at most (the first of the split: bounded time at 224 px).
TEACHER_CHECK_IMAGES = 1000


def hint_methods(methods: Iterable[str]) -> list[str]:
    """Those of ``methods`` whose training taps the teacher's intermediate layers (a hint stage
    in the method registry), sorted; unknown names are left to the method check."""
    from edgekd.distill.methods import METHODS

    return sorted(m for m in set(methods) if m in METHODS and METHODS[m].has_hint_stage)


def check_out(out: Path) -> None:
    """The output folder can be created (or is a folder) and written to."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgekdError(f"output '{out}' is a file, not a folder: pass another --out")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise EdgekdError(f"cannot write into '{parent}' (for --out '{out}'): pass an --out "
                          "in a folder you can write to")


def check_calibration(path: str | Path | None, profile: DeviceProfile) -> None:
    """A ``--calibration`` file loads the way the search will read it (a calibration or a
    kernel table, fitted for ``profile``)."""
    if path is None:
        return
    from edgekd.search.search import _resolve_calibration

    _resolve_calibration(path, profile, None)


def check_hint_taps(teacher: nn.Module, specs: Iterable[StudentSpec], input_shape: tuple[int, ...],
                    methods: Iterable[str]) -> None:
    """Every hint method can pair the teacher's hint layer with each student's guided layer."""
    needed = hint_methods(methods)
    if not needed:
        return
    from edgekd.distill.hints import list_layers
    from edgekd.distill.pairing import pair_layers
    from edgekd.search.space import build

    if not list_layers(teacher, input_shape):
        kind = "a TorchScript model" if _is_script(teacher) else "this model"
        raise EdgekdError(f"--method {needed[0]} (or its --baselines arm) taps the teacher's layers, "
                          f"but {kind} exposes none: use --method kd (without --baselines), or give "
                          "the teacher as a state_dict with --arch, or as a torch.export .pt2")
    for spec in specs:
        pair_layers(teacher, build(spec).eval(), input_shape)


def check_parity_sample(dataset: ImageDataset, needed: int | None) -> tuple[int, str | None]:
    """The images of the ONNX parity check (test split topped up from the train split) and a
    line to say when the default adapted to a smaller data set: ``needed`` None means
    :data:`~edgekd.ship.export.MIN_PARITY_SAMPLES`, or every image when the data has fewer.
    An explicit ``needed`` the data cannot meet is refused."""
    from edgekd.ship.export import MIN_PARITY_SAMPLES

    have = len(dataset.y_test) + len(dataset.y_train)
    if needed is None:
        if have >= MIN_PARITY_SAMPLES:
            return MIN_PARITY_SAMPLES, None
        return have, (f"ONNX parity check on all {have} images of the data (fewer than the "
                      f"default {MIN_PARITY_SAMPLES})")
    if have < needed:
        raise EdgekdError(f"the data has {have} images but the ONNX parity check takes {needed}: "
                          f"give more test images, or state a smaller sample with --parity-samples {have}")
    return needed, None


def check_train_configs(trials: Iterable[dict], classes: int) -> None:
    """Every trial's training settings pass TrainConfig's checks (``--hint-epochs 0`` without
    ``--hint-mode joint``, ...) before run.json exists, so the corrected command is not then
    refused as "a different run"; the data has the two classes any classifier (and decoupled
    KD's non-target term) needs."""
    from edgekd.distill.config import TrainConfig

    for values in trials:
        TrainConfig(**values)
    if classes < 2:
        raise EdgekdError(f"the data has {classes} class: a classifier (and the distillation of "
                          "its non-target classes) needs at least 2; give data with two or more "
                          "classes")


def check_teacher_views(dataset: ImageDataset, views: int | None, augment: str | None) -> None:
    """``--teacher-views K`` fits in memory (:func:`edgekd.distill.targets.check_views_memory`)."""
    if not views or augment == "none":
        return
    from edgekd.distill.targets import check_views_memory

    check_views_memory(views, len(dataset.x_train), dataset.num_classes)


def balanced_accuracy(pred: "np.ndarray", y: "np.ndarray") -> float:
    """Mean per-class recall over the classes present in ``y``."""
    import numpy as np

    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def check_teacher_accuracy(teacher: nn.Module, dataset: ImageDataset, *, seed: int, val_fraction: float,
                           warn: Callable[[str], None]) -> dict[str, float]:
    """Refuse a teacher at chance on the validation split, warn about a weak one (rule 5 of the
    module docstring); returns its accuracy and balanced accuracy there."""
    import math

    import numpy as np

    from edgekd.distill.evaluate import predict_logits
    from edgekd.inputs.data import split_train_val, to_tensor

    n = len(dataset.y_train)
    if val_fraction > 0:
        idx = split_train_val(n, val_fraction, seed)[1][:TEACHER_CHECK_IMAGES]
        x, y, split = dataset.x_train[idx], dataset.y_train[idx], "validation split"
    else:
        x, y, split = dataset.x_test[:TEACHER_CHECK_IMAGES], dataset.y_test[:TEACHER_CHECK_IMAGES], "test split"
    pred = predict_logits(teacher, to_tensor(x, dataset.normalization), batch_size=64).argmax(1).numpy()
    acc, balanced = float((pred == y).mean()), balanced_accuracy(pred, y)
    chance = 1.0 / len(np.unique(y))
    # with very few validation images the band is capped: refuse only below halfway to 100%
    band = min(CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / len(y)), (1 - chance) / 2)
    norm = dataset.normalization
    fed = f"mean {list(norm.mean)}, std {list(norm.std)}"
    if len(np.unique(y)) > 1 and balanced <= chance + band:
        raise EdgekdError(
            f"the teacher is at chance on the {split} ({balanced:.1%} balanced accuracy on {len(y)} "
            f"images, chance {chance:.1%}): check that it is fed as it was trained (--normalize, now "
            f"{fed}; imagenet for torchvision's pretrained weights, none for pixels in 0..1), that the "
            "data's class order is the teacher's, and that --arch is the architecture it was trained as")
    if balanced < chance + LOW_SHARE * (1 - chance):
        warn(f"warning: the teacher scores only {balanced:.1%} balanced accuracy ({acc:.1%} top-1) on "
             f"the {split} (chance {chance:.1%}); if it did better where it was trained, check "
             "--normalize and the class order")
    return {"val_acc": acc, "val_balanced_acc": balanced}


def _is_script(model: nn.Module) -> bool:
    import torch

    return isinstance(model, torch.jit.ScriptModule)
