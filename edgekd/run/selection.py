"""Choosing between a student's arms (distilled vs scratch) on a validation split the teacher
may have seen.

A user's teacher was usually trained on every training image, so the validation split that
compress holds out of them is part of the teacher's training set: the teacher is more accurate
there than on images it never saw, and a distilled student inherits part of that fit (its
soft targets on the validation images are the teacher's memorised ones). Validation accuracy
then favours the distilled arms over scratch by an amount that has nothing to do with how
they generalise.

:func:`teacher_bias` measures the teacher on the validation split and on the test split before
training. The split is *clearly* favoured when the gap exceeds two standard errors of the
difference of two proportions and half a point::

    gap = acc_val - acc_test,   se = sqrt(p_v (1 - p_v) / n_v + p_t (1 - p_t) / n_t)
    biased = gap > max(2 se, 0.005)

When the split is biased and no ``--val-data`` was given, :func:`carve_selection_split`
takes a seeded half of the test images, which the teacher never saw, as the validation images
of the whole run (every selection: rungs, arms, the supernet's sub-networks) and keeps the other
half as the test images every reported figure is measured on. The trials then train on every
training image. Selection never sees the images the report's accuracy comes from::

    selection = test[perm[:n // 2]],   report = test[perm[n // 2:]],   perm = permutation(n, seed)

A test set too small to halve (fewer than ``2 * MIN_CARVED`` images) keeps the biased split,
and :func:`choose_arm` then scores each arm by its validation accuracy minus, for an arm that
learns from the teacher, the teacher's whole measured gap: a distilled arm wins only when it
beats scratch by more than the bias could explain (a student cannot inherit more of the
teacher's fit to the split than the teacher has). The handicap is an upper bound: a teacher that
fits its training images (gap of 10-20 points) would leave scratch chosen whatever distillation
gains, which is why carving comes first. With ``--val-data`` (images the teacher never saw) or a
carved split the arms are compared as they are.

:func:`teacher_clearly_stronger` decides whether the scratch arm must be trained at all: when
the teacher is not at least :data:`STRONGER_MARGIN` above what the student reached on
validation, distillation has little to transfer and scratch stays in the running.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekd.inputs.data import ImageDataset
    from edgekd.run.rundir import RunDir
    from edgekd.run.setup import Inputs

__all__ = ["MIN_CARVED", "MIN_GAP", "STRONGER_MARGIN", "best_arm", "bias_line", "carve_selection_split",
           "choose_arm", "measure_teacher_bias", "select_on_unseen_images", "teacher_bias",
           "teacher_clearly_stronger"]

#: The smallest validation-over-test gap of the teacher that counts as bias (a fraction).
MIN_GAP = 0.005
#: The teacher is "clearly stronger" than a student when its accuracy on images it never saw
#: (the test split) is at least this much above the student's validation accuracy.
STRONGER_MARGIN = 0.02
#: The fewest images each half needs for the test images to be halved into selection and report.
MIN_CARVED = 100


def teacher_bias(teacher: nn.Module, dataset: ImageDataset, val_fraction: float, seed: int) -> dict[str, Any]:
    """The teacher's top-1 on the validation images a trial selects on (``--val-data``'s, or
    the ``val_fraction`` split of the training images with ``seed``) and on the test images,
    their gap, its standard error and whether the split is clearly favoured (module docstring)."""
    import torch

    from edgekd.distill.evaluate import accuracy, predict_logits
    from edgekd.inputs.data import split_train_val, to_tensor

    norm = dataset.normalization
    if dataset.x_val is not None and dataset.y_val is not None:
        x_val, y_val, source = dataset.x_val, dataset.y_val, "given"
    else:
        _, val_idx = split_train_val(len(dataset.y_train), val_fraction, seed)
        x_val, y_val, source = dataset.x_train[val_idx], dataset.y_train[val_idx], "held out of the training images"
    teacher = teacher.eval().to("cpu")

    def top1(x: Any, y: Any) -> float:
        return accuracy(predict_logits(teacher, to_tensor(x, norm), device="cpu"),
                        torch.as_tensor(y, dtype=torch.long))

    val, test = top1(x_val, y_val), top1(dataset.x_test, dataset.y_test)
    n_val, n_test = len(y_val), len(dataset.y_test)
    se = math.sqrt(val * (1 - val) / n_val + test * (1 - test) / n_test)
    gap = val - test
    return {"val": val, "test": test, "n_val": n_val, "n_test": n_test, "gap": gap, "se": se,
            "val_source": source, "biased": gap > max(2 * se, MIN_GAP)}


def bias_line(bias: dict[str, Any]) -> str | None:
    """The one-line warning for a biased split (None when it is not), saying what selection
    does about it (a carved split, or the handicap)."""
    if not bias.get("biased"):
        return None
    seen = (f"warning: the teacher scores {100 * bias['val']:.2f}% on the validation images and "
            f"{100 * bias['test']:.2f}% on the test images: it has seen the validation images, so choosing "
            "students by them favours distillation; ")
    if carved := bias.get("carved"):
        return seen + (f"students are selected on {carved['selection']} of the test images instead (a seeded "
                       f"half it never saw) and every test figure is measured on the other {carved['report']} "
                       "(give --val-data with images the teacher never saw to keep the test set whole)")
    return seen + (f"arms that learn from the teacher are handicapped by its {100 * bias['gap']:.2f}-point gap "
                   "(give --val-data with images the teacher never saw to select without it)")


def carve_selection_split(dataset: ImageDataset, bias: dict[str, Any], seed: int) -> ImageDataset:
    """``dataset`` with a seeded half of its test images as the validation images and the other
    half as its test images (module docstring) when ``bias`` is biased, no validation images
    were given and each half gets at least :data:`MIN_CARVED` images; else ``dataset``.
    Records the halves' sizes in ``bias["carved"]``."""
    import dataclasses

    import numpy as np

    n = len(dataset.y_test)
    given = dataset.x_val is not None and dataset.y_val is not None
    if not bias.get("biased") or given or n < 2 * MIN_CARVED:
        return dataset
    order = np.random.default_rng(seed).permutation(n)
    selection, report = np.sort(order[:n // 2]), np.sort(order[n // 2:])
    bias["carved"] = {"selection": len(selection), "report": len(report), "seed": seed}
    return dataclasses.replace(dataset, x_val=dataset.x_test[selection], y_val=dataset.y_test[selection],
                               x_test=dataset.x_test[report], y_test=dataset.y_test[report])


def choose_arm(val_accs: dict[str, float | None], uses_teacher: dict[str, bool],
               bias: dict[str, Any] | None) -> tuple[str, dict[str, float]]:
    """``(method, scores)``: the arm with the best score, ``val - gap`` for an arm that uses the
    teacher when the split is biased and was not carved, ``val`` otherwise; ties go to the first
    listed; an arm without a validation accuracy scores -inf."""
    handicap = bias["gap"] if bias and bias.get("biased") and not bias.get("carved") else 0.0
    scores = {m: (float("-inf") if v is None or v != v else float(v) - (handicap if uses_teacher[m] else 0.0))
              for m, v in val_accs.items()}
    best = max(scores, key=lambda m: (scores[m], -list(scores).index(m)))
    return best, scores


def teacher_clearly_stronger(bias: dict[str, Any], student_val: float | None) -> bool:
    """Whether the teacher's test accuracy is at least :data:`STRONGER_MARGIN` above the
    student's validation accuracy (the student's figure is, if anything, inflated by the
    split, so the rule errs toward training the scratch arm)."""
    if student_val is None or student_val != student_val:
        return False
    return bias["test"] - float(student_val) >= STRONGER_MARGIN


def measure_teacher_bias(teacher: nn.Module, dataset: ImageDataset, seed: int) -> dict[str, Any]:
    """:func:`teacher_bias` on the split a compress trial validates on (TrainConfig's
    ``val_fraction``, the run's ``seed``)."""
    from edgekd.distill.config import TrainConfig

    return teacher_bias(teacher, dataset, TrainConfig.val_fraction, seed)


def select_on_unseen_images(inputs: Inputs, seed: int) -> list[str]:
    """Measure the teacher's bias (:func:`measure_teacher_bias`) into ``inputs.teacher_bias`` and,
    when it is biased, make the carved split (:func:`carve_selection_split`) the run's data;
    returns the warning line (:func:`bias_line`), if any. compress calls it after its checks, so
    a refused command costs no teacher pass, and before the run's identity, which the carve changes."""
    inputs.teacher_bias = bias = measure_teacher_bias(inputs.teacher, inputs.dataset, seed)
    inputs.dataset = carve_selection_split(inputs.dataset, bias, seed)
    line = bias_line(bias)
    return [line] if line else []


def best_arm(run: RunDir, trials: dict[str, str], bias: dict[str, Any] | None = None
             ) -> tuple[str, str, dict[str, float]]:
    """(method, trial, scores) of the arm :func:`choose_arm` picks among the trials of one
    architecture (method -> trial, the search's method first) from their result.json."""
    from edgekd.core.runfolder import RESULT, RESULT_JSON
    from edgekd.distill.methods import get_method

    vals = {m: run.read(RESULT, run.trial_file(t, RESULT_JSON))["val_acc"] for m, t in trials.items()}
    method, scores = choose_arm(vals, {m: get_method(m).uses_teacher for m in trials}, bias)
    return method, trials[method], scores
