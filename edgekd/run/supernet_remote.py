"""Supernet training on the Ray executor (``compress --strategy supernet --executor ray``),
one epoch per Ray task.

* Each epoch is one task (:meth:`~edgekd.run.executors.RayExecutor.call`: a trial's CPUs and
  GPUs, ``max_retries``). It gets the run's teacher and data (the executor's shared context),
  the supernet's space, its configurations and the checkpoint bytes to continue from (none
  for the first: the worker draws the initial weights from the seed, as a local run does).
  The worker trains the epoch with
  :func:`~edgekd.distill.supernet_training.train_supernet` (``until``) in a temporary folder
  and returns the new checkpoint as bytes: workers need no shared filesystem.
* The driver writes ``supernet/checkpoint.pt`` atomically after every epoch and prints the
  epoch's line: a killed driver loses at most the epoch in flight, and ``--resume`` continues
  from the checkpoint as the local path does (an epoch's order, augmentation and
  sub-networks come from its index, so the numbers are those of one uninterrupted training at
  the same thread count).
* Evaluating the sub-networks (BatchNorm re-estimation, validation) stays on the driver, which
  loads the final checkpoint; the fine-tune of the chosen one is a normal trial of the
  executor (:mod:`edgekd.run.supernet_stage`).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekd.core.fileio import atomic_write_bytes
from edgekd.core.runfolder import CHECKPOINT_PT

if TYPE_CHECKING:
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.supernet import Supernet
    from edgekd.distill.supernet_training import SupernetConfig
    from edgekd.run.executors import RayExecutor, TrialContext

__all__ = ["train_supernet_on_ray"]


def train_supernet_on_ray(executor: "RayExecutor", net: "Supernet", config: "SupernetConfig",
                          train: "TrainConfig", checkpoint: Path,
                          on_epoch: Callable[[int, dict], None]) -> None:
    """Train ``net`` to ``config.epochs`` epochs on the executor's workers, one task per epoch,
    continuing from ``checkpoint`` when it is there; ``net`` holds the trained weights after."""
    from edgekd.distill.supernet_training import load_supernet

    config.validate()
    # a foreign or corrupt file is one line here, before any task
    done = load_supernet(net, checkpoint).epochs_done if checkpoint.exists() else 0
    space = net.space.to_dict()
    for until in range(done + 1, config.epochs + 1):
        start = checkpoint.read_bytes() if checkpoint.exists() else None
        out = executor.call(_train_epochs, space, config, train, start, until)
        atomic_write_bytes(checkpoint, out["checkpoint"])
        for record in out["history"][until - 1:]:
            on_epoch(record["epoch"], record)
    if done < config.epochs:  # trained here: the last epoch's weights
        load_supernet(net, checkpoint)


def _train_epochs(context: "TrialContext", space: dict, config: "SupernetConfig",
                  train: "TrainConfig", start: bytes | None, until: int) -> dict[str, Any]:
    """The Ray task: train a supernet of ``space`` from ``start`` (checkpoint bytes; None: the
    seed's initial weights) to epoch ``until``; the new checkpoint as bytes and its history."""
    import torch

    from edgekd.distill.evaluate import resolve_device
    from edgekd.distill.supernet import ElasticSpace
    from edgekd.distill.supernet_training import new_supernet, train_supernet
    from edgekd.distill.trainset import prepare_data

    previous = torch.get_num_threads()
    if context.threads:
        torch.set_num_threads(context.threads)
    try:
        device = resolve_device(train.device)
        net = new_supernet(ElasticSpace.from_dict(space), config.seed).to(device)
        teacher = context.teachers[0].to(device)
        data = prepare_data(context.dataset, train)
        with tempfile.TemporaryDirectory(prefix="edgekd-supernet-") as tmp:
            path = Path(tmp) / CHECKPOINT_PT
            if start is not None:
                path.write_bytes(start)
            state = train_supernet(net, teacher, data, config, path, until=until)
            return {"checkpoint": path.read_bytes(), **asdict(state)}
    finally:
        torch.set_num_threads(previous)
