"""The weight-sharing supernet: sub-networks are views of one set of weights, training it
resumes exactly, BatchNorm is re-estimated per sub-network, search stays within the budget, and
sandwich training with KD learns on real images."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.core.errors import EdgekdError
from edgekd.distill.supernet import Supernet, elastic_space
from edgekd.distill.supernet_training import (SupernetConfig, evaluate_subnet, load_supernet,
                                              new_supernet, recalibrate_batchnorm, search_subnets,
                                              train_supernet)
from edgekd.distill.trainset import TrainData
from edgekd.search.space import Stage, StudentSpec


def _anchor(family: str, **options) -> StudentSpec:
    return StudentSpec(family=family, input=(3, 16, 16), classes=5,
                       stages=(Stage(8, 3, 1), Stage(16, 2, 2)), **options)


FAMILIES = [("plain", {}), ("residual", {}), ("dwsep", {}), ("mbconv", {"expansion": 6, "kernel": 5})]


@pytest.mark.parametrize("family, options", FAMILIES)
def test_a_subnetwork_is_the_standalone_student_with_the_shared_weights(family: str, options: dict) -> None:
    torch.manual_seed(0)
    space = elastic_space(_anchor(family, **options))
    net = Supernet(space).eval()
    with torch.no_grad():  # weights and statistics unlike any fresh initialisation
        for tensor in [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]:
            tensor.copy_(torch.rand_like(tensor) * 0.5 + 0.25)
    x = torch.randn(3, 3, 16, 16)
    rng = random.Random(1)
    for spec in [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(4))]:
        standalone = net.extract(spec).eval()
        assert torch.allclose(net(x, spec), standalone(x), atol=1e-5), spec.describe()
    assert space.size > 10


def test_the_smallest_subnetwork_trains_only_its_slice_of_the_shared_weights() -> None:
    space = elastic_space(_anchor("plain"))
    net = Supernet(space).train()
    net(torch.randn(4, 3, 16, 16), space.smallest()).sum().backward()
    stem = net.get_parameter("features__0__conv__weight")  # conv of the stem block: [8, 3, 3, 3]
    used = space.smallest().stages[0].width
    assert stem.grad[:used].abs().sum() > 0
    assert stem.grad[used:].abs().sum() == 0
    dropped = net.get_parameter("features__2__conv__weight")  # stage 0's third block: depth 1 skips it
    assert dropped.grad is None or dropped.grad.abs().sum() == 0


def test_a_kernel_choice_takes_the_centre_of_the_shared_kernel() -> None:
    space = elastic_space(_anchor("mbconv", expansion=6, kernel=5))
    assert space.kernels == (3, 5)
    net = Supernet(space)
    small = space.spec(tuple(max(d) for d in space.depths), tuple(max(w) for w in space.widths), 3, 6)
    view = net.views(small)["features.0.conv.weight"]
    shared = net.get_parameter("features__0__conv__weight")
    assert torch.equal(view, shared[:, :, 1:4, 1:4])


def test_batchnorm_is_re_estimated_from_the_calibration_images() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    x = torch.randn(64, 3, 5, 5) * 3 + 2
    recalibrate_batchnorm(model, x, batches=1, batch_size=64)
    with torch.no_grad():
        y = model[0](x)
    assert torch.allclose(model[1].running_mean, y.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(model[1].running_var, y.var(dim=(0, 2, 3), unbiased=True), atol=1e-4)
    assert not model.training


def _mnist(n_train: int = 1200, n_val: int = 300) -> TrainData:
    from edgekd.inputs.data import to_tensor
    from edgekd.inputs.loaders import load_dataset

    data = load_dataset(None)
    norm = data.normalization
    x = to_tensor(data.x_train[:n_train + n_val], norm)
    y = torch.as_tensor(data.y_train[:n_train + n_val], dtype=torch.long)
    x_test = to_tensor(data.x_test[:300], norm)
    pad = -torch.tensor(norm.mean) / torch.tensor(norm.std)
    return TrainData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], x_test,
                     torch.as_tensor(data.y_test[:300], dtype=torch.long), np.arange(n_train), pad)


def _mnist_space():
    anchor = StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                         stages=(Stage(8, 2, 1), Stage(16, 2, 2), Stage(32, 2, 2)))
    return elastic_space(anchor)


class _Stop(Exception):
    pass


def test_training_resumes_after_a_kill_to_the_same_weights(tmp_path: Path, one_thread) -> None:
    data = _mnist(256, 64)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    config = SupernetConfig(epochs=2, batch_size=64, seed=3)
    torch.manual_seed(0)
    whole = Supernet(_mnist_space())
    train_supernet(whole, teacher, data, config, tmp_path / "whole.pt")

    def kill_after_first(epoch: int, _record: dict) -> None:
        if epoch == 1:
            raise _Stop

    torch.manual_seed(0)
    killed = Supernet(_mnist_space())
    with pytest.raises(_Stop):
        train_supernet(killed, teacher, data, config, tmp_path / "split.pt", on_epoch=kill_after_first)
    resumed = Supernet(_mnist_space())  # a fresh process: weights come from the checkpoint only
    state = train_supernet(resumed, teacher, data, config, tmp_path / "split.pt")
    assert state.epochs_done == 2 and [r["epoch"] for r in state.history] == [1, 2]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_training_in_chunks_of_one_epoch_gives_the_uninterrupted_weights(tmp_path: Path, one_thread) -> None:
    """``until`` stops after that epoch (a Ray task trains one chunk); continuing chunk by chunk
    from the checkpoint, each in a fresh supernet drawn from the seed (as a fresh worker process
    does), gives the weights and losses of one uninterrupted training."""
    data = _mnist(256, 64)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    config = SupernetConfig(epochs=3, batch_size=64, seed=5)
    torch.manual_seed(0)
    whole = new_supernet(_mnist_space(), config.seed)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after)  # the global random state is left alone
    full = train_supernet(whole, teacher, data, config, tmp_path / "whole.pt")
    for until in (1, 2, 2, 3):  # a chunk already done trains nothing
        torch.manual_seed(until)  # another process's random state
        chunked = new_supernet(_mnist_space(), config.seed)
        state = train_supernet(chunked, teacher, data, config, tmp_path / "chunks.pt", until=until)
        assert state.epochs_done == until
    assert state.history == full.history
    for (name, a), b in zip(whole.state_dict().items(), chunked.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_another_space_is_refused(tmp_path: Path) -> None:
    data = _mnist(128, 32)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    train_supernet(Supernet(_mnist_space()), teacher, data, SupernetConfig(epochs=1, batch_size=64),
                   tmp_path / "s.pt")
    other = elastic_space(StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                                      stages=(Stage(8, 2, 1), Stage(24, 2, 2))))
    with pytest.raises(EdgekdError, match="another space"):
        load_supernet(Supernet(other), tmp_path / "s.pt")


def test_sandwich_kd_training_learns_and_the_search_respects_the_budget(tmp_path: Path, one_thread) -> None:
    """Real digits, a real (linear, trained) teacher: 3 epochs lift the largest and the smallest
    sub-network far above where they start (10 classes: chance is 0.1), and only sub-networks
    the cost function accepts are evaluated."""
    data = _mnist()
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(teacher(data.x_train), data.y_train).backward()
        optimizer.step()
    teacher.eval()
    space = _mnist_space()
    net = Supernet(space)
    config = SupernetConfig(epochs=3, batch_size=64, lr=0.05, evaluations=6, augment="none")
    before = [evaluate_subnet(net, spec, data, config)[1] for spec in (space.largest(), space.smallest())]
    train_supernet(net, teacher, data, config, tmp_path / "s.pt")
    after = [evaluate_subnet(net, spec, data, config)[1] for spec in (space.largest(), space.smallest())]
    assert max(before) < 0.2
    assert after[0] > 0.35 and after[1] > 0.2, (before, after)
    from edgekd.search.cost import spec_totals

    limit = (spec_totals(space.smallest())[0] + spec_totals(space.largest())[0]) // 2

    def cost(spec: StudentSpec) -> dict | None:
        macs, params = spec_totals(spec)
        return {"macs": macs, "params": params} if macs <= limit else None

    records = search_subnets(net, data, config, cost)
    assert 2 <= len(records) <= config.evaluations
    assert all(r["macs"] <= limit for r in records)
    assert [r["val_acc"] for r in records] == sorted((r["val_acc"] for r in records), reverse=True)
