"""Every stage after training takes its models from one place (``edgekd.run.ship_stages.on_cpu``),
which moves them to the CPU: proved on a CPU-only machine by wrapping the models as training on a
GPU would leave them. ``LeftOnGpu`` behaves like a module whose weights are on ``cuda:0``: called on
CPU tensors it raises PyTorch's device-mismatch error, until ``.to("cpu")`` (or ``.cpu()``) moves it.
The teacher's stage (MACs, test accuracy, ONNX export with parity) and the students' export run
with such models and must succeed."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgekd.core.checkpoint import save_student  # noqa: E402
from edgekd.core.runfolder import RunDir  # noqa: E402
from edgekd.inputs.loaders import load_dataset  # noqa: E402
from edgekd.inputs.profiles import load_profile  # noqa: E402
from edgekd.run.setup import Inputs  # noqa: E402
from edgekd.run.ship_stages import export_stage, int8_stage, on_cpu, teacher_stage  # noqa: E402
from edgekd.search.space import build  # noqa: E402
from small_student import SMALL_SPEC  # noqa: E402


class LeftOnGpu(nn.Module):
    """``inner`` as the trainer leaves it on a GPU: usable only once moved to the CPU."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.on_gpu = inner, True

    def _apply(self, fn, recurse=True):  # what .to(), .cpu() and .cuda() go through
        self.on_gpu = fn(torch.zeros(1)).device.type != "cpu"
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_gpu and x.device.type == "cpu":
            raise RuntimeError("Expected all tensors to be on the same device, but found at least two "
                               "devices, cuda:0 and cpu!")
        return self.inner(x)


def test_the_wrapper_fails_like_a_model_left_on_the_gpu() -> None:
    model = LeftOnGpu(build(SMALL_SPEC).eval())
    with pytest.raises(RuntimeError, match="same device"):
        model(torch.zeros(1, 1, 28, 28))
    assert on_cpu(model)(torch.zeros(1, 1, 28, 28)).shape == (1, 10) and not model.training


def test_stages_after_training_never_assume_the_training_device(tmp_path: Path, monkeypatch) -> None:
    import edgekd.core.checkpoint as checkpoint

    dataset = load_dataset()
    torch.manual_seed(0)
    teacher = LeftOnGpu(build(SMALL_SPEC))
    inputs = Inputs(load_profile("host-cpu"), dataset, teacher, "fingerprint", parity_samples=64)
    run = RunDir(tmp_path / "run")
    info = teacher_stage(inputs, run)
    assert info["macs"] > 0 and 0.0 <= info["test_acc"] <= 1.0 and run.export_onnx("teacher").is_file()

    trial = run.trial_file("t1", "checkpoint.pt")
    trial.parent.mkdir(parents=True)
    save_student(trial, build(SMALL_SPEC), spec=SMALL_SPEC, classes=dataset.classes,
                 input_shape=dataset.input_shape, normalization=dataset.normalization, method="scratch",
                 metrics={"test_acc": 0.1})
    real_load = checkpoint.load_student
    monkeypatch.setattr(checkpoint, "load_student",
                        lambda path: (lambda m, i: (LeftOnGpu(m), i))(*real_load(path)))
    (onnx_path,) = export_stage(inputs, run, ["t1"])
    assert onnx_path.is_file() and not inputs.teacher.on_gpu

    # a finalist's INT8 copy and its delta against FP32, as compress makes it for TensorRT targets
    from edgekd.report.int8_rows import int8_entry

    int8_stage(inputs, run, ["t1"])
    entry = int8_entry(onnx_path, {"host": {}, "target": {}}, True, {"host": None, "target": None})
    assert entry is not None and entry["samples"] == 1000
    assert entry["delta_points"] == pytest.approx(100 * (entry["accuracy"] - entry["fp32_onnx_accuracy"]), abs=0.01)
