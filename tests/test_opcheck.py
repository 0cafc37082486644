"""The host-side TensorRT parser check (deploy/opcheck.py, deploy/trt_onnx_ops.json): models
made to fail (an opset-18 ReduceMean for 8.x, operators absent from a version's table, computed
axes, custom domains, non-zero Q/DQ zero points) and the version lookup; the graph reader
against the onnx package; `python -m deploy opcheck`. Real exported students of every family
are checked in tests/test_opcheck_students.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekd_deploy import opcheck  # noqa: E402
from edgekd_deploy.errors import DeployError  # noqa: E402
from edgekd_deploy.onnxgraph import read_graph  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("8.5", "8.6", "10.3", "11.4.1")


def _save(tmp_path: Path, name: str, nodes, inputs, outputs, initializers=(), opset: int = 17,
          extra_opsets=()) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _tensor(name: str, shape) -> "onnx.ValueInfoProto":
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _reduce_mean_opset18(tmp_path: Path, axes_from_input: bool = False) -> Path:
    """A global average pool in the opset-18 form: ReduceMean with its axes as an input."""
    x, y = _tensor("x", [1, 4, 8, 8]), _tensor("y", [1, 4, 1, 1])
    if axes_from_input:  # axes computed at run time, not an initializer
        axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [2])
        path = _save(tmp_path, "computed", [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="pool")],
                     [x, axes], [y], opset=18)
    else:
        axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
        path = _save(tmp_path, "rm18", [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="pool")],
                     [x], [y], [axes], opset=18)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def test_reduce_mean_with_axes_input_is_flagged_for_8x_and_parses_on_10_and_11(tmp_path: Path) -> None:
    path = _reduce_mean_opset18(tmp_path)
    for version in ("8.5", "8.6", "8.6.2"):
        lines = [p.line() for p in opcheck.check_model(path, version)]
        assert any("opset 18 is outside the opsets 7..17" in line for line in lines), lines
        assert any(line.startswith(f"TensorRT {version}: ReduceMean node 'pool' gives its axes as an "
                                   "input") and "reduce over every axis" in line for line in lines)
        with pytest.raises(DeployError, match=r"will not build: TensorRT 8\.\d.*re-export it with a current edgekd"):
            opcheck.require_parsable(path, version)
    for version in ("10.3", "10.16", "11.4.1", "11.5"):
        assert opcheck.check_model(path, version) == []


def test_the_same_pool_at_opset_17_parses_on_every_version(tmp_path: Path) -> None:
    x, y = _tensor("x", [1, 4, 8, 8]), _tensor("y", [1, 4, 1, 1])
    gap = _save(tmp_path, "gap", [helper.make_node("GlobalAveragePool", ["x"], ["y"])], [x], [y])
    attr = _save(tmp_path, "attr", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3])], [x], [y])
    for path in (gap, attr):
        for version in TARGETS:
            assert opcheck.check_model(path, version) == [], (path.name, version)


def test_computed_axes_are_flagged_on_10(tmp_path: Path) -> None:
    path = _reduce_mean_opset18(tmp_path, axes_from_input=True)
    (problem,) = opcheck.check_model(path, "10.3")
    assert problem.op == "ReduceMean" and "computes its axes input at run time" in problem.line()


def test_operators_absent_from_or_refused_by_a_table(tmp_path: Path) -> None:
    x, y = _tensor("x", [1, 4]), _tensor("y", [1, 4])
    # CastLike (opset 15) is missing from the 8.5/8.6 tables; 10.x lists it
    cast_like = _save(tmp_path, "castlike", [helper.make_node("CastLike", ["x", "x"], ["y"], name="c")],
                      [x], [y])
    for version in ("8.5", "8.6"):
        (problem,) = opcheck.check_model(cast_like, version)
        assert problem.op == "CastLike" and "does not list it" in problem.why
        assert f"onnx-tensorrt {version}-GA docs/operators.md" in problem.why
    assert opcheck.check_model(cast_like, "10.3") == []
    # LayerNormalization (opset 17) is listed as unsupported by 8.5 and 8.6, supported from 10
    scale = numpy_helper.from_array(np.ones(4, np.float32), "scale")
    norm = _save(tmp_path, "ln", [helper.make_node("LayerNormalization", ["x", "scale"], ["y"])],
                 [x], [y], [scale])
    assert "lists it as unsupported" in opcheck.check_model(norm, "8.5")[0].why
    assert opcheck.check_model(norm, "11.5") == []
    # an operator of another domain needs a plugin everywhere
    custom = _save(tmp_path, "custom", [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
                   [x], [y], extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    assert "com.microsoft.Gelu" in opcheck.check_model(custom, "10.3")[0].line()


def test_qdq_zero_points_must_be_zero(tmp_path: Path) -> None:
    x, y = _tensor("x", [1, 4]), _tensor("y", [1, 4])
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    paths = {}
    for zero in (0, 3):
        point = numpy_helper.from_array(np.array(zero, np.int8), "zp")
        nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dq")]
        paths[zero] = _save(tmp_path, f"qdq{zero}", nodes, [x], [y], [scale, point])
    for version in TARGETS:
        assert opcheck.check_model(paths[0], version) == []
        problems = opcheck.check_model(paths[3], version)
        assert {p.op for p in problems} == {"QuantizeLinear", "DequantizeLinear"}
        assert "y_zero_point" in problems[0].why or "x_zero_point" in problems[0].why


def test_version_lookup_and_unknown_versions() -> None:
    assert opcheck.supported_versions() == ["8.5", "8.6", "10.3", "11.0"]
    assert [opcheck.table_version(v) for v in ("8.5.2", "8.6", "10.3.0", "10.16", "11.4.1", "11.5")] \
        == ["8.5", "8.6", "10.3", "10.3", "11.0", "11.0"]
    assert opcheck.table_version("10.0") == "10.3"  # below the first table of its major: that one
    for bad in ("9.3", "12.0", "abc"):
        with pytest.raises(DeployError):
            opcheck.table_version(bad)


def test_every_table_names_its_source() -> None:
    data = json.loads((REPO / "deploy" / "trt_onnx_ops.json").read_text())
    assert data["format"] == "edgekd.trt-onnx-ops/1"
    for version, entry in data["versions"].items():
        source = entry["source"]
        assert source["repo"] == "onnx/onnx-tensorrt" and source["file"] == "docs/operators.md"
        assert re.fullmatch(r"\d+\.\d+-GA", source["ref"]) and re.fullmatch(r"[0-9a-f]{40}", source["commit"])
        assert {"Conv", "Relu", "Clip", "Add", "Mul", "Sigmoid", "GlobalAveragePool", "Gemm",
                "QuantizeLinear", "DequantizeLinear", "Cast"} <= set(entry["supported"]), version
        assert not set(entry["supported"]) & set(entry["unsupported"])
    assert data["versions"]["8.5"]["ignored_inputs"]["ReduceMean"] == {"1": "axes"}
    assert "ReduceSum" not in data["versions"]["8.5"]["ignored_inputs"]  # it reads its axes input
    assert data["versions"]["10.3"]["ignored_inputs"] == {}


def test_graph_reader_matches_onnx_including_subgraphs(tmp_path: Path) -> None:
    x, y = _tensor("x", [1, 4]), _tensor("y", [1, 4])
    branch = lambda op, out: helper.make_graph([helper.make_node(op, ["x"], [out])], op, [],  # noqa: E731
                                               [_tensor(out, [1, 4])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("Relu", "a"),
                            else_branch=branch("Sigmoid", "b"), name="if")
    path = _save(tmp_path, "if", [node], [x], [y], [cond])
    graph = read_graph(path)
    proto_if = onnx.load(str(path)).graph.node[0]
    branches = [n.op_type for a in proto_if.attribute for n in a.g.node]  # onnx's own order
    assert [n.op_type for n in graph.nodes] == [*branches, "If"] and sorted(branches) == ["Relu", "Sigmoid"]
    assert graph.opset == 17 and graph.constants == {"cond": False}
    assert set(graph.nodes[-1].attributes) == {"then_branch", "else_branch"}


def test_deploy_opcheck_cli(tmp_path: Path) -> None:
    path = _reduce_mean_opset18(tmp_path)
    run = lambda *args: subprocess.run([sys.executable, "-m", "deploy", "opcheck", str(path), *args],  # noqa: E731
                                       capture_output=True, text=True, cwd=REPO)
    proc = run("--tensorrt", "8.5", "--tensorrt", "10.3")
    assert proc.returncode == 2
    assert "TensorRT 8.5: 2 problem(s)" in proc.stdout and "TensorRT 10.3: parses" in proc.stdout
    assert proc.stderr.strip().splitlines() == ["error: 'rm18.onnx' will not build on TensorRT 8.5: "
                                                "see the lines above"]
    assert run("--tensorrt", "11.5").returncode == 0
