"""After selection: the shipped student trained again on every labelled image it may use.

Choosing between students and arms needs images they did not train on, so every trial of
``compress`` holds out a validation split (``val_fraction`` of the training images). Once the
arm is chosen that split has done its job, and a plain training script would train on every
image it has. :func:`retrain_stage` trains the chosen arm's student again, from a fresh
initialisation, with the arm's own TrainConfig (method, options, schedule, epochs: read back
from its result.json) on the training images plus the validation split::

    images = train + val,   train = min(max_train_samples, n - val),   val = round(n * val_fraction)

(``val_fraction = 0``; with ``max_train_samples`` the cap becomes ``images``, drawn from all
``n`` training images). Without a validation split the trainer keeps the last epoch, as a plain
recipe does. The teacher's cached logits and augmented views are computed on all training images
and indexed (edgekd.distill.targets), so the validation images get their targets like the rest.
The test images are never trained on.

With ``--val-data`` the trials already trained on every training image and selected on images
the teacher never saw, which stay the selection set: there is nothing to add, and the chosen arm
ships as it is. The retrained student lives in ``trials/ARM-all`` and is recorded in
halving.jsonl under :data:`RETRAIN_RUNG`, so a kill during it resumes from its last epoch and a
finished one is never trained again.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.runfolder import FINISHED_RESULT, RESULT_JSON, SPEC, SPEC_JSON
from edgekd.run.halving import TrialJob, TrialPayload

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import ImageDataset
    from edgekd.run.halving import Executor
    from edgekd.run.rundir import RunDir

__all__ = ["RETRAIN_RUNG", "RETRAIN_SUFFIX", "retrain_config", "retrain_entry", "retrain_stage"]

#: The rung under which the retrained student is recorded in halving.jsonl (baselines: -1).
RETRAIN_RUNG = -2
#: The retrained student's trial folder is the chosen arm's with this suffix.
RETRAIN_SUFFIX = "-all"


def retrain_config(dataset: ImageDataset, arm: TrainConfig) -> tuple[TrainConfig, int, int] | None:
    """``(config, images, validation images)`` of the retraining of an arm trained with ``arm``
    on ``dataset`` (formula in the module docstring); None when the arm held no split out
    (``--val-data``, or ``val_fraction`` 0): it trained on every image it may use already."""
    from edgekd.inputs.data import split_train_val

    given_val = dataset.x_val is not None and dataset.y_val is not None
    if given_val or arm.val_fraction <= 0:
        return None
    n = len(dataset.y_train)
    n_val = len(split_train_val(n, arm.val_fraction, arm.seed)[1])
    train = n - n_val if arm.max_train_samples is None else min(arm.max_train_samples, n - n_val)
    images = train + n_val
    config = dataclasses.replace(arm, val_fraction=0.0, max_train_samples=None if images >= n else images)
    return config, images, n_val


def retrain_stage(run: RunDir, dataset: ImageDataset, arm_trial: str, candidate: str, executor: Executor,
                  note: Callable[[str], None] = lambda text: None) -> dict[str, Any] | None:
    """Train ``arm_trial``'s student again on the training plus validation images (module
    docstring) through ``executor``, unless halving.jsonl records it finished; returns
    outcome.json's ``final_retrain`` record, None when there is nothing to add."""
    from edgekd.distill.config import TrainConfig

    arm = run.read(FINISHED_RESULT, run.trial_file(arm_trial, RESULT_JSON))
    planned = retrain_config(dataset, TrainConfig.from_dict(arm["config"]))
    if planned is None:
        return None
    config, images, n_val = planned
    folder = f"{arm_trial}{RETRAIN_SUFFIX}"
    result = run.rung_result(RETRAIN_RUNG, folder, config.epochs)
    if result is None:
        note(f"retraining the chosen arm {arm_trial} ({config.method}, {config.epochs} epochs) on its "
             f"training images + the {n_val} validation images ({images} images) into trials/{folder}")
        spec = run.read(SPEC, run.trial_file(arm_trial, SPEC_JSON))
        found: dict[str, Any] = {}

        def done(job: TrialJob, value: dict) -> None:
            run.record_rung(RETRAIN_RUNG, job.trial_id, job.epochs, value, folder=job.folder)
            found.update(value)

        executor.run([TrialJob(folder, RETRAIN_RUNG, config.epochs, TrialPayload(spec, config))], done)
        result = found
    return {"trial": folder, "from": arm_trial, "candidate": candidate, "method": config.method,
            "images": int(result["train_samples"]), "validation_images": n_val,
            "arm_images": int(arm.get("train_samples") or 0), "test_acc": float(result["test_acc"]),
            "arm_test_acc": float(arm["test_acc"]), "arm_val_acc": arm.get("val_acc")}


def retrain_entry(record: dict[str, Any]) -> dict[str, Any]:
    """outcome.json's ``trials`` entry of the retrained student (role ``retrained``)."""
    return {"trial": record["trial"], "candidate": record["candidate"], "method": record["method"],
            "role": "retrained", "from": record["from"]}
