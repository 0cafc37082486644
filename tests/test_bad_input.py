"""Issue 16, items 10-11: bad input gives one line (``error: what: what to do``, exit 2), never a
traceback, a MemoryError or a silently wrong answer; messages name the real cause."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd_deploy import onnxmeta
from edgekd_deploy.errors import DeployError
from edgekd.core.checkpoint import read_checkpoint
from edgekd.cli.cli import cli
from edgekd.inputs.data import make_dataset
from edgekd.inputs.loaders import load_dataset
from edgekd.distill import TrainConfig, train_student
from edgekd.core.errors import EdgekdError
from edgekd.ship.export import export_onnx
from edgekd.search.space import Stage, StudentSpec, build
from edgekd.inputs.teachers import load_teacher

REPO = Path(__file__).resolve().parents[1]
SPEC = StudentSpec(family="plain", input=(1, 28, 28), classes=10, stages=(Stage(4, 1, 2),))


def _deploy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _one_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(n in last for n in needles), last


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return export_onnx(build(SPEC), SPEC.input, tmp_path_factory.mktemp("m") / "m.onnx",
                       metadata={onnxmeta.NORMALIZATION: {"mean": [0.13], "std": [0.31]}})


# ----------------------------------------------------------------------------- deploy kit
@pytest.mark.parametrize("labels, needle", [
    (np.array([0, 1, -1, 2]), "non-negative integers"),
    (np.array([0.0, 1.0, 2.0, 3.0]), "non-negative integers"),
    (np.array([0, 1, 2, 99]), "label 99 is out of range for a model with 10 classes"),
])
def test_deploy_check_refuses_labels_that_are_not_class_indices(labels, needle, onnx_model,
                                                                tmp_path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 1, 28, 28), np.uint8), y=labels)
    _one_line(_deploy("check", str(onnx_model), "--data", str(data), cwd=tmp_path), needle)


@pytest.mark.parametrize("raw, needle", [
    ('{"mean": [0.1], "std": [0.0]}', "zero, negative or not finite"),
    ('{"mean": [0.1], "std": [-2]}', "zero, negative or not finite"),
    ('{"mean": [0.1, 0.2], "std": [0.3]}', "2 mean(s) and 1 std(s)"),
    ('{"mean": [0.1', "is not"),
    ('[1, 2]', "is not"),
])
def test_malformed_normalization_metadata_is_one_line(raw, needle) -> None:
    with pytest.raises(DeployError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        onnxmeta.normalization_of({onnxmeta.NORMALIZATION: raw})
    assert onnxmeta.normalization_of({}) is None
    assert onnxmeta.normalization_of({onnxmeta.NORMALIZATION: '{"mean": [0.5], "std": [2]}'}) == ([0.5], [2.0])


def test_deploy_bench_refuses_a_zero_size_batch(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 1, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "zero.onnx")
    _one_line(_deploy("bench", str(tmp_path / "zero.onnx"), "--iters", "2", cwd=tmp_path),
              "zero-size dimension")


# ----------------------------------------------------------------------------- edgekd inputs
def test_a_huge_label_is_refused_not_a_memory_error(tmp_path) -> None:
    x = np.zeros((4, 1, 8, 8), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.array([0, 1, 2, 10**9]), x_test=x,
             y_test=np.array([0, 1, 2, 3]))
    with pytest.raises(EdgekdError, match="largest label is 1000000000"):
        load_dataset(str(tmp_path / "d.npz"))


def test_an_image_decompression_bomb_is_refused(tmp_path, monkeypatch) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "imgs" / split / label
            folder.mkdir(parents=True)
            Image.new("L", (16, 16)).save(folder / "0.png")
    Image.new("L", (64, 64)).save(tmp_path / "imgs" / "train" / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16 * 16 * 2)  # 64x64 counts as a bomb now
    with pytest.raises(EdgekdError, match="bomb.png' cannot be read"):
        load_dataset(str(tmp_path / "imgs"))


def test_a_zip_that_is_not_an_export_archive_is_one_line_without_a_logged_traceback(
        tmp_path, caplog, capfd) -> None:
    path = tmp_path / "fake.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/archive_format", "pt2")
    with caplog.at_level(logging.DEBUG), pytest.raises(EdgekdError, match="cannot load the torch.export"):
        load_teacher(str(path), trust_code=True)
    assert "Traceback" not in capfd.readouterr().err + caplog.text


@pytest.mark.parametrize("args", [["--epochs", str(10**20)], ["--candidates", str(10**6)]])
def test_an_absurd_plan_needs_yes(args, tmp_path) -> None:
    result = CliRunner().invoke(cli, ["compress", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2 and "--yes" in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_an_absurd_export_batch_is_a_usage_error(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--batch", str(10**12)])
    assert result.exit_code == 2 and "Traceback" not in result.output


# ----------------------------------------------------------------------------- disks, messages
def test_a_full_disk_is_one_line(tmp_path, monkeypatch) -> None:
    import edgekd.core.fileio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "spec.json"))

    (tmp_path / "spec.json").write_text(json.dumps(SPEC.to_dict()))
    monkeypatch.setattr(edgekd.core.fileio, "atomic_write_json", full)
    result = CliRunner().invoke(cli, ["train", "--student", str(tmp_path / "spec.json"), "--method",
                                      "scratch", "--epochs", "1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and "No space left" in result.output
    assert "free some space" in result.output and "Traceback" not in result.output


def test_a_full_disk_at_export_is_not_called_an_untraceable_model(tmp_path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    with pytest.raises(OSError) as caught:
        export_onnx(build(SPEC), SPEC.input, tmp_path / "m.onnx")
    assert caught.value.errno == errno.ENOSPC


def test_a_teacher_that_outputs_nan_is_named_not_the_learning_rate(tmp_path) -> None:
    class NanTeacher(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 10), float("nan"))

    full = load_dataset()
    data = make_dataset(name="tiny", source="test", classes=full.classes,
                        x_train=full.x_train[:64], y_train=full.y_train[:64],
                        x_test=full.x_test[:16], y_test=full.y_test[:16])
    with pytest.raises(EdgekdError, match="teacher 1 outputs nan.*teacher is broken") as caught:
        train_student(SPEC, [NanTeacher()], data, TrainConfig(method="kd", epochs=1, batch_size=16,
                                                             use_cache=False), tmp_path / "t",
                      teacher_fps=["nan"], progress=False)
    assert "--lr" not in str(caught.value)


def test_a_corrupt_checkpoint_names_the_command_that_retrains(tmp_path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(EdgekdError, match="compress --out RUN --resume"):
        read_checkpoint(tmp_path / "checkpoint.pt")
