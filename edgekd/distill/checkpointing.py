"""A training folder's state: the checkpoint a trainer saves after every epoch (weights,
optimiser, best-so-far, RNG states) and restores on the next call, the final result.json,
and the checks that refuse a folder trained with another configuration, data or teachers.

``checkpoint.pt`` and ``metrics.jsonl`` are written in the order that loses no curve point:
the metrics line first, then the checkpoint (a line past the checkpoint is dropped on resume,
and that epoch trains again).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from edgekd.core.checkpoint import make_checkpoint, read_checkpoint
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_torch_save, atomic_write_json, read_jsonl, write_jsonl
from edgekd.core.runfolder import CHECKPOINT_PT, METRICS_JSONL, RESULT, RESULT_JSON, read_doc_or_none
from edgekd.distill.config import TrainConfig, TrainResult, identity_of
from edgekd.distill.taps import load_loss_states, loss_states
from edgekd.distill.ema import WeightEMA
from edgekd.distill.methods import get_method
from edgekd.distill.targets import teacher_fingerprints

if TYPE_CHECKING:
    from edgekd.distill.hint_training import HintTraining
    from edgekd.distill.methods import Loss
    from edgekd.inputs.data import ImageDataset
    from edgekd.search.space import StudentSpec

__all__ = ["Best", "Checkpoints", "Resumed", "finished_result", "load_trained", "training_inputs"]


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached": float(np_state[4])},
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    random.setstate(_as_tuple(state["python"]))


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass
class Best:
    """The student selected so far: the weights with the best validation accuracy (ties, and
    nan without a validation split, go to the later epoch)."""

    val: float = float("nan")
    epoch: int | None = None
    state: dict[str, torch.Tensor] | None = None

    def offer(self, val: float, epoch: int, model: nn.Module) -> None:
        """Keep ``model``'s weights as of ``epoch`` (1-based) unless ``val`` is below the best."""
        if self.state is None or not val < self.val:
            self.val, self.epoch = val, epoch
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class Resumed:
    """Where a training folder stands when a trainer starts on it (a fresh one: epoch 0)."""

    epoch: int = 0
    seconds: float = 0.0
    best: Best = field(default_factory=Best)
    ema: WeightEMA | None = None
    opt_stage: str | None = None
    opt_state: dict[str, Any] | None = None


class Checkpoints:
    """The files of one training folder (``out_dir``): ``checkpoint.pt`` after every epoch,
    ``metrics.jsonl`` trimmed to it on resume, ``result.json`` at the end. It holds the folder and
    what the student is trained from and described by (configuration, input fingerprints, spec,
    the data's classes and normalisation); the trainer hands it the objects to save or restore."""

    def __init__(self, out_dir: Path, config: TrainConfig, inputs: dict[str, Any] | None,
                 spec: StudentSpec | None, dataset: ImageDataset) -> None:
        self.out_dir, self.config, self.inputs, self.spec, self.dataset = out_dir, config, inputs, spec, dataset
        self.path = out_dir / CHECKPOINT_PT

    def _describe(self, weights: dict[str, torch.Tensor], metrics: dict[str, Any],
                  extra: dict[str, Any]) -> dict[str, Any]:
        ds = self.dataset
        return make_checkpoint(weights, spec=self.spec, classes=list(ds.classes),
                               input_shape=tuple(ds.input_shape), normalization=ds.normalization,
                               method=self.config.method, metrics=metrics, extra=extra)

    def save(self, epoch: int, seconds: float, *, model: nn.Module, hints: HintTraining,
             losses: dict[str, Loss], optimizer: torch.optim.Optimizer, opt_stage: str,
             scaler: torch.amp.GradScaler | None, best: Best, ema: WeightEMA | None) -> None:
        """``checkpoint.pt`` after ``epoch`` epochs: the selected weights (``best``, else the
        scored ones: the EMA shadow with --ema) and everything a later call resumes from."""
        train_state = {
            "epoch": epoch, "seconds": seconds, "identity": self.config.identity(),
            "inputs": self.inputs,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **hints.state(), "loss_states": loss_states(losses),
            "optimizer": optimizer.state_dict(), "opt_stage": opt_stage,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "best_val": best.val, "best_epoch": best.epoch, "best_state": best.state,
            "rng": rng_state(),
            "ema": ({"state": ema.state_dict(), "updates": ema.updates} if ema is not None else None),
        }
        scored = ema.shadow if ema is not None else model
        selected = best.state if best.state is not None else {
            k: v.detach().cpu() for k, v in scored.state_dict().items()}
        metrics = {"val_acc": best.val, "best_epoch": best.epoch, "epochs_done": epoch}
        atomic_torch_save(self.path, self._describe(selected, metrics, {"train_state": train_state}))

    def restore(self, *, model: nn.Module, hints: HintTraining, losses: dict[str, Loss],
                scaler: torch.amp.GradScaler | None) -> Resumed:
        """Load the last checkpoint into ``model``, ``hints``, ``losses`` and ``scaler`` (and the
        RNG states) after checking it was trained with this configuration and these inputs; drop
        metrics lines past it. The optimizer's state comes back in :class:`Resumed` for the
        trainer, which knows whether its stage is still current."""
        metrics_path = self.out_dir / METRICS_JSONL
        if not self.path.exists():
            if metrics_path.exists():
                write_jsonl(metrics_path, [])
            return Resumed()
        state = (read_checkpoint(self.path).get("extra") or {}).get("train_state")
        if state is None:
            raise EdgekdError(f"'{self.path}' holds no training state (it is an exported student): "
                              "use another --out to train")
        check_identity(state["identity"], self.config, self.path)
        check_inputs(state.get("inputs"), self.inputs, self.path)
        model.load_state_dict(state["model"])
        hints.restore(state)
        load_loss_states(losses, state.get("loss_states"))
        ema = None
        if state.get("ema") is not None:  # --ema: the shadow continues where it was
            ema = WeightEMA(model, self.config.ema)
            ema.load_state_dict(state["ema"]["state"], int(state["ema"]["updates"]))
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        epoch = int(state["epoch"])
        write_jsonl(metrics_path, [r for r in read_jsonl(metrics_path) if int(r.get("epoch", 0)) <= epoch])
        return Resumed(epoch, float(state["seconds"]), Best(state["best_val"], state["best_epoch"], state["best_state"]),
                       ema, state["opt_stage"], state["optimizer"])

    def finish(self, result: TrainResult) -> None:
        """The checkpoint's metrics gain the final numbers (same weights, same state), and
        ``result.json`` is written."""
        data = read_checkpoint(self.path)
        data["metrics"] = {**data["metrics"], "val_acc": result.val_acc, "test_acc": result.test_acc,
                           "epochs_done": result.epochs_done, "best_epoch": result.best_epoch}
        atomic_torch_save(self.path, data)
        atomic_write_json(self.out_dir / RESULT_JSON, result.to_dict())


def check_identity(stored: dict[str, Any], config: TrainConfig, where: Path) -> None:
    current, stored = config.identity(), identity_of(stored)
    diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if diff:
        shown = ", ".join(f"{k}={stored.get(k)!r} there vs {current.get(k)!r} now" for k in diff[:3])
        raise EdgekdError(f"'{where}' was trained with a different configuration ({shown}): "
                          "use another --out, or delete that folder to start over")


def training_inputs(teachers: list[nn.Module], dataset: ImageDataset, config: TrainConfig,
                     teacher_fps: list[str] | None) -> dict[str, Any]:
    """What a training folder was trained from, beyond its config: the data's fingerprint and
    the teachers' (none for scratch, which ignores them)."""
    fps = teacher_fingerprints(teachers, teacher_fps) if get_method(config.method).uses_teacher else []
    return {"data": dataset.fingerprint(), "teachers": fps}


def check_inputs(stored: dict[str, Any] | None, current: dict[str, Any] | None, where: Path) -> None:
    if stored is None or current is None:
        return  # a folder written before inputs were recorded
    for key, what in (("data", "data set"), ("teachers", "teacher")):
        if stored.get(key) != current.get(key):
            raise EdgekdError(f"'{where}' was trained with a different {what}: use another --out, "
                              "or delete that folder to start over")


def finished_result(out_dir: Path, config: TrainConfig, inputs: dict[str, Any] | None = None) -> TrainResult | None:
    path = out_dir / RESULT_JSON
    if not path.exists() or not (out_dir / CHECKPOINT_PT).exists():
        return None
    stored = read_doc_or_none(RESULT, path)
    if stored is None:
        return None  # damaged: the checkpoint tells where training stands
    check_identity(TrainConfig.from_dict(stored.get("config", {})).identity(), config, path)
    check_inputs(stored.get("inputs"), inputs, path)
    # fitnet's hint epochs come on top of config.epochs
    if int(stored.get("epochs_done", 0)) - int(stored.get("hint_epochs_done") or 0) < config.epochs:
        return None
    result = TrainResult.from_dict(stored)
    result.checkpoint = out_dir / CHECKPOINT_PT  # the folder may have moved (Ray workers)
    return result


# ----------------------------------------------------------------------------- born-again
def load_trained(student: StudentSpec | nn.Module, checkpoint: Path) -> nn.Module:
    from edgekd.core.checkpoint import load_student

    if isinstance(student, nn.Module):
        model = copy.deepcopy(student)
        model.load_state_dict(read_checkpoint(checkpoint)["state_dict"])
        return model.eval()
    return load_student(checkpoint)[0]

