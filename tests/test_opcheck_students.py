"""Real exports through the TensorRT parser check: a student of every registered family (the
variant with the most operators), its FP16 and INT8 copies and the built-in teacher pass the
ONNX parser tables of TensorRT 8.5, 8.6, 10.3 and 11.x; each family's declared operators
(Family.onnx_ops, which the search's filter reads) cover what it really exports; and the
search leaves out a family that the profile's TensorRT cannot parse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edgekd_deploy import opcheck  # noqa: E402
from edgekd.core.errors import EdgekdError  # noqa: E402
from edgekd.inputs.profiles import load_profile  # noqa: E402
from edgekd.search.families import family_names, get_family, register_family, unregister_family  # noqa: E402
from edgekd.search.grid import enumerate_specs  # noqa: E402
from edgekd.search.space import SpaceConfig, StudentSpec, build  # noqa: E402
from edgekd.ship.export import export_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("8.5", "8.6", "10.3", "11.4.1", "11.5")
SHAPE = (3, 32, 32)


def richest_spec(family: str) -> StudentSpec | None:
    """A small two-stage student of ``family`` in the variant with the most operators
    (hard-swish as Add/Clip/Mul, squeeze-excitation, expansion), so the check sees everything
    the family exports."""
    config = SpaceConfig(families=(family,), min_depth=3, max_depth=7, max_stages=2,
                         base_widths=(8,), growths=(2.0,), expansions=(2,), se=(True,),
                         acts=("hswish",))
    specs = enumerate_specs(SHAPE, 10, config)
    return max(specs, key=lambda s: (len(s.stages), s.depth, s.id)) if specs else None


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[StudentSpec, Path]]:
    """One dynamo export (the bundle's path) per registered family the search enumerates (the
    torchvision reference students are never enumerated; their bundles get the same check)."""
    folder = tmp_path_factory.mktemp("families")
    out = {}
    for family in family_names():
        spec = richest_spec(family)
        if spec is None:
            continue
        torch.manual_seed(0)
        out[family] = spec, export_onnx(build(spec), spec.input, folder / f"{family}.onnx")
    return out


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_every_family_exports_a_model_every_tensorrt_parses(exported) -> None:
    assert {"plain", "residual", "dwsep", "mbconv", "repvgg"} <= set(exported)
    for family, (_spec, path) in exported.items():
        assert {o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")} == {17}
        assert "ReduceMean" not in _ops(path) and "GlobalAveragePool" in _ops(path), family
        for version in TARGETS:
            assert opcheck.check_model(path, version) == [], (family, version)


def test_declared_family_operators_cover_the_export(exported) -> None:
    for family, (spec, path) in exported.items():
        declared = get_family(family).onnx_ops
        assert declared is not None, f"family {family!r} declares no onnx_ops"
        variant = {"act": spec.act, "expansion": spec.expansion, "se": spec.se}
        assert _ops(path) <= declared(variant), (family, _ops(path) - declared(variant))


def test_fp16_int8_copies_and_the_teacher_parse(exported, tmp_path: Path) -> None:
    from edgekd.inputs.builtin_teacher import BuiltinCNN
    from edgekd.ship.fp16 import convert_fp16
    from edgekd.ship.int8 import quantize_int8

    _spec, student = exported["mbconv"]
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, size=(16, 3, 32, 32), dtype=np.uint8)
    copies = [convert_fp16(student, tmp_path / "s.fp16.onnx"),
              quantize_int8(student, tmp_path / "s.int8.onnx", calib, ([0.5] * 3, [0.25] * 3))]
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(copies[1])
    teacher = export_onnx(BuiltinCNN((1, 28, 28), 10).eval(), (1, 28, 28), tmp_path / "teacher.onnx")
    for path in (*copies, teacher):
        for version in TARGETS:
            assert opcheck.check_model(path, version) == [], (path.name, version)


def test_search_leaves_out_a_family_the_profile_cannot_parse() -> None:
    from edgekd.search.search import search_candidates

    xavier = load_profile(str(REPO / "profiles" / "jetson-xavier-nx.toml"))
    orin = load_profile(str(REPO / "profiles" / "jetson-orin-nano-8gb.toml"))
    assert (xavier.runtime.tensorrt, orin.runtime.tensorrt) == ("8.5", "10.3")
    plain = get_family("plain")
    normed = dataclasses.replace(plain, name="normed", default=False,
                                 onnx_ops=lambda variant: plain.onnx_ops(variant) | {"LayerNormalization"})
    register_family(normed)
    try:
        said: list[str] = []
        with pytest.raises(EdgekdError, match="normed skipped: TensorRT 8.5's ONNX parser has no "
                                              "LayerNormalization"):
            search_candidates(xavier, SHAPE, 10, families=["normed"], progress=said.append)
        kept = search_candidates(xavier, SHAPE, 10, families=["normed", "plain"], progress=said.append)
        assert {c.spec.family for c in kept.candidates} == {"plain"}
        assert any("normed skipped" in line for line in said)
        # TensorRT 10.3 parses LayerNormalization: the family is searched there
        assert {c.spec.family for c in search_candidates(orin, SHAPE, 10, families=["normed"]).candidates} \
            == {"normed"}
    finally:
        unregister_family("normed")


def test_a_bundle_refuses_a_model_the_profile_cannot_parse(tmp_path: Path) -> None:
    """An opset-18 export (ReduceMean with axes as an input) is refused for the Xavier NX's
    TensorRT 8.5 before anything is written, and bundled for the Orin's 10.3."""
    from edgekd.ship.bundle import make_bundle

    from small_student import SMALL_SPEC, trained_small_student

    model, dataset = trained_small_student()
    spec = SMALL_SPEC
    old = tmp_path / "opset18.onnx"
    export_onnx(model, spec.input, old, opset=18)
    old_proto = onnx.load(str(old))
    for node in old_proto.graph.node:  # the graph the exporter wrote before the lowering
        if node.op_type == "GlobalAveragePool":
            node.op_type, node.name = "ReduceMean", "pool"
            node.input.append("axes")
    old_proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
    onnx.save(old_proto, str(old))
    xavier = load_profile(str(REPO / "profiles" / "jetson-xavier-nx.toml"))
    with pytest.raises(EdgekdError, match=r"'opset18.onnx' cannot go into a bundle for profile "
                                          r"'jetson-xavier-nx': TensorRT 8.5: .*re-export"):
        make_bundle(old, tmp_path / "xavier", profile=xavier, dataset=dataset)
    assert not (tmp_path / "xavier").exists()
    orin = load_profile(str(REPO / "profiles" / "jetson-orin-nano-8gb.toml"))
    bundle = make_bundle(old, tmp_path / "orin", profile=orin, dataset=dataset, val_samples=64,
                         calib_samples=16)
    manifest = __import__("json").loads((bundle / "manifest.json").read_text())
    assert manifest["tensorrt_parser_check"]["model.onnx"] == ["10.3"]
    assert manifest["onnx_opset"] == 18
    assert (bundle / "deploy" / "trt_onnx_ops.json").is_file()  # the device's build checks too
