"""A training folder's state: the checkpoint a trainer saves after every epoch (weights,
optimiser, best-so-far, RNG states) and restores on the next call, the final result.json,
and the checks that refuse a folder trained with another configuration, data or teachers.

``checkpoint.pt`` and ``metrics.jsonl`` are written in the order that loses no curve point:
the metrics line first, then the checkpoint (a line past the checkpoint is dropped on resume,
and that epoch trains again).
"""

from __future__ import annotations

import copy
import math
import random
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
from edgekd.distill.evaluate import accuracy, predict_logits
from edgekd.distill.methods import get_method
from edgekd.distill.targets import teacher_fingerprints

if TYPE_CHECKING:
    from edgekd.inputs.data import ImageDataset
    from edgekd.search.space import StudentSpec

__all__ = ["Checkpoints", "finished_result", "load_trained", "training_inputs"]


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


class Checkpoints:
    """The trainer's checkpoint side (a mixin of :class:`edgekd.distill.trainer._Trainer`,
    whose attributes it reads): save after every epoch, restore on the next call, finish."""

    def _scored(self) -> nn.Module:
        """The weights that are validated, selected and kept: the EMA shadow with --ema."""
        return self.ema.shadow if self.ema is not None else self.model

    def _selected_state(self) -> dict[str, torch.Tensor]:
        if self.best_state is not None:
            return self.best_state
        return {k: v.detach().cpu() for k, v in self._scored().state_dict().items()}

    def _describe(self, metrics: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        ds = self.dataset
        return make_checkpoint(self._selected_state(), spec=self.spec, classes=list(ds.classes),
                               input_shape=tuple(ds.input_shape), normalization=ds.normalization,
                               method=self.method, metrics=metrics, extra=extra)

    def _save(self, epoch: int, seconds: float, optimizer: torch.optim.Optimizer, opt_stage: str) -> None:
        train_state = {
            "epoch": epoch, "seconds": seconds, "identity": self.config.identity(),
            "inputs": self.inputs,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            **self._hint_state(), "loss_states": loss_states(self.losses),
            "optimizer": optimizer.state_dict(), "opt_stage": opt_stage,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best_val": self.best_val, "best_epoch": self.best_epoch, "best_state": self.best_state,
            "rng": rng_state(),
            "ema": ({"state": self.ema.state_dict(), "updates": self.ema.updates}
                    if self.ema is not None else None),
        }
        metrics = {"val_acc": self.best_val, "best_epoch": self.best_epoch, "epochs_done": epoch}
        atomic_torch_save(self.out_dir / CHECKPOINT_PT, self._describe(metrics, {"train_state": train_state}))

    def _restore(self) -> dict[str, Any]:
        fresh = {"epoch": 0, "seconds": 0.0, "best_val": float("nan"), "best_epoch": None,
                 "best_state": None, "optimizer": None, "opt_stage": None}
        path = self.out_dir / CHECKPOINT_PT
        if not path.exists():
            if (self.out_dir / METRICS_JSONL).exists():
                write_jsonl(self.out_dir / METRICS_JSONL, [])
            return fresh
        data = read_checkpoint(path)
        state = (data.get("extra") or {}).get("train_state")
        if state is None:
            raise EdgekdError(f"'{path}' holds no training state (it is an exported student): "
                              "use another --out to train")
        check_identity(state["identity"], self.config, path)
        check_inputs(state.get("inputs"), self.inputs, path)
        self.model.load_state_dict(state["model"])
        self._restore_hints(state)
        load_loss_states(self.losses, state.get("loss_states"))
        if state.get("ema") is not None:  # --ema: the shadow continues where it was
            self.ema = WeightEMA(self.model, self.config.ema)
            self.ema.load_state_dict(state["ema"]["state"], int(state["ema"]["updates"]))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        epoch = int(state["epoch"])
        optimizer = None
        if epoch < self.total_epochs and self._stage(epoch) == state["opt_stage"]:
            optimizer = self._optimizer(state["opt_stage"])
            optimizer.load_state_dict(state["optimizer"])
        kept = [r for r in read_jsonl(self.out_dir / METRICS_JSONL) if int(r.get("epoch", 0)) <= epoch]
        write_jsonl(self.out_dir / METRICS_JSONL, kept)
        return {"epoch": epoch, "seconds": float(state["seconds"]), "best_val": state["best_val"],
                "best_epoch": state["best_epoch"], "best_state": state["best_state"],
                "optimizer": optimizer, "opt_stage": state["opt_stage"]}

    def _finish(self, epoch: int, seconds: float) -> TrainResult:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test_logits = predict_logits(self.model, self.data.x_test, device=self.device)
        test_acc = accuracy(test_logits, self.data.y_test)
        val = None if self.best_val is None or math.isnan(self.best_val) else float(self.best_val)
        result = TrainResult(
            method=self.method, val_acc=val, test_acc=test_acc, epochs_done=epoch,
            checkpoint=self.out_dir / CHECKPOINT_PT, seconds=round(seconds, 3),
            best_epoch=self.best_epoch, train_samples=len(self.data.y_train),
            config=self.config.to_dict(), **self._hint_result(),
            model=self.model, inputs=self.inputs)
        # the checkpoint's metrics now carry the final numbers too (same weights, same state)
        data = read_checkpoint(result.checkpoint)
        data["metrics"] = {**data["metrics"], "val_acc": val, "test_acc": test_acc,
                           "epochs_done": epoch, "best_epoch": self.best_epoch}
        atomic_torch_save(result.checkpoint, data)
        atomic_write_json(self.out_dir / RESULT_JSON, result.to_dict())
        return result


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

