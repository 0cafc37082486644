"""The trainer on real MNIST samples: every method beats chance, resume is exact, the
teacher-output cache is reused and invalidated, NaN stops with a named error."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgekd.core.checkpoint import load_student
from edgekd.inputs.loaders import load_dataset
from edgekd.distill import TrainConfig, TrainResult, train_student
from edgekd.distill import trainer as trainer_module
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import read_json, read_jsonl
from edgekd.search.space import Stage, StudentSpec

SPEC = StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 1, 2), Stage(16, 1, 2)))
#: short but real: 1500 MNIST images, batch 16, one epoch (~90 steps)
FAST = dict(batch_size=16, max_train_samples=1500, optimizer="sgd", lr=0.2, temperature=2.0,
            alpha=0.5, epochs=1, hint_epochs=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset():
    """The shipped MNIST subset cut to 3000 training images (keeps teacher passes short)."""
    from edgekd.inputs.data import make_dataset

    full = load_dataset(None)
    return make_dataset(name="mnist-3k", source="test", x_train=full.x_train[:3000],
                        y_train=full.y_train[:3000], x_test=full.x_test, y_test=full.y_test,
                        classes=full.classes)


def _small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


@pytest.fixture(scope="module")
def teacher(dataset, tmp_path_factory) -> nn.Module:
    """A small CNN trained for one epoch on 2000 images (the trainer's nn.Module path)."""
    torch.manual_seed(0)
    config = TrainConfig(method="scratch", epochs=1, batch_size=32, max_train_samples=2000,
                         optimizer="adamw", lr=3e-3)
    result = train_student(_small_cnn(), [], dataset, config, tmp_path_factory.mktemp("teacher"),
                           progress=False)
    assert result.test_acc > 0.8
    return result.model.eval()


def _config(tmp_path: Path, **changes) -> TrainConfig:
    """FAST with ``changes``; T and alpha only for a method that declares them (others refuse them)."""
    from edgekd.distill.methods import get_method

    values = {**FAST, "cache_dir": str(tmp_path / "cache"), **changes}
    method = get_method(values.get("method", "fitnet"))
    for name, attr in (("T", "temperature"), ("alpha", "alpha")):
        if method.option(name) is None and attr not in changes:
            values.pop(attr)
    return TrainConfig(**values)


@pytest.mark.parametrize("method,changes", [
    ("scratch", {}),
    ("kd", {}),
    ("fitnet", {}),  # 1 hint epoch on top of 1 KD epoch (issue 12)
    ("dkd", {}),
    ("lskd", {}),
    ("fitnet-dkd", {"lr": 0.05}),
    ("mimic", {"epochs": 2, "lr": 0.05}),
    ("ban", {"generations": 2}),
    ("kd", {"augment": True}),
])
def test_each_method_beats_chance(method, changes, dataset, teacher, tmp_path) -> None:
    out = tmp_path / "run"
    result = train_student(SPEC, [teacher], dataset, _config(tmp_path, method=method, **changes), out,
                           progress=False)
    assert result.test_acc > 0.15, result  # chance is 0.10
    assert result.val_acc is not None and result.val_acc > 0.15
    stored = read_json(out / "result.json")
    assert stored["test_acc"] == pytest.approx(result.test_acc)
    assert TrainResult.from_dict(json.loads(json.dumps(result.to_dict()))).to_dict() == result.to_dict()
    model, info = load_student(out / "checkpoint.pt")
    assert info.method == method and info.spec == SPEC.to_dict()
    if method.startswith("fitnet"):
        stages = [r["stage"] for r in read_jsonl(out / "metrics.jsonl")]
        assert stages == ["hint", "kd" if method == "fitnet" else "dkd"]
        # equal resolutions: the teacher's 14x14 stage end guides the student's 14x14 layer (issue 12)
        assert list(result.hint["hint_shape"][1:]) == list(result.hint["guided_shape"][1:]) == [14, 14]
        # the hint epoch comes on top of --epochs; its R^2 is logged and kept in result.json
        assert result.epochs_done == 2 and stored["hint_epochs_done"] == 1
        hint_record = read_jsonl(out / "metrics.jsonl")[0]
        assert 0.0 < hint_record["r2_mean"] <= 1.0
        assert stored["hint_r2"] == [hint_record["r2_mean"]]
    if changes.get("augment"):  # augmented images: the teacher runs per batch, nothing cached
        assert not list((tmp_path / "cache").glob("*.npy"))
    elif method in ("kd", "dkd", "lskd", "fitnet", "fitnet-dkd", "mimic"):
        assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    if method == "ban":
        assert [g["generation"] for g in result.generations] == [1, 2]
        assert [g["seed"] for g in result.generations] == [0, 1]  # each generation its own seed
        assert result.ensemble_test_acc is not None and result.ensemble_test_acc > 0.15
        assert (out / "gen2" / "checkpoint.pt").exists()


def test_teacher_ensemble_probs(dataset, teacher, tmp_path) -> None:
    torch.manual_seed(1)
    other = _small_cnn().eval()  # an untrained second teacher, averaged in probability space
    result = train_student(SPEC, [teacher, other], dataset,
                           _config(tmp_path, method="kd", ensemble="probs"), tmp_path / "ens", progress=False)
    assert result.test_acc > 0.15
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["extra"]["train_state"]["model"]


def test_resume_after_interrupted_epoch_equals_uninterrupted(dataset, teacher, tmp_path, monkeypatch) -> None:
    config = _config(tmp_path, method="fitnet", epochs=3, max_train_samples=600, batch_size=32)
    straight = train_student(SPEC, [teacher], dataset, config, tmp_path / "a", progress=False)

    real_check = trainer_module._check_finite

    def interrupt(loss, stage, epoch, batch, lr):
        if epoch == 2 and batch == 5:  # in the third epoch, after two saved epochs
            raise KeyboardInterrupt
        real_check(loss, stage, epoch, batch, lr)

    monkeypatch.setattr(trainer_module, "_check_finite", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_student(SPEC, [teacher], dataset, config, tmp_path / "b", progress=False)
    assert len(read_jsonl(tmp_path / "b" / "metrics.jsonl")) == 2
    monkeypatch.setattr(trainer_module, "_check_finite", real_check)
    resumed = train_student(SPEC, [teacher], dataset, config, tmp_path / "b", progress=False)

    a, b = _state(tmp_path / "a" / "checkpoint.pt"), _state(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_acc == straight.test_acc and resumed.val_acc == straight.val_acc

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]  # timings

    assert strip(read_jsonl(tmp_path / "a" / "metrics.jsonl")) == strip(read_jsonl(tmp_path / "b" / "metrics.jsonl"))


def test_longer_horizon_continues_and_finished_run_is_not_retrained(dataset, tmp_path) -> None:
    out = tmp_path / "grow"
    first = train_student(SPEC, [], dataset, _config(tmp_path, method="scratch", max_train_samples=400),
                          out, progress=False)
    line1 = read_jsonl(out / "metrics.jsonl")
    second = train_student(SPEC, [], dataset, _config(tmp_path, method="scratch", max_train_samples=400,
                                                      epochs=2), out, progress=False)
    rows = read_jsonl(out / "metrics.jsonl")
    assert (first.epochs_done, second.epochs_done, len(rows)) == (1, 2, 2)
    assert rows[0] == line1[0]
    again = train_student(SPEC, [], dataset, _config(tmp_path, method="scratch", max_train_samples=400,
                                                     epochs=2), out, progress=False)
    assert again.seconds == second.seconds and len(read_jsonl(out / "metrics.jsonl")) == 2
    assert again.model is not None
    with pytest.raises(EdgekdError, match="different configuration"):
        train_student(SPEC, [], dataset, _config(tmp_path, method="scratch", max_train_samples=400,
                                                 epochs=2, seed=5), out, progress=False)


def test_folder_trained_from_other_teacher_or_data_is_refused(dataset, teacher, tmp_path) -> None:
    """Reusing a training folder with another teacher or data set is refused, whether the run
    finished (result.json) or stopped mid-way (checkpoint only), instead of silently returning
    or resuming the other run."""
    from edgekd.inputs.data import make_dataset

    out = tmp_path / "kd"
    config = _config(tmp_path, method="kd", max_train_samples=400)
    train_student(SPEC, [teacher], dataset, config, out, progress=False)
    other_teacher = copy.deepcopy(teacher)
    with torch.no_grad():
        next(other_teacher.parameters()).add_(0.01)
    with pytest.raises(EdgekdError, match="different teacher"):
        train_student(SPEC, [other_teacher], dataset, config, out, progress=False)
    (out / "result.json").unlink()  # as if killed after the last checkpoint
    other_data = make_dataset(name="mnist-3k-b", source="test", x_train=dataset.x_train[::-1].copy(),
                              y_train=dataset.y_train[::-1].copy(), x_test=dataset.x_test,
                              y_test=dataset.y_test, classes=dataset.classes)
    with pytest.raises(EdgekdError, match="different data set"):
        train_student(SPEC, [teacher], other_data, config, out, progress=False)


class _NaNTeacher(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), float("nan"))


@pytest.mark.parametrize("augment", [False, True])  # cached teacher logits, or live per batch
def test_nan_teacher_is_named_not_the_learning_rate(dataset, tmp_path, augment) -> None:
    # issue 16.11: this used to say "loss became nan ...: lower --lr", which cannot help
    with pytest.raises(EdgekdError, match=r"teacher 1 outputs nan or inf .* the teacher is broken") as caught:
        train_student(SPEC, [_NaNTeacher()], dataset, _config(tmp_path, method="kd", augment=augment),
                      tmp_path / "nan", progress=False)
    assert "--lr" not in str(caught.value)


def test_teacher_cache_is_reused_and_invalidated(dataset, teacher, tmp_path) -> None:
    calls = []
    handle = teacher.register_forward_hook(lambda *_: calls.append(1))
    try:
        train_student(SPEC, [teacher], dataset, _config(tmp_path, method="kd", max_train_samples=300),
                      tmp_path / "one", progress=False)
        files = list((tmp_path / "cache").glob("*.npy"))
        assert len(files) == 1 and calls
        calls.clear()
        train_student(SPEC, [teacher], dataset, _config(tmp_path, method="kd", max_train_samples=300, seed=3),
                      tmp_path / "two", progress=False)
        assert not calls  # reused: no teacher forward pass at all
    finally:
        handle.remove()
    changed = _small_cnn()
    changed.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        changed[0].weight.add_(0.01)
    train_student(SPEC, [changed.eval()], dataset, _config(tmp_path, method="kd", max_train_samples=300),
                  tmp_path / "three", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_bad_checkpoints_are_user_errors(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgekdError, match="cannot be read"):
        load_student(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(EdgekdError, match="not an edgekd student checkpoint"):
        load_student(foreign)
    with pytest.raises(EdgekdError, match="no such file"):
        load_student(tmp_path / "missing.pt")


def test_config_errors_are_one_line(dataset, tmp_path) -> None:
    with pytest.raises(EdgekdError, match="unknown method"):
        TrainConfig(method="magic")
    with pytest.raises(EdgekdError, match="hint_epochs >= 1"):
        TrainConfig(method="fitnet", epochs=2, hint_epochs=0)
    TrainConfig(method="fitnet", epochs=2, hint_epochs=2)  # hint epochs come on top (issue 12)
    with pytest.raises(EdgekdError, match="hint_lr"):
        TrainConfig(method="fitnet", hint_lr=0.0)
    with pytest.raises(EdgekdError, match="ensemble logits"):
        TrainConfig(method="mimic", ensemble="probs")
    with pytest.raises(EdgekdError, match="needs a teacher"):
        train_student(SPEC, [], dataset, TrainConfig(method="kd", epochs=1), tmp_path, progress=False)


def test_fitnet_hint_epochs_on_top_and_r2_plateau(dataset, teacher, tmp_path) -> None:
    """Issue 12: --hint-epochs is a budget added to --epochs; the hint stage stops early when
    the regressor's R^2 plateaus, and the KD stage still gets all of --epochs."""
    small = dict(method="fitnet", max_train_samples=600, batch_size=32, hint_min_r2=-1.0)  # 18 steps an epoch
    full = train_student(SPEC, [teacher], dataset, _config(tmp_path, epochs=2, hint_epochs=3, hint_patience=0,
                                                           **small), tmp_path / "full", progress=False)
    records = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["hint"] * 3 + ["kd"] * 2
    assert full.epochs_done == 5 and full.hint_epochs_done == 3 and len(full.hint_r2) == 3
    assert full.hint_r2 == [r["r2_mean"] for r in records[:3]]
    assert full.hint_r2[-1] > full.hint_r2[0]  # the own-Adam hint stage improves the fit
    # a plateau rule that nothing can pass: the stage ends after patience + 1 epochs
    stop = train_student(SPEC, [teacher], dataset, _config(tmp_path, epochs=2, hint_epochs=4, hint_patience=1,
                                                           hint_min_delta=10.0, **small),
                         tmp_path / "stop", progress=False)
    records = read_jsonl(tmp_path / "stop" / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["hint", "hint", "kd", "kd"]
    assert "plateau" in records[1]["hint_stop"] and stop.hint_epochs_done == 2
    assert stop.epochs_done == 4
    # a finished run is returned as it is (its hint epochs do not count against --epochs)
    again = train_student(SPEC, [teacher], dataset, _config(tmp_path, epochs=2, hint_epochs=4, hint_patience=1,
                                                            hint_min_delta=10.0, **small),
                          tmp_path / "stop", progress=False)
    assert again.epochs_done == 4 and len(read_jsonl(tmp_path / "stop" / "metrics.jsonl")) == 4
