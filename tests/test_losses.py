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


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def test_hint_loss_channel_scale_by_hand() -> None:
    u = torch.tensor([[[[1.0, 2.0]], [[0.0, -1.0]]]])  # (1, C=2, H=1, W=2)
    r = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    # position (0,0): (1-0)^2 + (0-1)^2 = 2; position (0,1): 0 + 4 = 4; mean over 2 positions
    assert float(losses.hint_loss(u, r, reduction="channel")) == pytest.approx(0.5 * (2 + 4) / 2)
    vec_u, vec_r = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 2.0, 1.0]])
    assert float(losses.hint_loss(vec_u, vec_r, reduction="channel")) == pytest.approx(0.5 * 5)


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_dkd_terms_by_hand(t: float) -> None:
    total_tckd = total_nckd = 0.0
    for zs, zt, y in zip(S, TT, Y):
        ps, pt = _softmax(zs, t), _softmax(zt, t)
        total_tckd += _kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        # non-target distribution: softmax over the other classes only
        others = [i for i in range(3) if i != y]
        qs = _softmax([zs[i] for i in others], t)
        qt = _softmax([zt[i] for i in others], t)
        total_nckd += _kl(qt, qs)
    tckd, nckd = losses.dkd_terms(torch.tensor(S), torch.tensor(TT), torch.tensor(Y), t)
    assert float(tckd) == pytest.approx(t * t * total_tckd / 2, rel=1e-5)
    assert float(nckd) == pytest.approx(t * t * total_nckd / 2, rel=1e-5)
    # the paper's eq. 5: KD = TCKD + (1 - p_t^T) * NCKD, image by image
    for zs, zt, y in zip(S, TT, Y):
        one = [torch.tensor([v]) for v in (zs, zt)] + [torch.tensor([y])]
        tc, nc = losses.dkd_terms(*one, t)
        kd = losses.kd_soft_loss(one[0], one[1], t)
        assert float(kd) == pytest.approx(float(tc) + (1 - _softmax(zt, t)[y]) * float(nc), rel=1e-5)


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             temperature: float, alpha: float, beta: float, warmup: float = 1.0) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022): ``CE(y, p_s) + w * T^2 * (alpha*TCKD + beta*NCKD)``.

    ``alpha``, ``beta``: the paper's weights (its CIFAR-100 setting: ``alpha=1, beta=8, T=4``);
    ``w`` (``warmup``, in [0, 1]) is the paper's linear warm-up factor of the distillation
    term (``min(epoch / 20, 1)`` over its 240 epochs). The paper's formula with a CE weight of 1:
    :class:`edgekd.distill.objectives.DKDLoss` is the product's, with its weights and parts.
    TCKD and NCKD are defined in :func:`dkd_terms`.
    """
    tckd, nckd = losses.dkd_terms(student_logits, teacher_logits, labels, temperature)
    return losses.cross_entropy(student_logits, labels) + float(warmup) * (alpha * tckd + beta * nckd)


def test_dkd_loss_weights_by_hand() -> None:
    s, tt, y = torch.tensor(S), torch.tensor(TT), torch.tensor(Y)
    tckd, nckd = losses.dkd_terms(s, tt, y, 4.0)
    ce = -sum(math.log(_softmax(row)[c]) for row, c in zip(S, Y)) / 2
    got = dkd_loss(s, tt, y, 4.0, alpha=1.0, beta=8.0, warmup=0.5)
    assert float(got) == pytest.approx(ce + 0.5 * (float(tckd) + 8.0 * float(nckd)), rel=1e-6)


def test_lskd_by_hand() -> None:
    tau = 2.0

    def zscore(row: list[float]) -> list[float]:
        m = sum(row) / len(row)
        sd = math.sqrt(sum((v - m) ** 2 for v in row) / (len(row) - 1))  # unbiased, as the paper's code
        return [(v - m) / sd for v in row]

    expected = sum(_kl(_softmax(zscore(zt), tau), _softmax(zscore(zs), tau))
                   for zs, zt in zip(S, TT)) / 2 * tau * tau
    got = losses.lskd_soft_loss(torch.tensor(S), torch.tensor(TT), tau)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # invariant to shifting and scaling either network's logits (z-score), unlike plain KD
    scaled = losses.lskd_soft_loss(3.0 * torch.tensor(S) + 7.0, 0.5 * torch.tensor(TT) - 1.0, tau)
    assert float(scaled) == pytest.approx(expected, rel=1e-4)
    assert float(losses.kd_soft_loss(3.0 * torch.tensor(S), torch.tensor(TT), tau)) != pytest.approx(
        float(losses.kd_soft_loss(torch.tensor(S), torch.tensor(TT), tau)), rel=1e-2)
