"""MAC counting: MACs/params (FlopCounterMode, checked against thop), the layer table and
the block-cost cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import edgekd.search.cost as cost
from edgekd.search.cost import ModelCost, block_cost_cache, macs_params, module_cost, spec_cost
from edgekd.core.errors import EdgekdError
from edgekd.search.space import Stage, StudentSpec, build

STUDENTS = [
    StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 3, 1), Stage(16, 3, 2))),
    StudentSpec("residual", (3, 32, 32), 100, (Stage(16, 2, 1), Stage(32, 1, 2), Stage(64, 1, 2))),
    StudentSpec("plain", (3, 32, 32), 10, (Stage(12, 2, 1), Stage(24, 5, 2)), kernel=5, bottleneck=6),
]


@pytest.mark.parametrize("spec", STUDENTS, ids=lambda s: s.describe())
def test_spec_cost_from_cached_blocks_equals_whole_model_count(spec: StudentSpec) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = build(spec)
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *spec.input))
    assembled = spec_cost(spec)
    assert assembled.macs == counter.get_total_flops() // 2
    assert assembled.params == sum(p.numel() for p in model.parameters())
    assert assembled == module_cost(model, spec.input)
    assert macs_params(spec) == (assembled.macs, assembled.params)
    kinds = [layer.kind for layer in assembled.layers]
    convs = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert kinds.count("conv") == convs and kinds.count("pool") == 1
    assert kinds.count("linear") == (2 if spec.bottleneck else 1)
    assert kinds.count("add") == (sum(s.depth for s in spec.stages) if spec.family == "residual" else 0)


def _thop_conv_linear_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """thop's count restricted to conv and linear layers.

    thop also charges BatchNorm (2 ops per element), pooling and softmax, which are not
    multiply-accumulates; FlopCounterMode counts only the MAC ops (convolution, mm/addmm).
    Zeroing thop's other hooks compares like with like; both then ignore biases.
    """
    import thop
    from thop.vision.basic_hooks import zero_ops

    free = {t: zero_ops for t in (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid,
                                  nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Dropout,
                                  nn.Identity, nn.Flatten)}
    macs, _ = thop.profile(model, inputs=(torch.zeros(1, *input_shape),), custom_ops=free,
                           verbose=False)
    return int(macs)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "student0", "student1", "student2"])
def test_macs_agree_with_thop_within_one_percent(name: str) -> None:
    import torchvision

    if name.startswith("student"):
        spec = STUDENTS[int(name[-1])]
        model, shape = build(spec), spec.input
    else:
        model, shape = getattr(torchvision.models, name)(weights=None), (3, 224, 224)
    ours, params = macs_params(model.eval(), shape)
    theirs = _thop_conv_linear_macs(model, shape)
    assert abs(ours - theirs) <= 0.01 * theirs, (ours, theirs)
    assert params == sum(p.numel() for p in model.parameters())


def test_module_cost_keeps_mode_and_statistics() -> None:
    model = build(STUDENTS[0]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    module_cost(model, STUDENTS[0].input)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(EdgekdError, match="check --input"):
        module_cost(model, (3, 28, 28))  # the student takes one channel


def test_cost_cache_round_trip(tmp_path) -> None:
    for spec in STUDENTS:
        spec_cost(spec)
    path = cost.save_cost_cache(tmp_path / "blocks.json")
    saved = dict(cost._BLOCK_COSTS)
    cost._BLOCK_COSTS.clear()
    cost._SPEC_COSTS.clear()
    assert cost.load_cost_cache(path) == len(saved)
    assert cost._BLOCK_COSTS == saved
    assert isinstance(spec_cost(STUDENTS[1]), ModelCost)
    (tmp_path / "torn.json").write_text('{"format": "edgekd.cost-cache/1", "blo')
    assert cost.load_cost_cache(tmp_path / "torn.json") == 0


def test_block_cost_cache_loads_then_saves_only_new_blocks(tmp_path) -> None:
    path = tmp_path / "blocks.json"
    spec = StudentSpec("mbconv", (3, 32, 32), 10, (Stage(16, 1, 1), Stage(24, 1, 2)), expansion=3)
    cost._BLOCK_COSTS.clear()
    cost._SPEC_COSTS.clear()
    with block_cost_cache(path):
        first = spec_cost(spec)
    assert path.is_file() and len(cost._BLOCK_COSTS) == 4  # stem, two blocks, head
    stamp = path.stat().st_mtime_ns
    cost._BLOCK_COSTS.clear()
    cost._SPEC_COSTS.clear()
    with block_cost_cache(path):
        assert len(cost._BLOCK_COSTS) == 4  # loaded, nothing to count
        assert spec_cost(spec) == first
    assert path.stat().st_mtime_ns == stamp  # nothing new: not rewritten
    with block_cost_cache(None):
        assert spec_cost(spec) == first



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_module_cost_counts_a_model_where_it_lives() -> None:
    """A teacher that trained students on CUDA stays there; costing it after the search ran it
    on a CPU tensor ('weight is on cuda:0, different from other tensors on cpu', seen on an H200)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    on_cpu = module_cost(model, (3, 32, 32))
    on_gpu = module_cost(model.cuda(), (3, 32, 32))
    assert on_gpu.macs == on_cpu.macs and on_gpu.params == on_cpu.params
