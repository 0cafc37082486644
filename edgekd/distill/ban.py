"""Born-again networks (Furlanello et al. 2018), the ``ban`` method's driver: ``generations``
students of the same architecture in ``out_dir/gen{g}``; generation 1 learns with ``kd`` from
the given teachers (or with ``scratch`` when there are none, the paper's label-trained first
model), generation ``g > 1`` with ``kd`` from generation ``g - 1``. The result reports every
generation and the ensemble of all generations (averaged logits)."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from edgekd.core.checkpoint import read_checkpoint
from edgekd.core.fileio import append_jsonl, atomic_torch_save, atomic_write_json, sha256_file
from edgekd.core.runfolder import CHECKPOINT_PT, METRICS_JSONL, RESULT_JSON
from edgekd.core.progress import say
from edgekd.distill.config import TrainConfig, TrainResult
from edgekd.distill.evaluate import accuracy, predict_logits
from edgekd.distill.trainer import train_student
from edgekd.distill.trainset import prepare_data

if TYPE_CHECKING:
    from edgekd.inputs.data import ImageDataset
    from edgekd.search.space import StudentSpec

__all__ = ["train_ban", "reinitialised"]


def reinitialised(student: nn.Module, seed: int) -> nn.Module:
    """A copy of ``student`` with every submodule's ``reset_parameters()`` called under
    ``torch.manual_seed(seed)`` (parameters of a module without one keep their values)."""
    model = copy.deepcopy(student)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model


def train_ban(student: StudentSpec | nn.Module, teachers: list[nn.Module], dataset: ImageDataset,
              config: TrainConfig, out_dir: Path, teacher_fps: list[str] | None, progress: bool) -> TrainResult:
    """Train ``config.generations`` born-again generations (module docstring) into ``out_dir``."""
    started = time.monotonic()
    gens: list[dict[str, Any]] = []
    models: list[nn.Module] = []
    current, fps = list(teachers), teacher_fps
    seconds = 0.0
    for g in range(1, config.generations + 1):
        method = "kd" if current else "scratch"
        # each generation its own seed (init and data order); the validation split stays seed's
        gen_cfg = replace(config.for_method(method), seed_offset=config.seed_offset + g - 1)
        say(progress, f"born-again generation {g}/{config.generations} ({method})")
        fresh = reinitialised(student, gen_cfg.seed + gen_cfg.seed_offset) if isinstance(student, nn.Module) else student
        result = train_student(fresh, current, dataset, gen_cfg, out_dir / f"gen{g}",
                               teacher_fps=fps, progress=progress)
        model = result.model.to("cpu").eval()
        models.append(model)
        seconds += result.seconds
        gens.append({"generation": g, "method": method, "seed": config.seed + gen_cfg.seed_offset,
                     "val_acc": result.val_acc,
                     "test_acc": result.test_acc, "epochs_done": result.epochs_done,
                     "checkpoint": str(result.checkpoint)})
        current, fps = [model], [sha256_file(result.checkpoint)]
    data = prepare_data(dataset, config.for_method("kd"))

    def ensemble_acc(x: torch.Tensor, y: torch.Tensor) -> float | None:
        if len(y) == 0:
            return None
        return accuracy(torch.stack([predict_logits(m, x) for m in models]).mean(0), y)

    last = read_checkpoint(gens[-1]["checkpoint"])
    result = TrainResult(
        method="ban", val_acc=gens[-1]["val_acc"], test_acc=gens[-1]["test_acc"],
        epochs_done=gens[-1]["epochs_done"], checkpoint=out_dir / CHECKPOINT_PT,
        seconds=round(seconds, 3), train_samples=len(data.y_train), config=config.to_dict(),
        generations=gens, ensemble_val_acc=ensemble_acc(data.x_val, data.y_val),
        ensemble_test_acc=ensemble_acc(data.x_test, data.y_test), model=models[-1])
    last["method"] = "ban"
    last["metrics"] = {**last["metrics"], "generations": gens,
                       "ensemble_test_acc": result.ensemble_test_acc,
                       "ensemble_val_acc": result.ensemble_val_acc}
    last["extra"] = {}  # the generations' folders keep their own training state
    atomic_torch_save(out_dir / CHECKPOINT_PT, last)
    atomic_write_json(out_dir / RESULT_JSON, result.to_dict())
    append_jsonl(out_dir / METRICS_JSONL, {"stage": "ban", "generations": gens,
                                             "ensemble_test_acc": result.ensemble_test_acc,
                                             "seconds": round(time.monotonic() - started, 3)})
    return result
