"""Hint modes (issue 12): multi-stage pairs (one per teacher stage, equal resolution), the
one-pass taps behind them, and the joint loss L_logit + beta * L_hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekd.distill import losses
from edgekd.distill.hint_stage import HintSet, MultiTap
from edgekd.distill.hints import FeatureTap, hint_pairs
from edgekd.search.space import Stage, StudentSpec, build

pytestmark = pytest.mark.usefixtures("one_thread")


def _teacher_28() -> nn.Module:
    """A residual search-space teacher on 28x28 inputs: stages at 28, 14 and 7 pixels."""
    torch.manual_seed(0)
    return build(StudentSpec("residual", (1, 28, 28), 10,
                             (Stage(16, 1, 1), Stage(32, 1, 2), Stage(64, 1, 2)))).eval()


def test_multi_pairs_one_per_stage_on_a_search_space_student() -> None:
    teacher = _teacher_28()
    student = build(StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 1), Stage(8, 3, 2), Stage(8, 2, 2))))
    pairs = hint_pairs(teacher, student, (1, 28, 28), stages="all")
    # one pair per teacher stage, each at equal resolution, in execution order on both sides
    assert [p.hint_shape[1:] for p in pairs] == [(28, 28), (14, 14), (7, 7)]
    assert all(p.guided_shape[1:] == p.hint_shape[1:] for p in pairs)
    guided = [p.guided_layer for p in pairs]
    assert guided == sorted(guided, key=lambda n: int(n.split(".")[1])) and len(set(guided)) == 3
    # a teacher stage with no student map of its size gets no pair (student has no 7x7 map)
    short = build(StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 1), Stage(8, 3, 2))))
    assert [p.hint_shape[1:] for p in hint_pairs(teacher, short, (1, 28, 28), stages="all")] == [(28, 28), (14, 14)]


def test_multi_pairs_on_torchvision_resnet18_as_the_student() -> None:
    from torchvision.models import resnet18

    teacher = build(StudentSpec("residual", (3, 64, 64), 10,
                                (Stage(8, 1, 2), Stage(16, 1, 2), Stage(32, 1, 2), Stage(64, 1, 2)))).eval()
    student = resnet18(num_classes=10)
    pairs = hint_pairs(teacher, student, (3, 64, 64), stages="all")
    # teacher stages at 32, 16, 8, 4; resnet18 at 64x64: stem 32 (pooled to 16), layer1 16,
    # layer2 8, layer3 4, layer4 2
    assert [p.hint_shape[1:] for p in pairs] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert all(p.guided_shape[1:] == p.hint_shape[1:] for p in pairs)
    assert [p.guided_layer.split(".")[0] for p in pairs][1:] == ["layer1", "layer2", "layer3"]
    hints = HintSet(teacher, student, pairs)
    targets, predictions, logits = hints.features(torch.randn(2, 3, 64, 64))
    assert logits is None
    assert [tuple(t.shape) for t in targets] == [tuple(r.shape) for r in predictions] \
        == [(2, *p.hint_shape) for p in pairs]


def test_multitap_one_pass_matches_feature_taps_and_the_model() -> None:
    teacher = _teacher_28()
    student = build(StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 2, 1), Stage(8, 2, 2))))
    pairs = hint_pairs(teacher, student, (1, 28, 28), stages="all")
    x = torch.randn(3, 1, 28, 28)
    student.eval()
    tap = MultiTap(student, [p.guided_layer for p in pairs], with_logits=True)
    outs = tap(x)
    assert len(outs) == len(pairs) + 1
    for out, pair in zip(outs, pairs):
        assert torch.allclose(out, FeatureTap(student, pair.guided_layer)(x))
    assert torch.allclose(outs[-1], student(x))
    # gradients flow into the student through the one-pass tap
    student.train()
    sum(o.sum() for o in tap(x)).backward()
    assert student.features[0].conv.weight.grad is not None and student.head.weight.grad is not None


def test_multitap_falls_back_to_hooks_for_untraceable_models() -> None:
    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.a(x))
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                x = x * 2
            return self.head(torch.relu(self.b(x)).mean(dim=(2, 3)))

    model = Untraceable().eval()
    x = torch.rand(2, 1, 8, 8)
    outs = MultiTap(model, ["a", "b"], with_logits=True)(x)
    assert torch.allclose(outs[0], model.a(x)) and torch.allclose(outs[2], model(x))
    assert outs[1].shape == (2, 4, 8, 8)


def test_joint_loss_adds_beta_times_the_hint_loss_by_hand() -> None:
    from edgekd.distill.methods import Batch, StudentOut, TeacherOut
    from edgekd.distill.objectives import JointHintLoss, KDLoss
    from edgekd.distill.trainer import TrainConfig

    config = TrainConfig(method="fitnet", temperature=2.0, alpha=0.25, hint_beta=0.5)
    zs = torch.tensor([[1.0, 0.0, -1.0]])
    zt = torch.tensor([[2.0, 0.5, 0.0]])
    y = torch.tensor([0])
    # hint maps of 2 channels at 1x2 positions: u (teacher) and r(v) (regressed student)
    u = torch.tensor([[[[1.0, 2.0]], [[0.0, -1.0]]]])
    r = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    out = JointHintLoss(config, KDLoss(config)).forward(StudentOut(logits=zs, hint=r), TeacherOut(logits=zt, hint=u),
                                                        Batch(zs, y, 0.0))
    # KD by hand: a*CE + (1-a)*T^2*KL(p_t^T || p_s^T), softmaxes written out
    import math

    def softmax(z: list[float]) -> list[float]:
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    ce = -math.log(softmax([1.0, 0.0, -1.0])[0])
    pt, ps = softmax([1.0, 0.25, 0.0]), softmax([0.5, 0.0, -0.5])
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    kd = 0.25 * ce + 0.75 * 4.0 * kl
    # hint by hand, per channel: positions (1,1): 1/2 (1^2 + 1^2) = 1; (1,2): 1/2 (0 + 2^2) = 2;
    # averaged over the 2 positions = 1.5
    assert out.parts["hint"] == pytest.approx(1.5)
    assert float(out.loss) == pytest.approx(kd + 0.5 * 1.5, rel=1e-6)
    assert float(losses.hint_loss(u, r, reduction="channel")) == pytest.approx(1.5)
