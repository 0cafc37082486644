"""Honest selection on real MNIST images: --val-data, the warning when the teacher has seen the
validation images (and none when it has not), the arm rule that bias cannot tip, and the hint
stage that stops when it does not learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import read_jsonl
from edgekd.distill import TrainConfig, train_student
from edgekd.inputs.data import make_dataset, split_train_val, with_validation
from edgekd.inputs.loaders import load_dataset
from edgekd.run.selection import bias_line, choose_arm, teacher_bias, teacher_clearly_stronger
from edgekd.search.space import Stage, StudentSpec, build

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 1, 2), Stage(16, 1, 2)))
VAL_FRACTION = 0.3


@pytest.fixture(scope="module")
def full():
    return load_dataset(None)


@pytest.fixture(scope="module")
def small(full):
    """600 training images (180 of them the validation split), 1000 test images."""
    return make_dataset(name="mnist-600", source="test", x_train=full.x_train[:600], y_train=full.y_train[:600],
                        x_test=full.x_test[:1000], y_test=full.y_test[:1000], classes=full.classes)


def _teacher(dataset, indices: np.ndarray, tmp_path) -> nn.Module:
    """A small CNN trained to fit ``dataset``'s training images ``indices`` (20 epochs of Adam)."""
    part = make_dataset(name="part", source="test", x_train=dataset.x_train[indices],
                        y_train=dataset.y_train[indices], x_test=dataset.x_test[:10], y_test=dataset.y_test[:10],
                        classes=dataset.classes)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    config = TrainConfig(method="scratch", epochs=20, batch_size=32, optimizer="adamw", lr=3e-3, val_fraction=0.0)
    return train_student(model, [], part, config, tmp_path, progress=False).model.eval()


def test_a_teacher_that_saw_the_validation_images_is_flagged_and_one_that_did_not_is_not(small, full, tmp_path):
    train_idx, val_idx = split_train_val(len(small.y_train), VAL_FRACTION, 0)
    saw = _teacher(small, np.arange(len(small.y_train)), tmp_path / "saw")
    bias = teacher_bias(saw, small, VAL_FRACTION, 0)
    assert bias["n_val"] == len(val_idx) == 180 and bias["n_test"] == 1000
    assert bias["biased"] and bias["val"] > bias["test"] + 2 * bias["se"]
    line = bias_line(bias)
    assert line is not None and "has seen the validation images" in line and "\n" not in line
    # the same split, a teacher trained without those 180 images: no warning
    unseen = _teacher(small, train_idx, tmp_path / "unseen")
    clean = teacher_bias(unseen, small, VAL_FRACTION, 0)
    assert not clean["biased"] and bias_line(clean) is None
    # --val-data: images neither teacher saw; the teacher that saw the training split is fine there
    given = with_validation(small, make_dataset(name="val", source="test", x_train=full.x_train[2000:2300],
                                                y_train=full.y_train[2000:2300], x_test=full.x_train[2300:2400],
                                                y_test=full.y_train[2300:2400], classes=full.classes), "val.npz")
    separate = teacher_bias(saw, given, VAL_FRACTION, 0)
    assert separate["n_val"] == 400 and separate["val_source"] == "given" and not separate["biased"]


def test_the_arm_rule_handicaps_distilled_arms_by_the_teachers_gap() -> None:
    uses = {"kd": True, "scratch": False}
    biased = {"biased": True, "gap": 0.03, "test": 0.90}
    assert choose_arm({"kd": 0.92, "scratch": 0.90}, uses, biased)[0] == "scratch"  # 0.89 < 0.90
    assert choose_arm({"kd": 0.94, "scratch": 0.90}, uses, biased)[0] == "kd"      # wins by more than the gap
    assert choose_arm({"kd": 0.92, "scratch": 0.90}, uses, {"biased": False, "gap": 0.03})[0] == "kd"
    assert choose_arm({"kd": 0.90, "scratch": 0.90}, uses, None)[0] == "kd"  # ties: the first listed
    assert choose_arm({"kd": None, "scratch": 0.5}, uses, None)[0] == "scratch"
    assert teacher_clearly_stronger({"test": 0.90}, 0.85) and not teacher_clearly_stronger({"test": 0.90}, 0.89)


def test_val_data_trains_on_every_training_image_and_selects_on_it(small, full, tmp_path) -> None:
    val = make_dataset(name="val", source="test", x_train=full.x_train[3000:3200], y_train=full.y_train[3000:3200],
                       x_test=full.x_train[3200:3300], y_test=full.y_train[3200:3300], classes=full.classes)
    given = with_validation(small, val, "val.npz")
    assert given.fingerprint() != small.fingerprint() and given.describe()["val"] == 300
    result = train_student(SPEC, [], given, TrainConfig(method="scratch", epochs=1, batch_size=32), tmp_path,
                           progress=False)
    assert result.train_samples == 600  # no share held out
    model = result.model.eval()
    from edgekd.distill.evaluate import accuracy, predict_logits
    from edgekd.inputs.data import to_tensor

    on_val = accuracy(predict_logits(model, to_tensor(given.x_val, given.normalization)), torch.as_tensor(given.y_val))
    assert result.val_acc == pytest.approx(on_val) and result.val_acc > 0.15  # above chance (0.1)
    other = make_dataset(name="rgb", source="test", x_train=np.zeros((4, 28, 28, 3), np.uint8),
                         y_train=np.arange(4), x_test=np.zeros((2, 28, 28, 3), np.uint8), y_test=np.arange(2))
    with pytest.raises(EdgekdError, match="--val-data rgb.npz: images are 3x28x28"):
        with_validation(small, other, "rgb.npz")


def test_train_val_data_bad_classes_is_one_line(tmp_path, full) -> None:
    np.savez(tmp_path / "v.npz", x_train=full.x_train[:20], y_train=full.y_train[:20] % 3,
             x_test=full.x_test[:5], y_test=full.y_test[:5] % 3, classes=np.array(["a", "b", "c"]))
    (tmp_path / "s.json").write_text(SPEC.to_json())
    result = CliRunner().invoke(cli, ["train", "--student", str(tmp_path / "s.json"), "--method", "scratch",
                                      "--val-data", str(tmp_path / "v.npz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "classes a, b, c differ" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_hint_stage_that_does_not_learn_stops_and_is_undone(small, tmp_path) -> None:
    """R^2 below --hint-min-r2 after the first hint epoch: the stage ends there (of a 3-epoch
    budget), says why, and KD starts from the initial weights (a near-zero KD lr leaves them)."""
    teacher = _teacher(small, np.arange(len(small.y_train)), tmp_path / "t")
    config = TrainConfig(method="fitnet", epochs=1, hint_epochs=3, hint_min_r2=0.999, batch_size=32, lr=1e-9,
                         weight_decay=0.0, cache_dir=str(tmp_path / "cache"))
    result = train_student(SPEC, [teacher], small, config, tmp_path / "fitnet", progress=False)
    records = read_jsonl(tmp_path / "fitnet" / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["hint", "kd"] and result.hint_epochs_done == 1
    assert "did not learn" in records[0]["hint_stop"] and result.hint_r2[0] < 0.999
    torch.manual_seed(config.seed)
    initial = build(SPEC).state_dict()
    trained = result.model.state_dict()
    convs = [k for k, v in initial.items() if v.ndim == 4]
    assert convs and all(torch.allclose(initial[k], trained[k], atol=1e-6) for k in convs)
    # -1 turns the rule off: the same hint stage runs its whole budget
    off = train_student(SPEC, [teacher], small, TrainConfig(method="fitnet", epochs=1, hint_epochs=2, hint_patience=0,
                                                            hint_min_r2=-1.0, batch_size=32,
                                                            cache_dir=str(tmp_path / "cache")),
                        tmp_path / "off", progress=False)
    assert off.hint_epochs_done == 2 and len(off.hint_r2) == 2
