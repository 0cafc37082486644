"""Export: real students and a torchvision model to ONNX; checker, parity, metadata, simplify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edgekd.inputs.loaders import load_dataset  # noqa: E402
from edgekd.core.errors import EdgekdError  # noqa: E402
from edgekd.ship.export import (MIN_PARITY_SAMPLES, check_parity, export_onnx, onnx_logits,  # noqa: E402
                           parity_inputs, read_metadata, torch_logits)
from edgekd.search.space import Stage, StudentSpec, build  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    return load_dataset()


@pytest.fixture(scope="module")
def x_parity(dataset) -> np.ndarray:
    return parity_inputs(dataset, MIN_PARITY_SAMPLES)


def _spec(family: str) -> StudentSpec:
    if family == "mbconv_se":
        return StudentSpec(family="mbconv", input=(1, 28, 28), classes=10, expansion=2, se=True,
                           stages=(Stage(8, 3, 1), Stage(16, 3, 2)))
    return StudentSpec(family=family, input=(1, 28, 28), classes=10,
                       stages=(Stage(8, 2, 1), Stage(16, 2, 2)))


def meta_opset(path: Path) -> str:
    return read_metadata(path)["edgekd.opset"]


@pytest.mark.parametrize("family", ["plain", "residual"])
def test_student_export_checker_parity_metadata(tmp_path: Path, x_parity, family) -> None:
    torch.manual_seed(0)
    spec = _spec(family)
    model = build(spec)
    path = export_onnx(model, spec.input, tmp_path / "s.onnx", parity_x=x_parity,
                       metadata={"edgekd.spec": spec.to_dict(), "edgekd.id": spec.id,
                                 "edgekd.classes": [str(i) for i in range(10)]})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    # opset 17 with GlobalAveragePool: the form TensorRT 8.5 through 11 all parse
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
    ops = {node.op_type for node in proto.graph.node}
    assert "GlobalAveragePool" in ops and "ReduceMean" not in ops
    assert meta_opset(path) == "17"
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 28, 28]  # static batch by default
    meta = read_metadata(path)
    assert StudentSpec.from_json(meta["edgekd.spec"]) == spec
    assert meta["edgekd.id"] == spec.id
    parity = __import__("json").loads(meta["edgekd.parity"])
    assert parity["passed"] and parity["samples"] == MIN_PARITY_SAMPLES
    assert parity["max_abs_diff"] <= 1e-4
    # independent re-check: ORT and torch agree on all samples
    diff = np.abs(onnx_logits(path, x_parity) - torch_logits(model, x_parity)).max()
    assert diff <= 1e-4


def test_dynamic_batch_and_simplify(tmp_path: Path, x_parity) -> None:
    spec = _spec("plain")
    model = build(spec)
    path = export_onnx(model, spec.input, tmp_path / "d.onnx", dynamic_batch=(1, 4, 16),
                       simplify=True, parity_x=x_parity)
    proto = onnx.load(str(path))
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    meta = read_metadata(path)
    assert meta["edgekd.simplified"] == "yes (onnxslim)"
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7, 16):
        out = session.run(None, {"input": x_parity[:n]})[0]
        assert out.shape == (n, 10)


def test_torchvision_model_exports_with_parity(tmp_path: Path, x_parity) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.squeezenet1_1(num_classes=10).eval()
    # real MNIST digits as 3-channel 32x32 images
    x = np.pad(np.repeat(x_parity, 3, axis=1), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
    path = export_onnx(model, (3, 32, 32), tmp_path / "tv.onnx", parity_x=x)
    assert read_metadata(path)["edgekd.exporter"] == "dynamo"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_parity_failure_prints_the_numbers(tmp_path: Path, x_parity) -> None:
    spec = _spec("plain")
    model = build(spec)
    path = export_onnx(model, spec.input, tmp_path / "s.onnx")
    with torch.no_grad():  # the PyTorch model drifts away from what was exported
        model.head.bias.add_(1e-3)
    with pytest.raises(EdgekdError, match=r"max \|logits difference\| 0\.001.*top-1 agreement"):
        check_parity(model, path, x_parity)


def test_parity_needs_enough_real_samples(tmp_path: Path, x_parity) -> None:
    spec = _spec("plain")
    model = build(spec)
    path = export_onnx(model, spec.input, tmp_path / "s.onnx")
    with pytest.raises(EdgekdError, match="at least 256 samples"):
        check_parity(model, path, x_parity[:10])


def test_wrong_parity_shape_is_a_user_error(tmp_path: Path, x_parity) -> None:
    model = build(_spec("plain"))
    with pytest.raises(EdgekdError, match="do not match the model input"):
        export_onnx(model, (1, 28, 28), tmp_path / "s.onnx", parity_x=x_parity[:, :, :14, :14])


def test_simplified_graph_is_dropped_when_parity_breaks(tmp_path: Path, x_parity, monkeypatch) -> None:
    """The guard around simplification: a 'simplified' graph that computes something else is
    rejected and the plain export is kept (here the simplifier is made to corrupt a weight)."""
    import edgekd.ship.export as export_module
    from onnx import numpy_helper

    def corrupting_simplifier(proto):
        bad = onnx.ModelProto()
        bad.CopyFrom(proto)
        init = bad.graph.initializer[0]
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
        return bad, ""

    monkeypatch.setattr(export_module, "_simplify", corrupting_simplifier)
    model = build(_spec("plain"))
    path = export_onnx(model, (1, 28, 28), tmp_path / "s.onnx", simplify=True, parity_x=x_parity)
    meta = read_metadata(path)
    assert meta["edgekd.simplified"].startswith("rejected: ONNX parity failed")
    assert np.abs(onnx_logits(path, x_parity) - torch_logits(model, x_parity)).max() <= 1e-4


def test_opset_18_keeps_the_dynamo_graph_and_17_lowers_it(tmp_path: Path, x_parity) -> None:
    """Opset 18 (TensorRT 10+ only) is the dynamo exporter's own; the default 17 is the same
    graph lowered, and both compute what PyTorch does."""
    model = build(_spec("mbconv_se"))
    for opset in (18, 17):
        path = export_onnx(model, (1, 28, 28), tmp_path / f"s{opset}.onnx", opset=opset,
                           parity_x=x_parity)
        proto = onnx.load(str(path))
        assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {opset}
        assert read_metadata(path)["edgekd.exporter"] == "dynamo"
        ops = [node.op_type for node in proto.graph.node]
        # every squeeze-excitation pool and the head's pool: all GlobalAveragePool
        se_blocks = sum(type(m).__name__ == "SqueezeExcite" for m in model.modules())
        assert se_blocks >= 2 and ops.count("GlobalAveragePool") == se_blocks + 1
        assert "ReduceMean" not in ops


def test_reduce_mean_keepdims_0_becomes_pool_and_flatten(tmp_path: Path, x_parity) -> None:
    class MeanHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.fc = torch.nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((-2, -1)))

    path = export_onnx(MeanHead(), (1, 28, 28), tmp_path / "m.onnx", parity_x=x_parity)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "ReduceMean" not in ops and ops.index("GlobalAveragePool") < ops.index("Flatten")
