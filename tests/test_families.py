"""The family registry: a toy family registered at test time is enumerated, costed (through
its cost hook), tapped for hints and searched by `edgekd search` without touching edgekd."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.cli.cli import cli
from edgekd.search.cost import spec_cost
from edgekd.core.errors import EdgekdError
from edgekd.search.families import Block, Family, get_family, register_family, stem_and_stages, unregister_family
from edgekd.search.grid import enumerate_specs
from edgekd.search.space import SpaceConfig, Stage, StudentSpec, build


class Doubler(nn.Module):
    """An element-wise op the cost model has never heard of; its cost hook names its kind."""

    cost_kind = "elementwise"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _make(block: Block) -> nn.Module:
    conv = nn.Conv2d(block.cin, block.cout, block.kernel, block.stride, block.kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(block.cout), nn.ReLU(), Doubler())


@pytest.fixture
def toy():
    family = register_family(Family(
        name="toy", plan=lambda spec: stem_and_stages(spec, "toyblock", 1), make=_make,
        blocks_for_depth=lambda depth, _variant: depth - 1, help="conv-BN-ReLU-x2 blocks"))
    yield family
    unregister_family("toy")


def test_toy_family_builds_taps_and_costs(toy) -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    spec = StudentSpec("toy", (1, 28, 28), 10, (Stage(8, 2, 1), Stage(16, 2, 2)))
    assert get_family("toy") is toy and spec.depth == 5 and spec.blocks == 5
    model = build(spec).eval()
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    taps = create_feature_extractor(model, [spec.guided_layer])(x)
    assert tuple(taps[spec.guided_layer].shape[1:]) == spec.guided_shape
    kinds = [layer.kind for layer in spec_cost(spec).layers]
    assert kinds.count("elementwise") == 5  # one Doubler per block (the toy stem has one too)
    assert StudentSpec.from_json(spec.to_json()) == spec


def test_cli_search_runs_a_registered_toy_family(toy, tmp_path) -> None:
    out = tmp_path / "search"
    result = CliRunner().invoke(cli, ["search", "--profile", "host-cpu", "--input", "1x28x28",
                                      "--classes", "10", "--max-macs", "300K", "--family", "toy",
                                      "--max-depth", "7", "--shortlist", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert rows and {r["family"] for r in rows} == {"toy"}
    assert all(r["macs"] <= 300_000 and 3 <= r["depth"] <= 7 for r in rows)
    assert "toy" in result.output


def test_unknown_family_is_one_line_error_listing_registered_ones(toy) -> None:
    with pytest.raises(EdgekdError, match="unknown student family nope: .*toy"):
        SpaceConfig(families=("nope",))
    result = CliRunner().invoke(cli, ["search", "--family", "plain,nope"])
    assert result.exit_code == 2 and "unknown student family" in result.output
    assert "Traceback" not in result.output


def test_registry_refuses_a_second_family_of_the_same_name(toy) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_family(toy)
    specs = enumerate_specs((1, 28, 28), 10, SpaceConfig(families=("toy",), max_depth=4))
    assert specs and all(s.family == "toy" and s.depth <= 4 for s in specs)


# ---------------------------------------------------------------------------- dwsep, mbconv
MOBILE = [
    StudentSpec("dwsep", (3, 32, 32), 10, (Stage(16, 2, 1), Stage(32, 2, 2)), kernel=5,
                stem_stride=2, act="relu6"),
    StudentSpec("dwsep", (1, 28, 28), 10, (Stage(8, 1, 1), Stage(16, 2, 2), Stage(24, 1, 2))),
    StudentSpec("mbconv", (3, 32, 32), 10, (Stage(16, 2, 1), Stage(24, 2, 2)), expansion=4,
                se=True, act="relu6"),
    StudentSpec("mbconv", (1, 28, 28), 10, (Stage(8, 2, 1), Stage(16, 1, 2)), kernel=5,
                expansion=1, bottleneck=4),
    StudentSpec("mbconv", (3, 32, 32), 100, (Stage(24, 3, 1), Stage(32, 2, 2), Stage(48, 1, 2)),
                expansion=6, stem_stride=2),
]


def _main_path_convs(model: nn.Module) -> int:
    """Conv layers on the main path (not shortcuts, not squeeze-excitation's 1x1 gates)."""
    return sum(1 for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
               and "shortcut" not in name and ".se." not in name)


@pytest.mark.parametrize("spec", MOBILE, ids=lambda s: s.describe())
def test_mobile_family_builds_taps_hints_and_round_trips(spec: StudentSpec) -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    from edgekd.distill.hints import FeatureTap, list_layers
    from edgekd.distill.pairing import pair_layers

    model = build(spec).eval()
    assert _main_path_convs(model) == spec.depth and len(model.features) == spec.blocks
    x = torch.randn(2, *spec.input)
    assert model(x).shape == (2, spec.classes)
    names = [f"features.{i}" for i in range(spec.blocks)]
    taps = create_feature_extractor(model, names)(x)
    for name, shape in zip(names, spec.feature_shapes()):
        assert tuple(taps[name].shape[1:]) == shape, name
    assert tuple(taps[spec.guided_layer].shape[1:]) == spec.guided_shape
    assert spec.convs_through(spec.guided_index) >= spec.depth / 2 > spec.convs_through(spec.guided_index - 1)
    assert StudentSpec.from_json(spec.to_json()) == spec
    # the trainer's hint machinery pairs a student layer of the hint's spatial size (resolution-aware
    # pairing, issue 12; pooled down when the student has no map that large) and taps it
    teacher = build(StudentSpec("plain", spec.input, spec.classes, (Stage(8, 2, 1), Stage(16, 2, 2))))
    pair = pair_layers(teacher.eval(), model, spec.input)
    student_sizes = {l.shape[1:] for l in list_layers(model, spec.input) if l.shape and len(l.shape) == 3}
    if tuple(pair.hint_shape[1:]) in student_sizes:
        assert tuple(pair.guided_shape[1:]) == tuple(pair.hint_shape[1:])
    else:
        assert pair.guided_shape[1] < pair.hint_shape[1]
    assert tuple(FeatureTap(model, pair.guided_layer)(x).shape[1:]) == tuple(pair.guided_shape)
    if spec.stem_stride == 2:
        assert spec.feature_shapes()[0][1] == -(-spec.input[1] // 2)


@pytest.mark.parametrize("spec", MOBILE, ids=lambda s: s.describe())
def test_mobile_family_exports_to_onnx_with_parity(spec: StudentSpec, tmp_path) -> None:
    import numpy as np
    import onnxruntime as ort

    from edgekd.ship.export import export_onnx

    torch.manual_seed(0)
    model = build(spec)
    model.train()(torch.randn(8, *spec.input))  # non-trivial BN statistics
    model.eval()
    path = tmp_path / f"{spec.id}.onnx"
    export_onnx(model, spec.input, path, batch=2)
    x = torch.randn(2, *spec.input)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", MOBILE, ids=lambda s: s.describe())
def test_mobile_family_costs_match_the_whole_model_and_fvcore(spec: StudentSpec) -> None:
    from edgekd.search.cost import module_cost

    model = build(spec)
    cost = spec_cost(spec)
    assert cost == module_cost(model, spec.input)  # cached blocks == whole-model count
    kinds = [layer.kind for layer in cost.layers]
    dw = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
    assert kinds.count("depthwise") == dw == sum(s.depth for s in spec.stages)
    residual_adds = sum(1 for b in spec.block_plan() if b.kind == "mbconv" and b.stride == 1
                        and b.cin == b.cout)
    assert kinds.count("add") == residual_adds
    if spec.family == "mbconv" and spec.stages[0].depth > 1:
        assert residual_adds > 0
    fvcore = pytest.importorskip("fvcore.nn")
    # fvcore counts one "flop" per MAC; compare the ops both count as MACs (conv, linear),
    # as tests/test_cost.py does with thop (fvcore also charges pooling and element-wise ops).
    counts = fvcore.FlopCountAnalysis(model.eval(), torch.zeros(1, *spec.input))
    counts.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = counts.by_operator()
    reference = sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul", "mm"))
    assert abs(cost.macs - reference) <= 0.01 * reference, (cost.macs, dict(by_op))


def test_specs_refuse_options_of_other_families() -> None:
    with pytest.raises(EdgekdError, match="takes no act/expansion/se"):
        StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 2, 1),), expansion=4)
    with pytest.raises(EdgekdError, match="takes no expansion or se"):
        StudentSpec("dwsep", (1, 28, 28), 10, (Stage(8, 2, 1),), se=True)
    with pytest.raises(EdgekdError, match="expansion must be an integer 1..6"):
        StudentSpec("mbconv", (1, 28, 28), 10, (Stage(8, 2, 1),), expansion=8)
    with pytest.raises(EdgekdError, match="stem_stride must be 1 or 2"):
        StudentSpec.from_dict({**MOBILE[0].to_dict(), "stem_stride": 4})
    # options at their defaults stay out of the JSON, so older ids do not change
    assert "expansion" not in StudentSpec("dwsep", (1, 28, 28), 10, (Stage(8, 2, 1),)).to_dict()


def test_enumeration_of_mobile_families_with_kernel_5_and_stride_2_stem() -> None:
    config = SpaceConfig(families=("dwsep", "mbconv"), max_depth=10, kernels=(3, 5),
                         stem_strides=(1, 2), width_multiple=8, se=(False, True))
    specs = enumerate_specs((3, 32, 32), 10, config)
    assert {s.family for s in specs} == {"dwsep", "mbconv"}
    assert {s.kernel for s in specs} == {3, 5} and {s.stem_stride for s in specs} == {1, 2}
    assert {s.expansion for s in specs if s.family == "mbconv"} == {2, 4, 6}
    assert {s.se for s in specs if s.family == "mbconv"} == {False, True}
    assert all(w % 8 == 0 for s in specs for w in s.widths)
    assert all(3 <= s.depth <= 10 for s in specs)
    assert all(min(s.feature_shapes()[-1][1:]) >= config.min_resolution for s in specs)


def test_gpu_profiles_round_widths_to_multiples_of_8() -> None:
    from edgekd.inputs.profiles import load_profile, parse_profile
    from edgekd.search.search import search_candidates

    jetson = load_profile("jetson-orin-nano-8gb")
    assert jetson.search.channel_multiple == 8 and load_profile("host-cpu").search.channel_multiple == 2
    small = SpaceConfig(families=("mbconv",), max_depth=7)
    result = search_candidates(jetson, (3, 32, 32), 10, max_macs=3_000_000, latency_ms=10.0,
                               families=("mbconv",), space=small, shortlist=3)
    assert result.feasible and all(w % 8 == 0 for c in result.feasible for w in c.spec.widths)
    # the [search] section is optional: a profile without it gets its kind's default
    text = "\n".join(line for line in (jetson.source and open(jetson.source).read()).splitlines()
                     if "[search]" not in line and "channel_multiple" not in line)
    assert parse_profile(text, "no-search.toml").search.channel_multiple == 8


def test_cli_search_all_four_families(tmp_path) -> None:
    out = tmp_path / "s"
    result = CliRunner().invoke(cli, [
        "search", "--profile", "host-cpu", "--input", "3x32x32", "--classes", "10",
        "--family", "plain,residual,dwsep,mbconv", "--max-macs", "5M", "--max-depth", "5",
        "--kernel", "5", "--stem-stride", "2", "--shortlist", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert {r["family"] for r in rows} == {"plain", "residual", "dwsep", "mbconv"}
    assert all(r["macs"] <= 5_000_000 for r in rows)
    assert all(r["spec"]["kernel"] == 5 and r["spec"].get("stem_stride") == 2 for r in rows)
    bad = CliRunner().invoke(cli, ["search", "--kernel", "3,x"])
    assert bad.exit_code == 2 and "--kernel" in bad.output and "Traceback" not in bad.output
