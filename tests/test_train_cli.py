"""`edgekd train` / `edgekd layers` end to end on the shipped MNIST subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgekd.core.checkpoint import load_student
from edgekd.cli.cli import cli
from edgekd.inputs.data import to_tensor
from edgekd.inputs.loaders import load_dataset
from edgekd.core.fileio import read_json, read_jsonl
from edgekd.search.space import Stage, StudentSpec

SPEC = StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 1, 2), Stage(16, 1, 2)))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """The built-in CNN architecture, trained briefly, saved as a state_dict (--arch edgekd:builtin-cnn)."""
    from edgekd.distill import TrainConfig, train_student
    from edgekd.inputs.teachers import BuiltinCNN

    folder = tmp_path_factory.mktemp("cli-teacher")
    torch.manual_seed(0)
    result = train_student(BuiltinCNN(), [], load_dataset(None),
                           TrainConfig(method="scratch", epochs=1, batch_size=32, max_train_samples=1500,
                                       optimizer="adamw", lr=3e-3), folder / "run", progress=False)
    path = folder / "teacher.pt"
    torch.save(result.model.state_dict(), path)
    return path


def test_train_fitnet_checkpoint_reloads_and_reproduces_accuracy(teacher_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPEC.to_json())
    out = tmp_path / "run"
    args = ["train", "--student", str(spec_file), "--teacher", str(teacher_file), "--arch", "edgekd:builtin-cnn",
            "--method", "fitnet", "--epochs", "1", "--hint-epochs", "1", "--max-train-samples", "1200",
            "--batch-size", "16", "--lr", "0.2", "--temperature", "2", "--alpha", "0.5", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "fitnet: val acc" in result.output and "hint layer" in result.output
    # one plain line per epoch where output is not a terminal (issue 15, item 3)
    epochs = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2 (hint)", "epoch 2/2 (kd)"]
    assert "val " in epochs[1] and "loss " in epochs[0]
    stored = read_json(out / "result.json")
    assert stored["method"] == "fitnet" and stored["epochs_done"] == 2  # 1 hint epoch on top of 1 KD epoch
    assert stored["hint_epochs_done"] == 1 and len(stored["hint_r2"]) == 1
    assert [r["stage"] for r in read_jsonl(out / "metrics.jsonl")] == ["hint", "kd"]

    model, info = load_student(out / "checkpoint.pt")
    assert info.spec == SPEC.to_dict() and info.method == "fitnet"
    assert info.classes == [str(i) for i in range(10)]
    ds = load_dataset(None)
    assert info.normalization == ds.normalization.to_dict()
    with torch.no_grad():
        logits = model(to_tensor(ds.x_test, ds.normalization))
    acc = float((logits.argmax(1) == torch.as_tensor(ds.y_test)).float().mean())
    assert acc == pytest.approx(stored["test_acc"], abs=1e-6)
    assert info.metrics["test_acc"] == pytest.approx(stored["test_acc"])
    assert acc > 0.15

    # the same command again: finished, nothing retrained
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and len(read_jsonl(out / "metrics.jsonl")) == 2


def test_train_student_by_candidate_id(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "candidates.jsonl").write_text(json.dumps({"id": SPEC.id, "spec": SPEC.to_dict()}) + "\n")
    result = CliRunner().invoke(cli, ["train", "--student", SPEC.id, "--method", "scratch", "--epochs", "1",
                                      "--max-train-samples", "200", "--batch-size", "32", "--out", "r"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "spec.json").read_text()) == SPEC.to_dict()
    missing = CliRunner().invoke(cli, ["train", "--student", "0123456789ab", "--method", "scratch"])
    assert missing.exit_code == 2
    assert "error: student id '0123456789ab' is not in" in missing.stderr


def test_train_errors_are_one_line(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["train", "--student", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "no such file" in result.stderr and "Traceback" not in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(cli, ["train", "--student", str(bad)])
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


@pytest.mark.parametrize("mode, stages", [("single", "one"), ("joint", "one"), ("multi", "all")])
def test_layers_marks_exactly_the_pairs_training_uses(teacher_file, tmp_path, mode, stages) -> None:
    from edgekd.distill.pairing import hint_pairs
    from edgekd.inputs.teachers import BuiltinCNN
    from edgekd.search.space import build

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPEC.to_json())
    teacher = BuiltinCNN()
    teacher.load_state_dict(torch.load(teacher_file, weights_only=True))
    # what the trainer pairs (edgekd.distill.hint_training.HintTraining.setup calls hint_pairs this way)
    pairs = hint_pairs(teacher.eval(), build(SPEC), (1, 28, 28), stages=stages)
    arch = ["--arch", "edgekd:builtin-cnn", "--hint-mode", mode]
    student_view = CliRunner().invoke(cli, ["layers", str(spec_file), "--teacher", str(teacher_file), *arch])
    teacher_view = CliRunner().invoke(cli, ["layers", str(teacher_file), "--student", str(spec_file), *arch])
    for result in (student_view, teacher_view):
        assert result.exit_code == 0, result.output
    assert (len(pairs) > 1) == (mode == "multi")
    guided = [line.split()[1] for line in student_view.output.splitlines() if "│ guided " in line]
    hints = [line.split()[1] for line in teacher_view.output.splitlines() if "│ hint " in line]
    assert guided == [p.guided_layer for p in pairs] and hints == [p.hint_layer for p in pairs]
    for view in (student_view, teacher_view):
        lines = [line for line in view.output.splitlines() if line.startswith("pair ")]
        assert lines == [f"pair {i}: hint {p.hint_layer} ({'x'.join(map(str, p.hint_shape))}) <- guided "
                         f"{p.guided_layer} ({'x'.join(map(str, p.guided_shape))})" for i, p in enumerate(pairs, 1)]


def test_layers_of_a_state_dict_teacher(teacher_file) -> None:
    result = CliRunner().invoke(cli, ["layers", str(teacher_file), "--arch", "edgekd:builtin-cnn"])
    assert result.exit_code == 0, result.output
    assert "features.1.2" in result.output and "give --student" in result.output
    assert "│ hint " not in result.output and "pair 1" not in result.output  # no student: nothing to pair


def test_student_id_is_found_where_search_writes_it(teacher_file, tmp_path, monkeypatch) -> None:
    """`edgekd search` writes runs/search-PROFILE/candidates.jsonl while train/layers looked in
    ./candidates.jsonl only, through an option named like compress's number --candidates
    (issue 15, item 6). Now: found with no option, or with --search RUN|FILE."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "search-host-cpu"
    folder.mkdir(parents=True)
    (folder / "candidates.jsonl").write_text(json.dumps({"id": SPEC.id, "spec": SPEC.to_dict()}) + "\n")
    for args in ([], ["--search", "runs/search-host-cpu"],
                 ["--search", "runs/search-host-cpu/candidates.jsonl"],
                 ["--candidates", "runs/search-host-cpu/candidates.jsonl"]):  # the old name
        result = CliRunner().invoke(cli, ["layers", SPEC.id, *args, "--teacher", str(teacher_file),
                                          "--arch", "edgekd:builtin-cnn"])
        assert result.exit_code == 0, (args, result.output)
        assert f"student {SPEC.id}" in result.output
    missing = CliRunner().invoke(cli, ["layers", SPEC.id, "--search", "runs/nowhere"])
    assert missing.exit_code == 2 and "--search runs/nowhere: no candidates.jsonl" in missing.output
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "--search" in help_text and "--candidates" not in help_text


def test_train_hint_flags_reach_the_trainer(teacher_file, tmp_path, monkeypatch) -> None:
    """--hint-mode/--hint-beta/--hint-lr/--hint-patience/--hint-min-delta (issue 12)."""
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 1, 1), Stage(8, 1, 2))).to_json())
    base = ["train", "--student", str(spec_file), "--teacher", str(teacher_file), "--arch", "edgekd:builtin-cnn",
            "--method", "fitnet-dkd", "--epochs", "1", "--max-train-samples", "600", "--batch-size", "32",
            "--lr", "0.05"]
    multi = CliRunner().invoke(cli, base + ["--hint-mode", "multi", "--hint-epochs", "2", "--hint-lr", "0.002",
                                            "--hint-patience", "1", "--hint-min-delta", "0.5",
                                            "--out", str(tmp_path / "multi")])
    assert multi.exit_code == 0, multi.output
    stored = read_json(tmp_path / "multi" / "result.json")
    assert {k: stored["config"][k] for k in ("hint_mode", "hint_lr", "hint_patience", "hint_min_delta")} == \
        {"hint_mode": "multi", "hint_lr": 0.002, "hint_patience": 1, "hint_min_delta": 0.5}
    assert len(stored["hints"]) >= 2 and multi.output.count("hint layer ") == len(stored["hints"])
    assert all(h["hint_shape"][1:] == h["guided_shape"][1:] for h in stored["hints"])
    joint = CliRunner().invoke(cli, base + ["--hint-mode", "joint", "--hint-beta", "0.5", "--hint-epochs", "0",
                                            "--out", str(tmp_path / "joint")])
    assert joint.exit_code == 0, joint.output
    stored = read_json(tmp_path / "joint" / "result.json")
    assert stored["config"]["hint_beta"] == 0.5 and stored["hint_epochs_done"] == 0
    assert "hint" in read_jsonl(tmp_path / "joint" / "metrics.jsonl")[0]["loss_parts"]
    # stage 1 may be skipped only in joint mode: one error line, exit 2
    bad = CliRunner().invoke(cli, base + ["--hint-epochs", "0", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "hint_epochs >= 1" in bad.stderr and "Traceback" not in bad.output
    bad = CliRunner().invoke(cli, base + ["--hint-mode", "every"])
    assert bad.exit_code == 2 and "every" in bad.stderr
