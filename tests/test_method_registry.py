"""The method registry: a toy method registered at test time trains through `edgekd train`
(touching no existing file), and the built-ins are what the trainer, CLI and pipeline list."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import read_json, read_jsonl
from edgekd.distill import losses
from edgekd.distill.methods import (Batch, LossOut, Method, MethodOption, Stage, StudentOut, TeacherOut,
                                    get_method, method_names, register_method, unregister_method)
from edgekd.search.space import Stage as SpaceStage, StudentSpec

SPEC = StudentSpec("plain", (1, 28, 28), 10, (SpaceStage(8, 1, 2), SpaceStage(16, 1, 2)))

pytestmark = pytest.mark.usefixtures("one_thread")


class SoftOnly:
    """Toy loss: the soft KD term alone (no labels), recording what it was given."""

    calls: list[tuple[tuple[int, ...], tuple[int, ...], float]] = []

    def __init__(self, config) -> None:
        self.temperature = config.option("T")

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        SoftOnly.calls.append((tuple(student_out.logits.shape), tuple(teacher_out.logits.shape), batch.progress))
        loss = losses.kd_soft_loss(student_out.logits, teacher_out.logits, self.temperature)
        return LossOut(loss, {"soft": float(loss.detach())})


class Labels:
    """Toy warm-up loss: cross-entropy; it must get no teacher output."""

    def __init__(self, config) -> None:
        pass

    def forward(self, student_out: StudentOut, teacher_out: TeacherOut, batch: Batch) -> LossOut:
        assert teacher_out.logits is None
        loss = losses.cross_entropy(student_out.logits, batch.y)
        return LossOut(loss, {"warm_ce": float(loss.detach())})


@pytest.fixture
def toy_method():
    SoftOnly.calls.clear()
    method = register_method(Method(
        "toy-soft", "one label epoch, then soft targets only", compress=False,
        stages=(Stage("warm", Labels, epochs=lambda config: 1), Stage("soft", SoftOnly, teacher=True)),
        options=(MethodOption("T", 4.0, "temperature of the soft targets", low_open=True),)))
    yield method
    unregister_method("toy-soft")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """A small student trained on labels; its edgekd checkpoint is a valid --teacher."""
    from edgekd.distill import TrainConfig, train_student
    from edgekd.inputs.loaders import load_dataset

    folder = tmp_path_factory.mktemp("toy-teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one_thread is function-scoped: it is not active in a module fixture
    result = train_student(SPEC, [], load_dataset(None),
                           TrainConfig(method="scratch", epochs=2, batch_size=16, max_train_samples=1500,
                                       lr=0.2), folder, progress=False)
    torch.set_num_threads(threads)
    assert result.test_acc > 0.4  # chance is 0.10
    return result.checkpoint


def test_a_toy_method_trains_through_edgekd_train(toy_method, teacher_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    helped = CliRunner().invoke(cli, ["train", "--help"])
    assert "toy-soft" in helped.output  # --method lists it; 'edgekd methods' says what it does
    assert "toy-soft" in (listed := CliRunner().invoke(cli, ["methods"]).output) and "soft targets only" in listed
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPEC.to_json())
    out = tmp_path / "run"
    args = ["train", "--student", str(spec_file), "--teacher", str(teacher_file),
            "--method", "toy-soft", "--epochs", "3", "--max-train-samples", "1200", "--batch-size", "16",
            "--lr", "0.2", "--temperature", "2", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["warm", "soft", "soft"]
    assert set(records[0]["loss_parts"]) == {"warm_ce"} and set(records[1]["loss_parts"]) == {"soft"}
    assert records[2]["loss"] < records[1]["loss"]  # the soft term goes down over the stage
    steps = 1200 // 16
    assert len(SoftOnly.calls) == 2 * steps  # two epochs of the soft stage, one call per step
    assert SoftOnly.calls[0][:2] == ((16, 10), (16, 10))
    progress = [c[2] for c in SoftOnly.calls]
    assert progress[0] == 0.0 and progress == sorted(progress) and progress[-1] < 1.0
    stored = read_json(out / "result.json")
    assert stored["method"] == "toy-soft" and stored["test_acc"] > 0.25  # chance is 0.10
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1  # teacher logits cached like kd's


def test_methods_without_a_teacher_are_refused_and_unknown_names_listed(toy_method, tmp_path) -> None:
    from edgekd.distill import TrainConfig, train_student
    from edgekd.inputs.loaders import load_dataset

    with pytest.raises(EdgekdError, match="method 'toy-soft' needs a teacher"):
        train_student(SPEC, [], load_dataset(None), TrainConfig(method="toy-soft"), tmp_path,
                      progress=False)
    with pytest.raises(EdgekdError, match="unknown method 'nope': use one of scratch, kd, ") as error:
        get_method("nope")
    assert str(error.value).endswith(", ".join(method_names()))  # every registered name, toy-soft last
    assert str(error.value).endswith("ban, toy-soft")
    with pytest.raises(ValueError, match="already registered"):
        register_method(toy_method)


def test_builtins_and_what_compress_can_search_with() -> None:
    assert {"scratch", "kd", "fitnet", "mimic", "ban"} <= set(method_names())
    assert "ban" not in method_names(compress=True)
    fitnet = get_method("fitnet")
    assert [s.name for s in fitnet.stages] == ["hint", "kd"] and fitnet.has_hint_stage
    assert not get_method("scratch").uses_teacher and not get_method("scratch").needs_teacher
    assert get_method("ban").train is not None
    with pytest.raises(ValueError, match="last stage"):
        Method("bad", "x", stages=(Stage("a", Labels, epochs=lambda c: 1),))
