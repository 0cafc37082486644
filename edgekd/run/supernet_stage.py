"""``compress --strategy supernet``: one weight-sharing supernet trained with KD from the
teacher instead of one training per candidate, then its front of sub-networks.

    anchor = the largest student within the budget (of the run's first family)
      -> supernet over the anchor's elastic space (edgekd.distill.supernet), trained with the
         sandwich rule and KD (edgekd.distill.supernet_training); resumable per epoch
      -> sub-networks within the budget (costed like the search's candidates) evaluated with
         inherited weights, BatchNorm re-estimated; ranked by validation accuracy
      -> the accuracy/latency front saved as trial folders (role ``inherited``)
      -> the best by validation fine-tuned with the normal trainer and the method of the
         selection rungs (``CompressConfig.selection_method``: KD by default; role ``final``),
         as a trial of the run's executor

On the local executor the supernet trains in this process; on Ray one task per epoch
(edgekd.run.supernet_remote). Either way the sub-networks are evaluated here.

Files: ``supernet/checkpoint.pt``, ``supernet/subnets.jsonl``, ``trials/ID-inherited/`` and
``trials/ID-tuned/``; every step skips what its files already hold, so ``--resume`` continues.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json, write_jsonl
from edgekd.core.runfolder import CHECKPOINT_PT, RESULT_JSON, SPEC_JSON

if TYPE_CHECKING:
    from edgekd.core.runfolder import RunDir
    from edgekd.distill.config import TrainConfig
    from edgekd.run.config import CompressConfig
    from edgekd.run.executors import LocalExecutor, RayExecutor
    from edgekd.run.setup import Inputs

__all__ = ["FINETUNE_LR_FRACTION", "SupernetOutcome", "supernet_run", "supernet_stage"]

#: Fine-tuning an inherited sub-network starts at this fraction of the default learning rate:
#: its weights are already trained, a full-size first step would throw much of that away
#: (BigNAS, Yu et al. 2020, fine-tunes its children at a small constant rate).
FINETUNE_LR_FRACTION = 0.2
#: The most front students kept as trial folders (exported, measured and reported).
FRONT_SIZE = 12
#: The rung label of the fine-tune job (it is not recorded in halving.jsonl).
FINETUNE_RUNG = -3


@dataclass
class SupernetOutcome:
    """What the supernet strategy leaves for outcome.json and the report."""

    trials: list[dict]
    winner_trial: str
    candidates: list[dict]
    record: dict


def _anchor(rows: list[dict], families: tuple[str, ...]) -> dict:
    """The supernet's largest sub-network: of the first of ``families`` with a student within
    the budget, the one with the most MACs among those with at least two blocks in every stage
    (so every stage has an elastic depth), else the one with the most MACs. The widest such
    student leaves room below it for thinner and shallower students alike; the deepest one
    would be too thin to train (its narrowest sub-networks have a few channels)."""
    for family in families:
        inside = [row for row in rows if row.get("family") == family]
        if inside:
            return max(inside, key=lambda row: (min(s["depth"] for s in row["spec"]["stages"]) >= 2,
                                                row["macs"], row["id"]))
    raise EdgekdError("no student of the run's families fits the budget: the supernet needs one "
                      "as its largest sub-network; widen the budget or the families")


def _finetune_epochs(config: "CompressConfig") -> int:
    return max(1, int(config.epochs or 1) // 5)


def supernet_run(config: "CompressConfig", inputs: "Inputs", run: "RunDir", rows: list[dict],
                 counts: dict, train: "TrainConfig", executor: "LocalExecutor | RayExecutor",
                 note: Callable[[str], None]) -> tuple[SupernetOutcome, dict, dict[str, float]]:
    """:func:`supernet_stage`, then what outcome.json records of it (and its training time); the
    sub-networks it evaluated join candidates.jsonl so that the report finds their costs."""
    import time

    mark = time.monotonic()
    found = supernet_stage(config, inputs, run, rows, train, executor, note)
    known = {row["id"] for row in rows}
    write_jsonl(run.candidates, rows + [c for c in found.candidates if c["id"] not in known])
    record = {**counts, "shortlist": [], "rungs": [], "survivors": [], "finalists": [found.winner_trial],
              "winner_method": train.method, "baselines": None, "supernet": found.record}
    return found, record, {"training_s": round(time.monotonic() - mark, 2)}


def supernet_stage(config: "CompressConfig", inputs: "Inputs", run: "RunDir", rows: list[dict],
                   train: "TrainConfig", executor: "LocalExecutor | RayExecutor", note: Callable[[str], None]
                   ) -> SupernetOutcome:
    """Train (or resume) the supernet, evaluate its sub-networks, save the front and fine-tune
    the best; see the module docstring. ``rows`` are the run's students within the budget,
    ``train`` the run's training configuration (its schedule becomes the supernet's), the
    executor ``local`` or ``ray``."""
    import torch

    from edgekd.distill.config import default_lr
    from edgekd.distill.evaluate import resolve_device
    from edgekd.distill.supernet import elastic_space
    from edgekd.distill.supernet_training import SupernetConfig, new_supernet, train_supernet
    from edgekd.distill.trainset import prepare_data
    from edgekd.search.space import StudentSpec

    families = tuple(dict.fromkeys(row.get("family") for row in rows))
    anchor = StudentSpec.from_dict(_anchor(rows, families)["spec"])
    space = elastic_space(anchor, width_multiple=inputs.profile.search.channel_multiple)
    device = resolve_device(train.device)
    if config.threads_per_trial and device.type == "cpu":
        torch.set_num_threads(config.threads_per_trial)
    supernet_config = SupernetConfig(
        epochs=train.epochs, batch_size=train.batch_size, lr=train.lr or default_lr(train.optimizer),
        lr_floor=train.lr_floor, weight_decay=train.weight_decay, momentum=train.momentum,
        temperature=train.option("T"), alpha=train.option("alpha"),
        augment=train.augment if train.augment != "none" else "auto", seed=train.seed,
        evaluations=max(2 * FRONT_SIZE, config.candidates * 4))
    note(f"supernet: {space.size} sub-networks below {anchor.describe()}; training "
         f"{supernet_config.epochs} epochs (largest, smallest and "
         f"{supernet_config.random_subnets} random sub-networks per step, KD from the teacher)")
    data = prepare_data(inputs.dataset, train)
    net = new_supernet(space, supernet_config.seed).to(device)
    teacher = inputs.teacher.to(device)
    try:
        def on_epoch(epoch: int, rec: dict) -> None:
            note(f"supernet epoch {epoch}/{supernet_config.epochs}: loss {rec['loss']:.4f}")

        if executor.name == "ray":
            from edgekd.run.supernet_remote import train_supernet_on_ray

            train_supernet_on_ray(executor, net, supernet_config, train, run.supernet_checkpoint, on_epoch)
        else:
            train_supernet(net, teacher, data, supernet_config, run.supernet_checkpoint, on_epoch=on_epoch)
        records = _evaluated(net, data, supernet_config, inputs, run, note)
        front = _front(records)
        trials = [_save_inherited(net, record, data, inputs, run, supernet_config) for record in front]
        best = max(records, key=lambda r: (r["val_acc"], -r["macs"]))
        winner = _finetune(best, net, run, config, train, executor, note)
    finally:
        inputs.teacher.to("cpu")
    trials.append({"trial": winner, "candidate": best["id"], "method": train.method, "role": "final"})
    record = {"strategy": "supernet", "anchor": anchor.to_dict(), "space": space.to_dict(),
              "space_size": space.size, "epochs": supernet_config.epochs,
              "evaluated": len(records), "front": [r["id"] for r in front],
              "chosen": best["id"], "finetune_epochs": _finetune_epochs(config)}
    return SupernetOutcome(trials, winner, [r["candidate"] for r in records], record)


def _evaluated(net, data, supernet_config, inputs: "Inputs", run: "RunDir",
               note: Callable[[str], None]) -> list[dict]:
    """Every sub-network evaluated with inherited weights (subnets.jsonl, reused on resume)."""
    from edgekd.core.runfolder import SUBNET, read_records
    from edgekd.distill.supernet_training import search_subnets
    from edgekd.search.search import budget_coster

    if run.subnets.exists():
        records, bad = read_records(SUBNET, run.subnets)
        if records and not bad:
            return records
    coster = budget_coster(inputs.profile)

    def cost(spec):
        candidate = coster(spec)
        return None if candidate is None else {"macs": candidate.macs, "params": candidate.params,
                                               "candidate": candidate.to_record()}

    note(f"supernet: evaluating up to {supernet_config.evaluations} sub-networks within the budget "
         "(inherited weights, BatchNorm re-estimated)")
    records = search_subnets(net, data, supernet_config, cost)
    if not records:
        raise EdgekdError("no sub-network of the supernet fits the budget: widen the budget")
    write_jsonl(run.subnets, records)
    return records


def _front(records: list[dict]) -> list[dict]:
    """The accuracy/latency front of the evaluated sub-networks (validation accuracy), then the
    best of the rest by validation accuracy, up to :data:`FRONT_SIZE` students."""
    from edgekd.search.search import pareto_mask

    points = [(r["candidate"]["latency"]["ms"], r["val_acc"]) for r in records]
    on_front = [r for r, keep in zip(records, pareto_mask(points, ("min", "max"))) if keep]
    rest = sorted((r for r in records if r not in on_front), key=lambda r: -r["val_acc"])
    return (on_front + rest)[:FRONT_SIZE]


def _save_inherited(net, record: dict, data, inputs: "Inputs", run: "RunDir",
                    supernet_config) -> dict:
    """trials/ID-inherited/: the sub-network's inherited weights (BatchNorm re-estimated), with
    its validation and test accuracy, as a trial the export, measure and report stages read."""
    from edgekd.core.checkpoint import save_student
    from edgekd.distill.evaluate import accuracy, predict_logits
    from edgekd.distill.supernet_training import evaluate_subnet
    from edgekd.search.space import StudentSpec

    folder = f"{record['id']}-inherited"
    entry = {"trial": folder, "candidate": record["id"], "method": "supernet", "role": "inherited"}
    if run.trial_file(folder, RESULT_JSON).exists():
        return entry
    spec = StudentSpec.from_dict(record["spec"])
    model, val_acc = evaluate_subnet(net, spec, data, supernet_config)
    model = model.cpu()
    test_acc = accuracy(predict_logits(model, data.x_test), data.y_test)
    dataset = inputs.dataset
    metrics = {"val_acc": val_acc, "test_acc": test_acc, "epochs_done": supernet_config.epochs}
    atomic_write_json(run.trial_file(folder, SPEC_JSON), record["spec"])
    save_student(run.trial_file(folder, CHECKPOINT_PT), model, spec=spec,
                 classes=list(dataset.classes), input_shape=tuple(dataset.input_shape),
                 normalization=dataset.normalization, method="supernet", metrics=metrics)
    atomic_write_json(run.trial_file(folder, RESULT_JSON),
                      {"method": "supernet", "inherited": True, **metrics})
    return entry


def _finetune(best: dict, net, run: "RunDir", config: "CompressConfig", train,
              executor: "LocalExecutor | RayExecutor", note: Callable[[str], None]) -> str:
    """Fine-tune the chosen sub-network from its inherited weights with KD, a job of the run's
    executor; its trial folder."""
    from edgekd.core.checkpoint import read_checkpoint
    from edgekd.distill.config import default_lr
    from edgekd.run.halving import TrialJob, TrialPayload
    from edgekd.search.space import StudentSpec

    folder = f"{best['id']}-tuned"
    epochs = _finetune_epochs(config)
    start = read_checkpoint(run.trial_file(f"{best['id']}-inherited", CHECKPOINT_PT))["state_dict"] \
        if run.trial_file(f"{best['id']}-inherited", CHECKPOINT_PT).exists() \
        else net.extract(StudentSpec.from_dict(best["spec"])).state_dict()
    tune = dataclasses.replace(train, epochs=epochs, warmup_epochs=0.0,
                               lr=(train.lr or default_lr(train.optimizer)) * FINETUNE_LR_FRACTION)
    note(f"supernet: fine-tuning {best['describe']} (best by validation, "
         f"{best['val_acc']:.2%} inherited) for {epochs} epoch(s) with {train.method}")
    job = TrialJob(best["id"], FINETUNE_RUNG, epochs, TrialPayload(best["spec"], tune, start), folder)
    executor.run([job], lambda job, result: None)  # the trial folder holds its result
    return folder
