"""``compress`` refuses what would fail late BEFORE training or run.json (issue 11 item 6),
and every teacher format is tapped and costed (item 5): a torch.export .pt2 teacher trains
fitnet end to end; a TorchScript teacher is refused for fitnet up front, and costs and trains
with kd."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from compress_runs import compress_args, shared_base, tiny_inputs
from edgekd.cli.cli import cli
from edgekd.core.fileio import read_json

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    return base, data, teacher


def _builtin(teacher_path):
    from edgekd.inputs.loaders import load_dataset
    from edgekd.inputs.teachers import load_teacher

    return load_teacher(str(teacher_path), dataset=load_dataset(None)).eval()


@pytest.fixture(scope="module")
def script_teacher(inputs, tmp_path_factory):
    _, _, teacher = inputs
    path = tmp_path_factory.mktemp("ts") / "teacher.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_builtin(teacher)).save(str(path))
    return path


@pytest.fixture(scope="module")
def pt2_teacher(inputs, tmp_path_factory):
    _, _, teacher = inputs
    path = tmp_path_factory.mktemp("pt2") / "teacher.pt2"
    torch.export.save(torch.export.export(_builtin(teacher), (torch.zeros(8, 1, 28, 28),)), str(path))
    return path


def _refused(args: list[str], out, *needles: str) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (out / "run.json").exists(), "refused after the run was started"
    assert not (out / "trials").exists()
    return lines[0]


def test_out_that_is_a_file(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    out = tmp_path / "o"
    out.write_text("not a folder")
    _refused(compress_args(data, teacher, out), tmp_path / "nothing", "is a file")


def test_broken_calibration(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    bad = tmp_path / "cal.json"
    bad.write_text("{not json")
    out = tmp_path / "o"
    _refused(compress_args(data, teacher, out, "--calibration", str(bad)), out, "calibration")


def test_missing_calibration(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    out = tmp_path / "o"
    _refused(compress_args(data, teacher, out, "--calibration", str(tmp_path / "nowhere.json")), out,
             "nowhere.json")


def test_too_few_images_for_parity(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    full = np.load(data)
    small = tmp_path / "small.npz"
    np.savez(small, x_train=full["x_train"][:150], y_train=full["y_train"][:150],
             x_test=full["x_test"][:50], y_test=full["y_test"][:50], classes=full["classes"])
    out = tmp_path / "o"
    # an explicit sample the data cannot give (the default uses all 200 images, said in one line)
    _refused(compress_args(small, teacher, out, "--parity-samples", "256"), out, "200 images",
             "--parity-samples 200")


def test_infeasible_budget(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    out = tmp_path / "o"
    _refused(compress_args(data, teacher, out, "--max-macs", "2K"), out, "smallest")


@pytest.mark.parametrize("method", ["fitnet", "fitnet-dkd", "fitnet-lskd"])
def test_torchscript_teacher_refused_for_every_hint_method(inputs, script_teacher, tmp_path, method) -> None:
    _, data, _ = inputs
    out = tmp_path / "o"
    _refused(compress_args(data, script_teacher, out, "--method", method), out, "TorchScript",
             "--method kd")


def test_torchscript_teacher_refused_for_the_fitnet_baseline(inputs, script_teacher, tmp_path) -> None:
    _, data, _ = inputs
    out = tmp_path / "o"
    _refused(compress_args(data, script_teacher, out, "--method", "kd", "--baselines"), out,
             "TorchScript")


def test_torchscript_teacher_runs_kd_end_to_end(inputs, script_teacher, tmp_path) -> None:
    """The issue's crash: kd trained every trial, then ``cost.module_cost`` failed on the
    ScriptModule. Now the whole run finishes, and the teacher is costed and measured."""
    _, data, teacher = inputs
    out = tmp_path / "o"
    args = compress_args(data, script_teacher, out, "--method", "kd", "--no-bundle",
                         "--candidates", "2", "--epochs", "2", "--min-epochs", "1")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    search = read_json(out / "outcome.json")
    final = read_json(out / "trials" / search["finalists"][0] / "result.json")
    assert final["method"] == "kd" and final["test_acc"] > 0.1  # trained (chance 0.1; 2 tiny epochs)
    from edgekd.search.cost import module_cost

    info = read_json(out / "teacher.json")
    assert info["macs"] == module_cost(_builtin(teacher), (1, 28, 28)).macs > 0
    assert info["test_acc"] > 0.5
    assert (out / "report" / "summary.json").is_file()


def test_torchscript_teacher_is_costed():
    from edgekd.search.cost import module_cost
    from edgekd.inputs.teachers import BuiltinCNN

    model = BuiltinCNN().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = torch.jit.script(model)
    cost = module_cost(script, (1, 28, 28))
    assert cost.macs == module_cost(model, (1, 28, 28)).macs > 0
    from edgekd.search.latency import predict_latency
    from edgekd.inputs.profiles import load_profile

    assert predict_latency(cost, load_profile("host-cpu")).ms > 0  # one whole-graph layer, not 0 ms


def test_pt2_teacher_is_tapped_and_costed_per_image(pt2_teacher, inputs) -> None:
    from edgekd.search.cost import module_cost
    from edgekd.distill.hints import FeatureTap, list_layers
    from edgekd.inputs.teachers import ExportedTeacher

    _, _, teacher = inputs
    exported = ExportedTeacher.load(pt2_teacher)
    plain = _builtin(teacher)
    assert exported.static_batch == 8
    assert module_cost(exported, (1, 28, 28)).macs == module_cost(plain, (1, 28, 28)).macs
    layers = list_layers(exported, (1, 28, 28))
    assert layers, "unflatten should expose the original submodules"
    tap = FeatureTap(exported, layers[len(layers) // 2].name)
    x = torch.randn(11, 1, 28, 28)  # not a multiple of the exported batch
    with torch.no_grad():
        assert tap(x).shape[0] == 11


def test_pt2_teacher_runs_fitnet_end_to_end(inputs, pt2_teacher, tmp_path) -> None:
    _, data, _ = inputs
    out = tmp_path / "o"
    args = compress_args(data, pt2_teacher, out, "--method", "fitnet", "--trust-code", "--no-bundle",
                         "--candidates", "2", "--epochs", "2", "--min-epochs", "1")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    search = read_json(out / "outcome.json")
    final = read_json(out / "trials" / search["finalists"][0] / "result.json")
    assert final["method"] == "fitnet" and final["hint"]["hint_layer"].startswith("program.")
    teacher = read_json(out / "teacher.json")
    assert teacher["macs"] > 0 and teacher["test_acc"] > 0.5
