"""Each distillation loss against a hand computation, and the T^2 scaling of KD."""

from __future__ import annotations

import math

import pytest
import torch

from edgekd.distill import losses


def _softmax(row: list[float], t: float = 1.0) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TT = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.5]]
Y = [1, 2]


def test_cross_entropy_by_hand() -> None:
    expected = -sum(math.log(_softmax(row)[y]) for row, y in zip(S, Y)) / 2
    got = losses.cross_entropy(torch.tensor(S), torch.tensor(Y))
    assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("t", [1.0, 3.0])
def test_kd_soft_loss_is_t2_times_kl(t: float) -> None:
    kl = 0.0
    for s_row, t_row in zip(S, TT):
        p_s, p_t = _softmax(s_row, t), _softmax(t_row, t)
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    expected = t * t * kl / 2
    got = losses.kd_soft_loss(torch.tensor(S), torch.tensor(TT), t)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_kd_loss_mixes_hard_and_soft() -> None:
    s, t, y = torch.tensor(S), torch.tensor(TT), torch.tensor(Y)
    a, temp = 0.3, 2.0
    expected = a * losses.cross_entropy(s, y) + (1 - a) * losses.kd_soft_loss(s, t, temp)
    assert float(losses.kd_loss(s, t, y, temp, a)) == pytest.approx(float(expected), rel=1e-6)
    assert float(losses.kd_loss(s, t, y, temp, 1.0)) == pytest.approx(float(losses.cross_entropy(s, y)))


def test_t2_keeps_soft_gradients_independent_of_temperature() -> None:
    """Hinton et al.: d(T^2 KL)/dz_s = T (p_s^T - p_t^T) / N exactly, which tends to
    (z_s - z_t)/(C N) for large T (zero-mean logits): the same at every high temperature."""
    torch.manual_seed(0)
    zs = torch.randn(4, 10)
    zs = zs - zs.mean(1, keepdim=True)
    zt = torch.randn(4, 10)
    zt = zt - zt.mean(1, keepdim=True)
    grads = {}
    for t in (3.0, 100.0, 200.0):
        s = zs.clone().requires_grad_(True)
        losses.kd_soft_loss(s, zt, t).backward()
        grads[t] = s.grad
        exact = t * (torch.softmax(zs / t, 1) - torch.softmax(zt / t, 1)) / 4
        assert torch.allclose(s.grad, exact, atol=1e-5)
    limit = (zs - zt) / (10 * 4)
    assert torch.allclose(grads[200.0], limit, atol=5e-4)
    # without T^2 the gradient would shrink 4x between T=100 and T=200
    assert float(grads[200.0].norm() / grads[100.0].norm()) == pytest.approx(1.0, abs=0.02)


def test_hint_loss_by_hand() -> None:
    u = torch.tensor([[[[1.0, 2.0]], [[0.0, -1.0]]]])  # (1, 2, 1, 2)
    r = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    squared = 1.0 + 0.0 + 1.0 + 4.0
    assert float(losses.hint_loss(u, r)) == pytest.approx(0.5 * squared)
    assert float(losses.hint_loss(u, r, reduction="mean")) == pytest.approx(0.5 * squared / 4)
    two = torch.cat([u, u]), torch.cat([r, u])  # second example matches exactly
    assert float(losses.hint_loss(*two)) == pytest.approx(0.5 * squared / 2)
    with pytest.raises(ValueError):
        losses.hint_loss(u, r[:, :1])


def test_logit_mimic_by_hand() -> None:
    s, t = torch.tensor(S), torch.tensor(TT)
    expected = sum(0.5 * sum((a - b) ** 2 for a, b in zip(rs, rt)) for rs, rt in zip(S, TT)) / 2
    assert float(losses.logit_mimic_loss(s, t)) == pytest.approx(expected, rel=1e-6)


def test_ensemble_of_logits_and_probabilities() -> None:
    a, b = torch.tensor(S), torch.tensor(TT)
    assert torch.allclose(losses.combine_teacher_logits([a, b], "logits"), (a + b) / 2)
    t = 2.0
    z = losses.combine_teacher_logits([a, b], "probs", temperature=t)
    averaged = (torch.softmax(a / t, 1) + torch.softmax(b / t, 1)) / 2
    assert torch.allclose(torch.softmax(z / t, 1), averaged, atol=1e-6)
    assert losses.combine_teacher_logits([a], "probs") is a
    with pytest.raises(ValueError):
        losses.combine_teacher_logits([a, b], "median")
