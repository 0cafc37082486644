"""Training a :class:`~edgekd.distill.supernet.Supernet` with knowledge distillation from the
user's teacher, re-estimating BatchNorm per sub-network, and searching its sub-networks.

* **Sandwich rule** (Yu & Huang 2019, universally slimmable networks; BigNAS, Yu et al. 2020):
  every step trains the largest, the smallest and ``random_subnets`` random sub-networks on the
  same augmented batch and sums their gradients into the shared weights, one optimiser step.
* **KD from the teacher** (Hinton et al. 2015): each sub-network's loss is
  ``a * CE(y, p_s) + (1 - a) * T^2 * KL(p_t^T || p_s^T)``; the teacher's logits are computed once
  per batch and shared by every sub-network. With ``inplace_distillation`` the smaller ones learn
  from the largest sub-network's (detached) logits instead, as in BigNAS.
* **BatchNorm re-estimation**: running statistics are meaningless for a sub-network while
  the supernet trains (every sub-network updates them), so each one is evaluated after its
  statistics are recomputed on training batches (OFA, Cai et al. 2020).
* **Search**: exhaustive where the space is small, else an evolutionary search (random
  population, then mutations of the best) ranked by validation accuracy.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_torch_save
from edgekd.distill import augment as aug
from edgekd.distill.evaluate import accuracy, predict_logits
from edgekd.distill.losses import kd_terms
from edgekd.distill.supernet import ElasticSpace, Supernet
from edgekd.distill.trainset import TrainData, epoch_generator
from edgekd.search.space import StudentSpec

__all__ = ["SUPERNET_FORMAT", "SupernetConfig", "evaluate_subnet", "load_supernet", "new_supernet",
           "recalibrate_batchnorm", "search_subnets", "train_supernet"]

SUPERNET_FORMAT = "edgekd.supernet/1"


@dataclass
class SupernetConfig:
    """How a supernet is trained and searched."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    lr_floor: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9
    temperature: float = 4.0
    alpha: float = 0.1
    random_subnets: int = 2
    inplace_distillation: bool = False
    augment: str = "auto"
    seed: int = 0
    calibration_batches: int = 8
    evaluations: int = 32

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.random_subnets < 0:
            raise EdgekdError("supernet: epochs and batch size must be >= 1, random sub-networks >= 0")
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise EdgekdError("supernet: alpha must be in [0, 1] and the temperature above 0")
        if self.evaluations < 2 or self.calibration_batches < 1:
            raise EdgekdError("supernet: at least 2 evaluations and 1 calibration batch")


@dataclass
class SupernetState:
    """What a supernet checkpoint holds besides the weights: epochs done and their losses."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)


def new_supernet(space: ElasticSpace, seed: int) -> Supernet:
    """A supernet of ``space`` whose initial weights are drawn from ``seed`` alone (the global
    random state is left as it was): every process, a local run's or a Ray worker's, starts
    from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Supernet(space)


def _learning_rate(config: SupernetConfig, step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr * lr_floor``."""
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = config.lr * config.lr_floor
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


def _optimizer(net: Supernet, config: SupernetConfig) -> torch.optim.Optimizer:
    decay = [p for p in net.parameters() if p.dim() > 1]
    rest = [p for p in net.parameters() if p.dim() <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                            {"params": rest, "weight_decay": 0.0}],
                           lr=config.lr, momentum=config.momentum, nesterov=True)


def _sandwich(space: ElasticSpace, rng: random.Random, extra: int) -> list[StudentSpec]:
    return [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(extra))]


def _step_loss(net: Supernet, specs: list[StudentSpec], x: torch.Tensor, y: torch.Tensor,
               teacher_logits: torch.Tensor, config: SupernetConfig) -> float:
    """Backward through every sub-network of the sandwich; returns the summed loss."""
    total, largest_logits = 0.0, None
    for i, spec in enumerate(specs):
        logits = net(x, spec)
        target = teacher_logits
        if config.inplace_distillation and i > 0 and largest_logits is not None:
            target = largest_logits
        loss = kd_terms(logits, target, y, config.temperature, config.alpha)[0]
        if not bool(torch.isfinite(loss)):
            raise EdgekdError(f"supernet: the loss of {spec.describe()} became {float(loss)}: "
                              "lower --lr or check the teacher's outputs")
        loss.backward()
        total += float(loss.detach())
        if i == 0:
            largest_logits = logits.detach()
    return total


def train_supernet(net: Supernet, teacher: nn.Module, data: TrainData, config: SupernetConfig,
                   checkpoint: Path, on_epoch: Callable[[int, dict], None] | None = None,
                   until: int | None = None) -> SupernetState:
    """Train ``net`` for ``config.epochs`` epochs (resuming from ``checkpoint`` if it is there),
    saving weights, optimiser and state after every epoch. ``until`` stops after that epoch
    (a chunk of the schedule: the learning rate, the order and the sub-networks of an epoch
    depend on its index only, so chunks give the numbers of one uninterrupted training)."""
    config.validate()
    device = next(net.parameters()).device
    optimizer = _optimizer(net, config)
    state = SupernetState()
    if checkpoint.exists():
        state = load_supernet(net, checkpoint, optimizer)
    augmentation = aug.resolve(config.augment, tuple(data.x_train.shape[1:]))
    n = len(data.y_train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total, warmup = config.epochs * steps_per_epoch, min(steps_per_epoch, max(1, config.epochs * steps_per_epoch // 20))
    teacher.eval()
    last = config.epochs if until is None else min(until, config.epochs)
    for epoch in range(state.epochs_done, last):
        net.train()
        gen = epoch_generator(config.seed, epoch)
        rng = random.Random(config.seed * 7919 + epoch)
        order = torch.randperm(n, generator=gen)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            x = aug.apply(data.x_train[idx], augmentation, aug.sample(augmentation, len(idx), gen),
                          data.pad_value).to(device)
            y = data.y_train[idx].to(device)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, epoch * steps_per_epoch + b, total, warmup)
            with torch.no_grad():
                teacher_logits = teacher(x).float()
            optimizer.zero_grad(set_to_none=True)
            specs = _sandwich(net.space, rng, config.random_subnets)
            losses.append(_step_loss(net, specs, x, y, teacher_logits, config) / len(specs))
            optimizer.step()
        record = {"epoch": epoch + 1, "loss": sum(losses) / len(losses)}
        state.epochs_done, state.history = epoch + 1, [*state.history, record]
        _save(net, optimizer, state, config, checkpoint)
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    return state


def _save(net: Supernet, optimizer: torch.optim.Optimizer, state: SupernetState,
          config: SupernetConfig, path: Path) -> None:
    atomic_torch_save(path, {"format": SUPERNET_FORMAT, "space": net.space.to_dict(),
                             "config": asdict(config), "weights": net.state_dict(),
                             "optimizer": optimizer.state_dict(), "state": asdict(state)})


def load_supernet(net: Supernet, path: Path, optimizer: torch.optim.Optimizer | None = None) -> SupernetState:
    """Load a checkpoint written by :func:`train_supernet` into ``net`` (and ``optimizer``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem to the user
        raise EdgekdError(f"{path}: not a readable supernet checkpoint ({type(error).__name__}): "
                          "delete it to train the supernet again") from None
    if not isinstance(data, dict) or data.get("format") != SUPERNET_FORMAT:
        raise EdgekdError(f"{path}: not an edgekd supernet checkpoint: delete it to train again")
    if data.get("space") != net.space.to_dict():
        raise EdgekdError(f"{path}: a supernet of another space: delete it to train this one")
    net.load_state_dict(data["weights"])
    if optimizer is not None:
        optimizer.load_state_dict(data["optimizer"])
    saved = data.get("state", {})
    return SupernetState(int(saved.get("epochs_done", 0)), list(saved.get("history", [])))


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batches: int, batch_size: int) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance as the plain average over
    ``batches`` batches of ``x`` (train-mode forward passes, no weight changes); eval mode after."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    device = next(model.parameters()).device
    model.train()
    for b in range(min(batches, max(1, math.ceil(len(x) / batch_size)))):
        model(x[b * batch_size:(b + 1) * batch_size].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


def evaluate_subnet(net: Supernet, spec: StudentSpec, data: TrainData,
                    config: SupernetConfig) -> tuple[nn.Module, float]:
    """The standalone sub-network ``spec`` (inherited weights, BatchNorm re-estimated on
    training images) and its validation accuracy."""
    model = net.extract(spec)
    gen = torch.Generator().manual_seed(config.seed)
    calib = data.x_train[torch.randperm(len(data.x_train), generator=gen)[
        :config.calibration_batches * config.batch_size]]
    recalibrate_batchnorm(model, calib, config.calibration_batches, config.batch_size)
    x_val, y_val = (data.x_val, data.y_val) if len(data.y_val) else (data.x_train[:1024], data.y_train[:1024])
    return model, accuracy(predict_logits(model, x_val), y_val)


def search_subnets(net: Supernet, data: TrainData, config: SupernetConfig,
                   cost: Callable[[StudentSpec], dict | None]) -> list[dict]:
    """Evaluate sub-networks within the budget (``cost`` returns their cost record, or None when
    one does not fit) and return one record per evaluated sub-network: spec, id, val_acc and the
    cost. Exhaustive when the fitting space is at most ``config.evaluations`` sub-networks."""
    rng = random.Random(config.seed)
    space = net.space
    records: dict[str, dict] = {}

    def consider(spec: StudentSpec) -> None:
        if spec.id in records or len(records) >= config.evaluations:
            return
        costed = cost(spec)
        if costed is None:
            return
        _, val_acc = evaluate_subnet(net, spec, data, config)
        records[spec.id] = {"id": spec.id, "spec": spec.to_dict(), "describe": spec.describe(),
                            "val_acc": val_acc, **costed}

    if space.size <= 4 * config.evaluations:
        fitting = [s for s in space.all() if cost(s) is not None]
        rng.shuffle(fitting)
        for spec in [space.largest(), space.smallest(), *fitting]:
            consider(spec)
    else:
        _evolve(space, rng, config.evaluations, consider, records)
    return sorted(records.values(), key=lambda r: -r["val_acc"])


def _evolve(space: ElasticSpace, rng: random.Random, evaluations: int,
            consider: Callable[[StudentSpec], None], records: dict[str, dict]) -> None:
    """Random population (a third of the evaluations), then mutations of the best four."""
    for spec in [space.largest(), space.smallest()]:
        consider(spec)
    tries = 0
    while len(records) < max(2, evaluations // 3) and tries < 50 * evaluations:
        consider(space.sample(rng))
        tries += 1
    while len(records) < evaluations and tries < 100 * evaluations:
        parents = sorted(records.values(), key=lambda r: -r["val_acc"])[:4]
        if not parents:
            return
        parent = StudentSpec.from_dict(rng.choice(parents)["spec"])
        consider(space.mutate(parent, rng))
        tries += 1
