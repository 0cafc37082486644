"""Honest selection on real MNIST images: --val-data, the warning when the teacher has seen the
validation images (and none when it has not), selection on a half of the test images it never
saw (the other half reported), the arm rule that bias cannot tip, and the hint stage that stops
when it does not learn."""

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
from edgekd.run.selection import bias_line, carve_selection_split, choose_arm, teacher_bias, teacher_clearly_stronger
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
    # a carved split is one the teacher never saw: no handicap
    carved = {**biased, "carved": {"selection": 500, "report": 500, "seed": 0}}
    assert choose_arm({"kd": 0.92, "scratch": 0.90}, uses, carved) == ("kd", {"kd": 0.92, "scratch": 0.90})


def _rows(x: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in x)


def test_a_biased_split_gives_way_to_a_seeded_half_of_the_test_images(small, full) -> None:
    bias = {"biased": True, "gap": 0.05}
    carved = carve_selection_split(small, bias, seed=3)
    assert bias["carved"] == {"selection": 500, "report": 500, "seed": 3}
    assert carved.x_train is small.x_train and len(carved.y_val) == len(carved.y_test) == 500
    # two disjoint halves that together are the test images, labels with their images
    assert _rows(np.concatenate([carved.x_val, carved.x_test])) == _rows(small.x_test)
    assert not set(_rows(carved.x_val)) & set(_rows(carved.x_test))
    lookup = {image.tobytes(): label for image, label in zip(small.x_test, small.y_test)}
    assert all(lookup[image.tobytes()] == label for image, label in zip(carved.x_val, carved.y_val))
    # the seed fixes the halves (a resumed run meets the same data); another seed draws others
    assert carve_selection_split(small, {"biased": True}, 3).fingerprint() == carved.fingerprint()
    assert carve_selection_split(small, {"biased": True}, 4).fingerprint() != carved.fingerprint()
    # nothing to carve: an unbiased split, given validation images, a test set too small to halve
    assert carve_selection_split(small, {"biased": False}, 3) is small
    given = with_validation(small, small, "same")
    assert carve_selection_split(given, {"biased": True}, 3) is given
    few = make_dataset(name="few", source="test", x_train=small.x_train, y_train=small.y_train,
                       x_test=small.x_test[:150], y_test=small.y_test[:150], classes=small.classes)
    unchanged = {"biased": True}
    assert carve_selection_split(few, unchanged, 3) is few and "carved" not in unchanged
    line = bias_line({"biased": True, "val": 0.99, "test": 0.9, "gap": 0.09, "carved": bias["carved"]})
    assert "selected on 500 of the test images" in line and "the other 500" in line and "\n" not in line


def test_compress_selects_on_test_images_the_teacher_never_saw_and_reports_on_the_others(full, tmp_path) -> None:
    """A teacher that memorised its 400 training images: compress warns once, selects every
    student on a seeded half of the 400 test images, trains on every training image, and
    measures every reported figure (students and teacher) on the other half."""
    from compress_runs import TINY, run_cli

    from edgekd.core.checkpoint import load_student
    from edgekd.core.fileio import read_json
    from edgekd.distill.builtin_teacher import TeacherRecipe, builtin_teacher, builtin_teacher_path
    from edgekd.distill.evaluate import accuracy, predict_logits
    from edgekd.inputs.data import to_tensor

    np.savez(tmp_path / "d.npz", x_train=full.x_train[:400], y_train=full.y_train[:400],
             x_test=full.x_test[:400], y_test=full.y_test[:400], classes=np.array(full.classes))
    data = load_dataset(str(tmp_path / "d.npz"))
    teacher = builtin_teacher(data, cache_dir=tmp_path / "cache", epochs=15, progress=False)
    bias = teacher_bias(teacher, data, TrainConfig.val_fraction, 0)
    assert bias["biased"], bias  # the premise: it fits its training images, the validation split among them
    teacher_path = builtin_teacher_path(data, TeacherRecipe(epochs=15), cache_dir=tmp_path / "cache")
    out = tmp_path / "run"
    proc = run_cli(["compress", "--data", str(tmp_path / "d.npz"), "--teacher", str(teacher_path),
                    "--out", str(out), *TINY, "--baselines"], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "has seen the validation images" in line]
    assert len(warnings) == 1 and "selected on 200 of the test images" in warnings[0]
    outcome = read_json(out / "outcome.json")
    assert outcome["teacher_bias"]["carved"] == {"selection": 200, "report": 200, "seed": 0}
    assert outcome["final_retrain"] is None  # the trials trained on every training image already
    carved = carve_selection_split(data, {"biased": True}, 0)
    x_sel, x_rep = to_tensor(carved.x_val, data.normalization), to_tensor(carved.x_test, data.normalization)
    for method, trial in outcome["baselines"].items():
        result = read_json(out / "trials" / trial / "result.json")
        assert result["train_samples"] == 400  # no share of the training images held out
        model, _ = load_student(out / "trials" / trial / "checkpoint.pt")
        assert result["val_acc"] == pytest.approx(accuracy(predict_logits(model, x_sel), torch.as_tensor(carved.y_val)))
        assert result["test_acc"] == pytest.approx(accuracy(predict_logits(model, x_rep), torch.as_tensor(carved.y_test)))
    assert outcome["arm_scores"] == pytest.approx({m: read_json(out / "trials" / t / "result.json")["val_acc"]
                                                    for m, t in outcome["baselines"].items()})  # no handicap
    on_report = accuracy(predict_logits(teacher, x_rep), torch.as_tensor(carved.y_test))
    assert read_json(out / "teacher.json")["test_acc"] == pytest.approx(on_report)
    text = (out / "report" / "report.md").read_text()
    assert "selected on 200 of the test images" in text and "is on the other 200" in text


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
