"""Hint modes (issue 12): multi-stage pairs (one per teacher stage, equal resolution), the
one-pass taps behind them, and the joint loss L_logit + beta * L_hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekd.distill import losses
from edgekd.distill.hint_stage import HintSet, MultiTap
from edgekd.distill.hints import FeatureTap
from edgekd.distill.pairing import hint_pairs
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
    from edgekd.distill.config import TrainConfig

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


# ----------------------------------------------------------------------------- in the trainer
@pytest.fixture(scope="module")
def mnist():
    from edgekd.inputs.data import make_dataset
    from edgekd.inputs.loaders import load_dataset

    full = load_dataset(None)
    return make_dataset(name="mnist-800", source="test", x_train=full.x_train[:800], y_train=full.y_train[:800],
                        x_test=full.x_test[:500], y_test=full.y_test[:500], classes=full.classes)


def _cnn_teacher() -> nn.Module:
    """A CNN with maps at 28 and 14 pixels (its weights do not matter for the mechanics)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10)).eval()


STUDENT = StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 1, 1), Stage(8, 1, 2)))


def _train(mnist, tmp_path, name: str, **changes):
    from edgekd.distill import TrainConfig, train_student

    config = TrainConfig(**{"method": "fitnet", "epochs": 1, "hint_epochs": 2, "hint_patience": 0, "hint_min_r2": -1.0,
                            "batch_size": 32, "lr": 0.05, "cache_dir": str(tmp_path / "cache"), **changes})
    return train_student(STUDENT, [_cnn_teacher()], mnist, config, tmp_path / name, progress=False)


def _regressors(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoint.pt", weights_only=True)["extra"]["train_state"]["regressors"]


def test_multi_mode_trains_one_regressor_per_stage(mnist, tmp_path) -> None:
    from edgekd.core.fileio import read_jsonl

    result = _train(mnist, tmp_path, "multi", hint_mode="multi")
    assert [tuple(h["hint_shape"][1:]) for h in result.hints] == [(28, 28), (14, 14)]
    assert all(h["hint_shape"][1:] == h["guided_shape"][1:] for h in result.hints)
    assert result.hint == result.hints[0]
    records = read_jsonl(tmp_path / "multi" / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["hint", "hint", "kd"]
    for record in records[:2]:  # R^2 of each pair, and their mean
        assert sorted(record["r2"]) == sorted(h["guided_layer"] for h in result.hints)
        assert record["r2_mean"] == pytest.approx(sum(record["r2"].values()) / 2, abs=1e-4)
    assert records[1]["loss"] < records[0]["loss"]  # the summed hint loss goes down
    assert result.hint_r2[-1] > result.hint_r2[0]
    assert {k.split(".")[0] for k in _regressors(tmp_path / "multi")} == {"0", "1"}
    single = _train(mnist, tmp_path, "single")
    assert len(single.hints) == 1 and single.hint["hint_shape"][1:] == single.hint["guided_shape"][1:]


def test_joint_mode_keeps_training_the_regressor_during_kd(mnist, tmp_path) -> None:
    from edgekd.core.fileio import read_jsonl

    single = _train(mnist, tmp_path, "single", hint_epochs=1)
    joint = _train(mnist, tmp_path, "joint", hint_epochs=1, hint_mode="joint", hint_beta=2.0)
    hint_s, kd_s = read_jsonl(tmp_path / "single" / "metrics.jsonl")
    hint_j, kd_j = read_jsonl(tmp_path / "joint" / "metrics.jsonl")
    assert hint_j["loss"] == pytest.approx(hint_s["loss"], rel=1e-5)  # the same stage 1
    # stage 2: the hint term is logged and R^2 measured; the regressor moved on (single: frozen)
    assert "hint" in kd_j["loss_parts"] and "hint" not in kd_s["loss_parts"]
    assert "r2_mean" in kd_j and "r2_mean" not in kd_s
    r_single, r_joint = _regressors(tmp_path / "single"), _regressors(tmp_path / "joint")
    assert r_single.keys() == r_joint.keys()
    assert any(not torch.equal(r_single[k], r_joint[k]) for k in r_single)
    assert joint.config["hint_mode"] == "joint" and joint.config["hint_beta"] == 2.0
    # joint hints may skip stage 1 (the hint loss is then only KD's auxiliary term)
    direct = _train(mnist, tmp_path, "direct", hint_epochs=0, hint_mode="joint")
    assert direct.hint_epochs_done == 0 and direct.epochs_done == 1
    assert [r["stage"] for r in read_jsonl(tmp_path / "direct" / "metrics.jsonl")] == ["kd"]


def test_hint_mode_errors_are_one_line() -> None:
    from edgekd.core.errors import EdgekdError
    from edgekd.distill import TrainConfig

    with pytest.raises(EdgekdError, match="hint_mode"):
        TrainConfig(method="fitnet", hint_mode="every")
    with pytest.raises(EdgekdError, match="hint_beta"):
        TrainConfig(method="fitnet", hint_mode="joint", hint_beta=-1.0)
    with pytest.raises(EdgekdError, match="hint_epochs >= 1"):
        TrainConfig(method="fitnet", hint_epochs=0)
