"""``--ema DECAY``: the EMA of the student's weights is what is validated, selected and kept
(issue 11 item 2), and it survives an interrupted run."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekd.core.errors import EdgekdError
from edgekd.distill import TrainConfig, train_student
from edgekd.distill import trainer as trainer_module
from edgekd.distill.ema import WeightEMA
from edgekd.inputs.data import make_dataset
from edgekd.inputs.loaders import load_dataset
from edgekd.search.space import Stage, StudentSpec

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 1, 2), Stage(16, 1, 2)))


@pytest.fixture(scope="module")
def dataset():
    full = load_dataset(None)
    return make_dataset(name="mnist-600", source="test", x_train=full.x_train[:600], y_train=full.y_train[:600],
                        x_test=full.x_test[:200], y_test=full.y_test[:200], classes=full.classes)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))


def test_update_is_the_exponential_average_and_copies_integer_buffers():
    model = _net()
    ema = WeightEMA(model, 0.75)
    ema.updates = 100  # past the warm-up: d_t = min(0.75, 101/110) = 0.75
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(100) == 0.75
    before = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    after = ema.shadow.state_dict()
    for name, value in model.state_dict().items():
        if value.dtype.is_floating_point:
            assert torch.allclose(after[name], 0.75 * before[name] + 0.25 * value)
        else:
            assert int(after[name]) == 7
    assert ema.updates == 101 and not any(p.requires_grad for p in ema.shadow.parameters())
    with pytest.raises(ValueError):
        WeightEMA(model, 1.0)


def test_config_checks_the_decay_and_keeps_old_identities():
    with pytest.raises(EdgekdError, match="ema=1.5"):
        TrainConfig(ema=1.5)
    assert "ema" not in TrainConfig().identity()  # folders trained before --ema still resume
    assert TrainConfig(ema=0.99).identity()["ema"] == 0.99


def test_kept_weights_are_the_ema_of_the_trained_ones(dataset, tmp_path, monkeypatch):
    """Replays the trajectory of the same run without EMA step by step and averages it by hand:
    the checkpoint of the --ema run must hold exactly that average (no validation split: the
    last epoch is kept)."""
    decay = 0.9
    base = dict(method="scratch", epochs=2, batch_size=50, val_fraction=0.0, optimizer="sgd", lr=0.05)
    states: list[dict[str, torch.Tensor]] = []
    real_step = trainer_module._Trainer._step

    def record(self, loss, optimizer):
        real_step(self, loss, optimizer)
        states.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})

    monkeypatch.setattr(trainer_module._Trainer, "_step", record)
    plain = train_student(SPEC, [], dataset, TrainConfig(**base), tmp_path / "plain", progress=False)
    monkeypatch.setattr(trainer_module._Trainer, "_step", real_step)
    averaged = train_student(SPEC, [], dataset, TrainConfig(**base, ema=decay), tmp_path / "ema", progress=False)

    assert len(states) == 2 * 600 // 50
    expected = {k: v.clone() for k, v in states[0].items()}  # the shadow starts at the first step
    for t, state in enumerate(states):
        d = min(decay, (1 + t) / (10 + t))  # with the warm-up of the decay
        for k, v in state.items():
            expected[k] = d * expected[k] + (1 - d) * v if v.dtype.is_floating_point else v.clone()
    kept = averaged.model.state_dict()
    for k, v in expected.items():
        assert torch.allclose(kept[k], v, atol=1e-6), k
    # training itself is untouched: the plain run ends on the last recorded weights, which differ
    last = plain.model.state_dict()
    assert all(torch.equal(last[k], states[-1][k]) for k in last)
    assert any(not torch.allclose(kept[k], last[k]) for k in last if last[k].dtype.is_floating_point)
    assert averaged.config["ema"] == decay


def test_interrupted_ema_run_resumes_to_the_same_weights(dataset, tmp_path, monkeypatch):
    config = TrainConfig(method="scratch", epochs=3, batch_size=50, val_fraction=0.2, ema=0.8, lr=0.05)
    straight = train_student(SPEC, [], dataset, config, tmp_path / "a", progress=False)
    real_check = trainer_module._check_finite

    def interrupt(loss, stage, epoch, batch, lr):
        if epoch == 2 and batch == 3:  # in the third epoch, after two saved epochs
            raise KeyboardInterrupt
        real_check(loss, stage, epoch, batch, lr)

    monkeypatch.setattr(trainer_module, "_check_finite", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_student(SPEC, [], dataset, config, tmp_path / "b", progress=False)
    monkeypatch.setattr(trainer_module, "_check_finite", real_check)
    resumed = train_student(SPEC, [], dataset, config, tmp_path / "b", progress=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed.val_acc, resumed.test_acc) == (straight.val_acc, straight.test_acc)


def test_cli_ema_reaches_train_and_every_compress_trial(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from edgekd.cli.cli import cli
    from edgekd.core.checkpoint import read_checkpoint
    from edgekd.core.fileio import read_json
    from edgekd.run.config import CompressConfig, train_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC.to_dict()))
    result = CliRunner().invoke(cli, ["train", "--student", "spec.json", "--method", "scratch", "--epochs", "1",
                                      "--max-train-samples", "200", "--batch-size", "32", "--ema", "0.95",
                                      "--out", "r"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert read_json(tmp_path / "r" / "result.json")["config"]["ema"] == 0.95
    state = read_checkpoint(tmp_path / "r" / "checkpoint.pt")["extra"]["train_state"]
    assert state["ema"]["updates"] == 200 // 32  # one update per step of the 200 training images
    bad = CliRunner().invoke(cli, ["train", "--student", "spec.json", "--ema", "1"])
    assert bad.exit_code == 2
    assert train_config(CompressConfig(ema=0.99), "kd", 3)["ema"] == 0.99
    assert "ema" not in train_config(CompressConfig(), "kd", 3)  # trial identities as before --ema
    assert CompressConfig(ema=0.99).identity_config()["ema"] == 0.99
    assert "ema" not in CompressConfig().identity_config()
