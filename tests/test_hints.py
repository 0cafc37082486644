"""FitNets taps, automatic hint/guided pairing, regressor shapes, and the hint stage on real data."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekd.distill import losses
from edgekd.distill.hints import (FeatureTap, auto_layer, list_layers, make_regressor, pair_layers)
from edgekd.core.errors import EdgekdError
from edgekd.search.space import Stage, StudentSpec, build


pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_pairing_torchvision_teacher_and_spec_student() -> None:
    from torchvision.models import resnet18

    teacher = resnet18(num_classes=10)
    spec = StudentSpec("plain", (3, 32, 32), 10, (Stage(8, 3, 1), Stage(16, 3, 2), Stage(32, 3, 2)))
    pair = pair_layers(teacher, build(spec), (3, 32, 32), spec=spec)
    # resnet18 has 17 ReLU outputs; the middle one (index 8) closes layer2's last block
    assert pair.hint_layer == "layer2.1.relu_1"
    assert pair.hint_shape == (128, 4, 4)
    assert pair.guided_layer == spec.guided_layer
    assert pair.guided_shape == spec.guided_shape
    # an explicit choice wins, and a wrong name is a one-line user error naming the layer
    pair = pair_layers(teacher, build(spec), (3, 32, 32), spec=spec, hint_layer="layer1",
                       guided_layer="features.2")
    assert (pair.hint_layer, pair.hint_shape) == ("layer1", (64, 8, 8))
    assert pair.guided_shape == (8, 32, 32)
    with pytest.raises(EdgekdError, match="hint layer 'layer9'"):
        pair_layers(teacher, build(spec), (3, 32, 32), hint_layer="layer9")


def test_auto_layer_without_spec_is_the_middle_activation() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                          nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 22 * 22, 10))
    layers = list_layers(model, (1, 28, 28))
    assert [l.name for l in layers if l.activation] == ["1", "3", "5"]
    assert auto_layer(layers) == "3"
    assert next(l for l in layers if l.name == "3").shape == (4, 24, 24)


@pytest.mark.parametrize("guided,hint,kind,params", [
    ((8, 14, 14), (32, 14, 14), "conv1x1", 8 * 32 + 32),
    ((8, 28, 28), (32, 14, 14), "conv", 8 * 32 * 15 * 15 + 32),   # kernel N_g - N_h + 1 = 15
    ((8, 7, 7), (32, 14, 14), "upsample+conv1x1", 8 * 32 + 32),
    ((16,), (64,), "linear", 16 * 64 + 64),
    ((16, 7, 7), (64,), "pool+linear", 16 * 64 + 64),
])
def test_regressor_shapes(guided, hint, kind, params) -> None:
    reg = make_regressor(guided, hint)
    assert reg.kind == kind
    assert sum(p.numel() for p in reg.parameters()) == params
    assert reg(torch.randn(2, *guided)).shape == (2, *hint)


def test_regressor_refuses_vector_to_map() -> None:
    with pytest.raises(EdgekdError, match="cannot regress"):
        make_regressor((16,), (8, 7, 7))


class _Untraceable(nn.Module):
    """Data-dependent control flow: fx cannot trace it, so taps fall back to hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(x))
        if x.sum() > 0:
            x = x * 2
        return self.head(x.mean(dim=(2, 3)))


def test_hook_fallback_for_untraceable_models() -> None:
    model = _Untraceable()
    layers = list_layers(model, (1, 8, 8))
    assert [l.name for l in layers] == ["conv", "act", "head"]
    assert auto_layer(layers) == "act"
    tap = FeatureTap(model, "act")
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(tap(x), model.act(model.conv(x)))
    with pytest.raises(EdgekdError, match="not a module"):
        FeatureTap(model, "nope")


def test_tap_shares_the_student_parameters() -> None:
    spec = StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 1), Stage(8, 2, 2)))
    student = build(spec)
    tap = FeatureTap(student, spec.guided_layer)
    tap(torch.randn(2, 1, 28, 28)).sum().backward()
    assert student.features[0].conv.weight.grad is not None
    assert student.head.weight.grad is None  # the tap stops at the guided layer


def test_hint_stage_lowers_the_hint_loss_on_mnist() -> None:
    from edgekd.inputs.data import load_dataset, to_tensor

    ds = load_dataset(None)
    x = to_tensor(ds.x_train[:256], ds.normalization)
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(32 * 7 * 7, 10)).eval()
    spec = StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 1), Stage(8, 2, 2), Stage(8, 2, 2)))
    student = build(spec)
    pair = pair_layers(teacher, student, (1, 28, 28), spec=spec)
    reg = make_regressor(pair.guided_shape, pair.hint_shape)
    t_tap, s_tap = FeatureTap(teacher, pair.hint_layer), FeatureTap(student, pair.guided_layer)
    with torch.no_grad():
        target = t_tap(x)
    opt = torch.optim.Adam(list(student.parameters()) + list(reg.parameters()), lr=1e-2)

    def loss() -> torch.Tensor:
        return losses.hint_loss(target, reg(s_tap(x)))

    first = float(loss().detach())
    for _ in range(15):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert float(loss().detach()) < 0.6 * first


def test_torchscript_teacher_has_no_hint_layers_and_says_so() -> None:
    """fx cannot trace TorchScript and it refuses forward hooks: pairing must explain, not crash."""
    teacher = torch.jit.script(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                             nn.Flatten(), nn.Linear(4 * 28 * 28, 10)))
    student = build(StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 2),)))
    assert list_layers(teacher, (1, 28, 28)) == []
    with pytest.raises(EdgekdError, match="no tappable layers"):
        pair_layers(teacher, student, (1, 28, 28))
