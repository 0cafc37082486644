"""FitNets taps, automatic hint/guided pairing, regressor shapes, and the hint stage on real data."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekd.distill import losses
from edgekd.distill.hints import FeatureTap, list_layers, make_regressor
from edgekd.distill.pairing import auto_layer, hint_pairs, pair_layers
from edgekd.core.errors import EdgekdError
from edgekd.search.space import Stage, StudentSpec, build


pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_pairing_torchvision_teacher_and_spec_student() -> None:
    from torchvision.models import resnet18

    teacher = resnet18(num_classes=10)
    spec = StudentSpec("plain", (3, 32, 32), 10, (Stage(8, 3, 1), Stage(16, 3, 2), Stage(32, 3, 2)))
    pair = pair_layers(teacher, build(spec), (3, 32, 32))
    # resnet18 at 32x32: stem 16x16, layer1 8x8, layer2 4x4, layer3 2x2, layer4 1x1; the student
    # has 32, 16 and 8. The stage end nearest the teacher's middle with an equal-size student
    # map is layer1's end (8x8), paired with the student's first 8x8 layer (nearest depth).
    assert (pair.hint_layer, pair.hint_shape) == ("layer1.1.relu_1", (64, 8, 8))
    assert pair.guided_shape[1:] == pair.hint_shape[1:]
    assert pair.guided_layer == "features.6.relu"
    # an explicit choice wins, and a wrong name is a one-line user error naming the layer
    pair = pair_layers(teacher, build(spec), (3, 32, 32), hint_layer="layer1",
                       guided_layer="features.2")
    assert (pair.hint_layer, pair.hint_shape) == ("layer1", (64, 8, 8))
    assert pair.guided_shape == (8, 32, 32)
    with pytest.raises(EdgekdError, match="hint layer 'layer9'"):
        pair_layers(teacher, build(spec), (3, 32, 32), hint_layer="layer9")


def test_pairing_picks_equal_resolutions_resnet18_at_224() -> None:
    from torchvision.models import resnet18

    teacher = resnet18(num_classes=10)
    spec = StudentSpec("residual", (3, 224, 224), 10,
                       (Stage(8, 1, 2), Stage(8, 2, 2), Stage(16, 2, 2), Stage(16, 2, 2), Stage(32, 1, 2)))
    pairs = hint_pairs(teacher, build(spec), (3, 224, 224), stages="all")
    sizes = [(p.hint_shape[1:], p.guided_shape[1:]) for p in pairs]
    assert all(h == g for h, g in sizes)
    # one pair per teacher stage (112 stem, layer1..layer4 at 56, 28, 14, 7), in order on both sides
    assert [h for h, _ in sizes] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert pairs[1].hint_layer == "layer1.1.relu_1" and pairs[4].hint_layer == "layer4.1.relu_1"
    single = pair_layers(teacher, build(spec), (3, 224, 224))
    assert single.hint_shape[1:] == single.guided_shape[1:] == (28, 28)  # layer2: the teacher's middle


@pytest.mark.parametrize("family", ["plain", "residual"])
def test_pairing_picks_equal_resolutions_on_search_space_students(family: str) -> None:
    from edgekd.search.grid import enumerate_specs

    teacher = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                            nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(32 * 7 * 7, 10)).eval()
    every = [s for s in enumerate_specs((1, 28, 28), 10) if s.family == family]
    specs = every[:: max(1, len(every) // 8)]  # spread over depths and widths
    assert specs
    for spec in specs:
        pair = pair_layers(teacher, build(spec), (1, 28, 28))
        student_sizes = {l.shape[1:] for l in list_layers(build(spec), (1, 28, 28))
                         if l.shape is not None and len(l.shape) == 3}
        if pair.hint_shape[1:] in student_sizes:
            assert pair.guided_shape[1:] == pair.hint_shape[1:], spec.describe()
        else:  # no equal size: the student map is smaller and the hint is pooled down to it
            assert pair.guided_shape[1] < pair.hint_shape[1]


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
    ((8, 7, 7), (32, 14, 14), "conv1x1+pooled-hint", 8 * 32 + 32),
    ((16,), (64,), "linear", 16 * 64 + 64),
    ((16, 7, 7), (64,), "pool+linear", 16 * 64 + 64),
])
def test_regressor_shapes(guided, hint, kind, params) -> None:
    reg = make_regressor(guided, hint)
    assert reg.kind == kind
    assert sum(p.numel() for p in reg.parameters()) == params
    out = reg(torch.randn(2, *guided))
    assert out.shape == (2, *reg.target_shape)
    assert reg.target(torch.randn(2, *hint)).shape == out.shape
    if kind == "conv1x1+pooled-hint":  # the hint is pooled down to the student's 7x7, never upsampled
        assert out.shape == (2, 32, 7, 7)
        u = torch.arange(14.0).repeat(14, 1).expand(1, 32, 14, 14)
        assert float(reg.target(u)[0, 0, 0, 0]) == pytest.approx(0.5)  # mean of columns 0 and 1
    else:
        assert out.shape == (2, *hint)


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
    from edgekd.inputs.data import to_tensor
    from edgekd.inputs.loaders import load_dataset

    ds = load_dataset(None)
    x = to_tensor(ds.x_train[:256], ds.normalization)
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(32 * 7 * 7, 10)).eval()
    spec = StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 1), Stage(8, 2, 2), Stage(8, 2, 2)))
    student = build(spec)
    pair = pair_layers(teacher, student, (1, 28, 28))
    reg = make_regressor(pair.guided_shape, pair.hint_shape)
    t_tap, s_tap = FeatureTap(teacher, pair.hint_layer), FeatureTap(student, pair.guided_layer)
    with torch.no_grad():
        target = reg.target(t_tap(x))
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


def test_r2_of_a_synthetic_fit_matches_numpy() -> None:
    import numpy as np

    from edgekd.distill.hint_stage import R2Meter, plateaued

    rng = np.random.default_rng(0)
    u = rng.normal(size=(64, 3, 4, 4)) * np.array([1.0, 5.0, 0.2])[None, :, None, None] + 2.0
    noise = rng.normal(size=u.shape) * 0.5
    r = u + noise
    # by hand: 1 - SS_res / SS_tot, SS_tot around each channel's own mean over images and positions
    ss_res = (noise ** 2).sum()
    ss_tot = sum(((u[:, c] - u[:, c].mean()) ** 2).sum() for c in range(3))
    meter = R2Meter()
    for i in range(0, 64, 24):  # streamed in uneven batches
        meter.update(torch.tensor(u[i:i + 24]), torch.tensor(r[i:i + 24]))
    assert meter.value() == pytest.approx(1 - ss_res / ss_tot, rel=1e-9)
    exact, mean_only = R2Meter(), R2Meter()
    exact.update(torch.tensor(u), torch.tensor(u))
    mean_only.update(torch.tensor(u), torch.tensor(u.mean(axis=(0, 2, 3), keepdims=True)).expand(*u.shape))
    assert exact.value() == pytest.approx(1.0) and mean_only.value() == pytest.approx(0.0, abs=1e-9)
    # the convergence rule: stop once the last 2 epochs add less than 0.01 to the best before
    assert not plateaued([0.2, 0.4, 0.5], 2, 0.01)
    assert plateaued([0.2, 0.5, 0.505, 0.508], 2, 0.01)
    assert not plateaued([0.5, 0.505], 2, 0.01)  # too few epochs to judge
