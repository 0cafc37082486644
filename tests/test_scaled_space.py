"""The search space at real resolutions (64-224 px): students laid out as ResNet and MobileNet
are (a stride-2 stem, about 32x downsampling to a 7x7 map at 224 px), families chosen for the
device, the RepVGG family's fused export, and ``compress --family``."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.inputs.profiles import load_profile
from edgekd.search.blocks import deployed
from edgekd.search.cost import module_cost, spec_cost
from edgekd.search.search import search_candidates
from edgekd.search.grid import enumerate_specs
from edgekd.search.space import SpaceConfig, Stage, StudentSpec, build

#: ONNX ops the TensorRT 8.5 ONNX parser reads (onnx-tensorrt's operator table) that these
#: students use; a family exporting anything else would not build on JetPack 5.
TRT_PARSABLE = {"Conv", "Relu", "Clip", "Add", "Mul", "Div", "Sigmoid", "MaxPool", "GlobalAveragePool",
                "ReduceMean", "Flatten", "Reshape", "Gemm", "MatMul", "Constant"}


def _halvings(spec: StudentSpec) -> int:
    """Stride-2 steps from the input to the head (a pool stem counts its conv and its pool)."""
    return sum(int(math.log2(block.stride)) for block in spec.block_plan())


def _assert_real_network_layout(specs: list[StudentSpec], min_halvings: int) -> None:
    assert specs
    for spec in specs:
        _, h, w = spec.feature_shapes()[-1]
        assert _halvings(spec) >= min_halvings and max(h, w) <= 7, spec.describe()


def test_search_at_224_px_shortlists_real_edge_networks_in_seconds(tmp_path) -> None:
    started = time.process_time()
    result = CliRunner().invoke(cli, ["search", "--input", "3x224x224", "--classes", "100", "--profile",
                                      "jetson-orin-nano-8gb", "--max-macs", "300M", "--out", str(tmp_path)])
    cpu_seconds = time.process_time() - started
    assert result.exit_code == 0, result.output
    assert cpu_seconds < 10, f"search took {cpu_seconds:.1f} CPU-s"
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    shortlist = [r for r in rows if r["shortlisted"]]
    specs = [StudentSpec.from_dict(r["spec"]) for r in shortlist]
    _assert_real_network_layout(specs, 5)
    assert any(500_000 <= r["params"] <= 5_000_000 for r in shortlist)
    assert all(r["macs"] <= 300_000_000 for r in shortlist)
    # the family is named in the search's output, and the GPU profile searched the dense families
    assert {r["family"] for r in rows} <= {"plain", "residual", "repvgg"}
    assert all(r["family"] in result.output for r in shortlist)


def test_search_at_96_px_downsamples_to_6x6_with_families_for_the_device() -> None:
    gpu = search_candidates(load_profile("jetson-orin-nano-8gb"), (3, 96, 96), 100, max_macs=300_000_000)
    _assert_real_network_layout([c.spec for c in gpu.shortlist], 4)
    assert any(500_000 <= c.params <= 5_000_000 for c in gpu.shortlist)
    assert {c.spec.family for c in gpu.candidates} == {"plain", "residual", "repvgg"}
    cpu = search_candidates(load_profile("host-cpu"), (3, 96, 96), 10, max_macs=20_000_000, latency_ms=5.0)
    _assert_real_network_layout([c.spec for c in cpu.shortlist], 4)
    assert {c.spec.family for c in cpu.candidates} == {"dwsep", "mbconv"}
    # both stems of real networks are enumerated: MobileNet's conv and ResNet's conv + max-pool
    assert {c.spec.stem for c in cpu.candidates} == {"conv", "pool"}


def test_scaled_grid_is_bounded_and_puts_depth_at_low_resolution() -> None:
    started = time.process_time()
    specs = enumerate_specs((3, 224, 224), 100, SpaceConfig(families=("plain", "mbconv")))
    assert time.process_time() - started < 5 and 1000 < len(specs) < 20_000
    assert max(s.stages[-1].width for s in specs) >= 512
    assert all(s.stages[-1].width <= 1280 for s in specs)
    deep = [s for s in specs if len(s.stages) == 5 and sum(st.depth for st in s.stages) >= 10]
    assert deep and all(s.stages[0].depth <= min(st.depth for st in s.stages[1:-1]) for s in deep)


def test_small_inputs_keep_their_grid() -> None:
    """28x28 and 32x32 enumerate exactly the students (ids, order) they did before the scaled layout."""
    specs = enumerate_specs((1, 28, 28), 10) + enumerate_specs((3, 32, 32), 10)
    assert len(specs) == 2 * 11704
    assert hashlib.sha256("".join(s.id for s in specs).encode()).hexdigest()[:16] == "aad9221c7b345e86"


def _with_statistics(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.nn.Module:
    """``model`` after a few training-mode passes (BatchNorm statistics away from 0/1), in eval."""
    torch.manual_seed(0)
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.randn(8, *shape) * 2 + 0.5)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.3, 0.3)
    return model.eval()


def test_repvgg_exports_one_fused_conv_per_block_equal_to_its_branches(tmp_path) -> None:
    from edgekd.ship.export import export_onnx
    import onnx

    spec = StudentSpec("repvgg", (3, 64, 64), 10, (Stage(16, 2, 1), Stage(32, 3, 2), Stage(64, 2, 2)),
                       stem_stride=2, stem="pool")
    model = _with_statistics(build(spec), spec.input)
    x = torch.randn(16, *spec.input)
    with torch.no_grad():
        fused = deployed(model)
        assert float((fused(x) - model(x)).abs().max()) < 1e-4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.features[1:].modules())
    path = export_onnx(model, spec.input, tmp_path / "repvgg.onnx",
                       parity_x=np.random.default_rng(0).normal(size=(256, 3, 64, 64)).astype(np.float32))
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert ops["Conv"] == spec.blocks and "Add" not in ops  # the stem + one conv per block
    # MACs as deployed: one kxk conv per block, so a repvgg student runs what a plain one does;
    # parameters as trained: each block adds a 1x1 conv and one or two BatchNorms to learn with
    plain = StudentSpec("plain", spec.input, 10, (Stage(16, 3, 1), Stage(32, 3, 2), Stage(64, 2, 2)),
                        stem_stride=2, stem="pool")
    cost = spec_cost(spec)
    assert [layer.kind for layer in cost.layers] == [layer.kind for layer in spec_cost(plain).layers]
    assert cost.macs == spec_cost(plain).macs and cost.params > spec_cost(plain).params
    assert cost.params == sum(p.numel() for p in model.parameters())
    counted = module_cost(build(spec), spec.input)
    assert (cost.macs, cost.params) == (counted.macs, counted.params)


@pytest.mark.parametrize("spec", [
    StudentSpec("plain", (3, 64, 64), 10, (Stage(16, 2, 1), Stage(24, 2, 2)), stem_stride=2, stem="pool"),
    StudentSpec("residual", (3, 64, 64), 10, (Stage(16, 1, 1), Stage(24, 1, 2)), stem_stride=2, stem="pool"),
    StudentSpec("repvgg", (3, 64, 64), 10, (Stage(16, 2, 1), Stage(24, 1, 2)), stem_stride=2),
    StudentSpec("dwsep", (3, 64, 64), 10, (Stage(16, 1, 1), Stage(24, 2, 2)), stem_stride=2, act="relu6"),
    StudentSpec("mbconv", (3, 64, 64), 10, (Stage(16, 1, 1), Stage(24, 2, 2)), stem_stride=2, stem="pool",
                expansion=4, se=True, act="hswish"),
], ids=lambda spec: spec.family)
def test_every_family_exports_ops_tensorrt_parses(spec: StudentSpec, tmp_path) -> None:
    from edgekd.ship.export import export_onnx
    import onnx

    model = _with_statistics(build(spec), spec.input)
    x = np.random.default_rng(1).normal(size=(256, *spec.input)).astype(np.float32)
    path = export_onnx(model, spec.input, tmp_path / f"{spec.family}.onnx", parity_x=x)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops <= TRT_PARSABLE, ops - TRT_PARSABLE


def test_hint_pairing_matches_resolutions_through_a_pool_stem() -> None:
    from edgekd.distill.pairing import hint_pairs

    teacher = build(StudentSpec("residual", (3, 96, 96), 10, (Stage(32, 2, 1), Stage(64, 2, 2), Stage(128, 2, 2)),
                                stem_stride=2, stem="pool")).eval()
    student = build(StudentSpec("mbconv", (3, 96, 96), 10, (Stage(16, 1, 1), Stage(24, 2, 2), Stage(32, 2, 2),
                                                           Stage(64, 2, 2)), stem_stride=2, expansion=4)).eval()
    pairs = hint_pairs(teacher, student, (3, 96, 96), stages="all")
    assert len(pairs) >= 2
    for pair in pairs:
        assert pair.hint_shape[1:] == pair.guided_shape[1:], pair


def test_compress_takes_families(tmp_path_factory, tmp_path) -> None:
    from compress_runs import run_cli, shared_base, tiny_inputs

    base = shared_base(tmp_path_factory)  # the tiny MNIST slice and teacher other compress tests use
    data, teacher = tiny_inputs(base)
    out = tmp_path / "run"
    done = run_cli(["compress", "--data", str(data), "--teacher", str(teacher), "--out", str(out),
                    "--family", "mbconv", "--method", "kd", "--candidates", "1", "--finalists", "1",
                    "--epochs", "1", "--min-epochs", "1", "--max-train-samples", "300", "--batch-size", "32",
                    "--max-macs", "500K", "--measure-iters", "20", "--threads-per-trial", "1",
                    "--augment", "none", "--no-bundle", "--parity-samples", "64", "--no-progress"], base)
    assert done.returncode == 0, done.stderr[-2000:]
    families = {json.loads(line)["family"] for line in (out / "candidates.jsonl").read_text().splitlines()}
    assert families == {"mbconv"}
    run = json.loads((out / "run.json").read_text())
    assert run["configs"]["compress"]["families"] == ["mbconv"]
    assert "| id | family | method |" in (out / "report" / "report.md").read_text()
    assert "| mbconv | kd |" in (out / "report" / "report.md").read_text()


def test_compress_refuses_an_unknown_family_in_one_line(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["compress", "--family", "mbconv,dense", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown student family 'dense'" in result.output and "Traceback" not in result.output
