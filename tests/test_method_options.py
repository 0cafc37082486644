"""Method options: every option a method declares changes its loss, an option it does not
declare is refused (TrainConfig and the CLI, exit status 2), and the losses equal reference
formulas written out here in NumPy (float64), independent of edgekd.distill.losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.distill.config import TrainConfig
from edgekd.distill.methods import METHODS, OPTION_FIELDS, Batch, StudentOut, TeacherOut

RNG = np.random.default_rng(0)
N, K = 6, 10
S = RNG.normal(0, 2, (N, K))
TT = RNG.normal(0, 3, (N, K))
Y = RNG.integers(0, K, N)
#: feature maps for hint and feature losses: (student, teacher) pairs at two resolutions
FEATS = [(RNG.normal(size=(N, 4, 6, 6)), RNG.normal(size=(N, 8, 6, 6))),
         (RNG.normal(size=(N, 6, 3, 3)), RNG.normal(size=(N, 5, 6, 6)))]
PROGRESS = 0.04  # inside DKD's warm-up, and where FitNets' lambda depends on both ends


def _config(method: str, **options: float) -> TrainConfig:
    fields = {OPTION_FIELDS[k]: v for k, v in options.items() if k in OPTION_FIELDS}
    rest = {k: v for k, v in options.items() if k not in OPTION_FIELDS}
    return TrainConfig(method=method, method_options=rest, **fields)


def _stage_losses(config: TrainConfig) -> list[float]:
    """The value of every stage's loss of ``config.method`` on the fixed batch (float64)."""
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    batch = Batch(t(np.zeros((N, 1, 2, 2))), torch.tensor(Y), PROGRESS)
    values = []
    for stage in METHODS[config.method].stages:
        loss = stage.loss(config)
        if stage.kind == "hint":
            s, u = FEATS[0][1], FEATS[0][1] * 0.5 + 0.1
            out = loss.forward(StudentOut(hint=t(s)), TeacherOut(hint=t(u)), batch)
        else:
            student = StudentOut(logits=t(S), features=[t(f[0]) for f in FEATS])
            teacher = TeacherOut(logits=t(TT), features=[t(f[1]) for f in FEATS])
            out = loss.forward(student, teacher, batch)
        values.append(float(out.loss))
    return values


def _changed(option) -> float:
    value = option.default + 0.25
    return value if option.problem(value) is None else option.default / 2


DECLARED = [(m.name, o) for m in METHODS.values() if m.stages for o in m.options]


@pytest.mark.parametrize("method, option", DECLARED, ids=[f"{m}-{o.name}" for m, o in DECLARED])
def test_every_declared_option_changes_the_loss(method: str, option) -> None:
    base = _stage_losses(_config(method))
    changed = _stage_losses(_config(method, **{option.name: _changed(option)}))
    assert all(np.isfinite(base)) and base != changed, f"{method}: {option.name} changes nothing"
    assert _config(method).option(option.name) == option.default


def test_ban_hands_its_options_to_every_generation() -> None:
    config = TrainConfig(method="ban", temperature=2.5, alpha=0.3, label_smoothing=0.2)
    assert config.for_method("kd").options() == {"T": 2.5, "alpha": 0.3, "label_smoothing": 0.2}
    assert config.for_method("scratch").options() == {"label_smoothing": 0.2}  # a label-trained first generation


def _undeclared(method: str) -> list[str]:
    every = {o.name for m in METHODS.values() for o in m.options} | {"bogus.x"}
    return sorted(every - {o.name for o in METHODS[method].options})


@pytest.mark.parametrize("method", list(METHODS))
def test_an_option_the_method_ignores_is_refused(method: str) -> None:
    for name in _undeclared(method):
        with pytest.raises(EdgekdError, match=f"method {method} does not use option {name}"):
            _config(method, **{name: 0.5})


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(EdgekdError, match=r"T=0 is outside \(0, inf\)"):
        _config("kd", T=0.0)
    with pytest.raises(EdgekdError, match=r"dkd.warmup=2 is outside \[0, 1\]"):
        _config("dkd", **{"dkd.warmup": 2.0})


@pytest.mark.parametrize("args, message", [
    (["--method", "kd", "--method-opt", "dkd.beta=8"], "method kd does not use option dkd.beta"),
    (["--method", "mimic", "-T", "2"], "method mimic does not use option T"),
    (["--method", "dkd", "--alpha", "0.5"], "method dkd does not use option alpha"),
    (["--method", "kd", "--method-opt", "T=2", "-T", "3"], "contradicts --temperature"),
    (["--method", "kd", "--method-opt", "T"], "is not NAME=VALUE"),
])
def test_the_cli_refuses_ignored_options_in_one_line(args, message, tmp_path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text('{"family": "plain", "input": [1, 28, 28], "classes": 10, '
                    '"stages": [{"width": 4, "depth": 1, "stride": 2}]}')
    result = CliRunner().invoke(cli, ["train", "--student", str(spec), *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    if "NAME=VALUE" not in message:
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_compress_refuses_an_option_its_method_ignores(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["compress", "--method", "fitnet", "--method-opt", "dkd.beta=2",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "method fitnet does not use option dkd.beta" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_help_lists_each_methods_options() -> None:
    """--help keeps to the names (it fits a screen); 'edgekd methods', which it names, lists
    each method's options with their defaults."""
    helped = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "--method-opt" in helped and "edgekd methods" in helped
    text = " ".join(CliRunner().invoke(cli, ["methods"]).output.split())
    assert "lskd.kd=9" in text and "dkd.beta=8" in text


def test_compress_hands_each_trial_only_its_methods_options() -> None:
    from edgekd.run.config import CompressConfig

    config = CompressConfig(method="fitnet-dkd", method_options={"dkd.beta": 4.0, "T": 3.0}, label_smoothing=0.1)
    config.check_method_options()
    assert config.trial_options("fitnet-dkd") == {"temperature": 3.0, "label_smoothing": 0.1,
                                                  "method_options": {"dkd.beta": 4.0}}
    assert config.trial_options("kd") == {"temperature": 3.0, "label_smoothing": 0.1}  # a selection rung
    assert config.trial_options("scratch") == {"label_smoothing": 0.1}  # a --baselines arm


# ----------------------------------------------------------------------------- reference formulas
def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _ce(z: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
    """Cross-entropy with label smoothing: target (1-eps) onehot + eps/K."""
    target = np.full(z.shape, eps / z.shape[1])
    target[np.arange(len(y)), y] += 1.0 - eps
    return float(-(target * _log_softmax(z)).sum(axis=1).mean())


def _kl_t2(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, averaged over the batch."""
    lt, ls = _log_softmax(t / temp), _log_softmax(s / temp)
    return float((np.exp(lt) * (lt - ls)).sum(axis=1).mean() * temp ** 2)


def ref_kd(s, t, y, temp, alpha, eps=0.0, lam=1.0) -> float:
    """Hinton et al. 2015 (FitNets' stage 2: soft term weighted by lambda, renormalised)."""
    return (alpha * _ce(s, y, eps) + (1 - alpha) * lam * _kl_t2(s, t, temp)) / (alpha + (1 - alpha) * lam)


def ref_dkd(s, t, y, temp, ce, alpha, beta, warm, eps=0.0) -> float:
    """Zhao et al. 2022, written as mdistiller does: binary (target, rest) probabilities for TCKD;
    the target logit pushed down by 1000 before the softmax for NCKD."""
    gt = np.zeros_like(s)
    gt[np.arange(len(y)), y] = 1.0
    ps, pt = np.exp(_log_softmax(s / temp)), np.exp(_log_softmax(t / temp))
    bs = np.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum(1).mean() * temp ** 2
    ls, lt = _log_softmax(s / temp - 1000.0 * gt), _log_softmax(t / temp - 1000.0 * gt)
    nckd = (np.exp(lt) * (lt - ls)).sum(1).mean() * temp ** 2
    return ce * _ce(s, y, eps) + warm * (alpha * tckd + beta * nckd)


def ref_lskd(s, t, y, temp, ce, kd, eps=0.0) -> float:
    """Sun et al. 2024: z-score each logit vector (unbiased std + 1e-7), then KD."""
    z = lambda a: (a - a.mean(1, keepdims=True)) / (a.std(1, ddof=1, keepdims=True) + 1e-7)  # noqa: E731
    return ce * _ce(s, y, eps) + kd * _kl_t2(z(s), z(t), temp)


def ref_hint(u: np.ndarray, r: np.ndarray) -> float:
    """Romero et al. 2015: 1/2 ||u - r||^2 summed over channels, averaged over positions and images."""
    return float((0.5 * ((u - r) ** 2).sum(axis=1)).mean())


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kd_dkd_lskd_fitnet_equal_the_reference_formulas(temp: float) -> None:
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    batch = Batch(t(np.zeros((N, 1))), torch.tensor(Y), PROGRESS)
    student, teacher = StudentOut(logits=t(S)), TeacherOut(logits=t(TT))

    def value(method: str, stage: int = -1, **options: float) -> float:
        loss = METHODS[method].stages[stage].loss(_config(method, **options))
        return float(loss.forward(student, teacher, batch).loss)

    assert value("kd", T=temp, alpha=0.3, label_smoothing=0.1) == pytest.approx(
        ref_kd(S, TT, Y, temp, 0.3, 0.1), rel=1e-10)
    lam = 4.0 + (1.0 - 4.0) * PROGRESS
    assert value("fitnet", T=temp, alpha=0.3) == pytest.approx(ref_kd(S, TT, Y, temp, 0.3, lam=lam), rel=1e-10)
    warm = PROGRESS / (20 / 240)
    assert value("dkd", T=temp, label_smoothing=0.1) == pytest.approx(
        ref_dkd(S, TT, Y, temp, 1.0, 1.0, 8.0, warm, 0.1), rel=1e-8)
    assert value("fitnet-dkd", T=temp, **{"dkd.ce": 0.5, "dkd.alpha": 2.0, "dkd.beta": 3.0, "dkd.warmup": 0.0}) \
        == pytest.approx(ref_dkd(S, TT, Y, temp, 0.5, 2.0, 3.0, 1.0), rel=1e-8)
    assert value("lskd", T=temp) == pytest.approx(ref_lskd(S, TT, Y, temp, 0.1, 9.0), rel=1e-10)
    assert value("fitnet-lskd", T=temp, label_smoothing=0.2, **{"lskd.kd": 0.9}) == pytest.approx(
        ref_lskd(S, TT, Y, temp, 0.1, 0.9, 0.2), rel=1e-10)
    u, r = FEATS[0][1], FEATS[0][1] * 0.5 + 0.1
    hint = METHODS["fitnet"].stages[0].loss(_config("fitnet"))
    assert float(hint.forward(StudentOut(hint=t(r)), TeacherOut(hint=t(u)), batch).loss) == pytest.approx(
        ref_hint(u, r), rel=1e-12)


def test_lskd_defaults_are_the_authors_weights() -> None:
    config = TrainConfig(method="lskd")
    assert config.options() == {"T": 2.0, "lskd.ce": 0.1, "lskd.kd": 9.0, "label_smoothing": 0.0}
    assert TrainConfig(method="dkd").options() == {"T": 4.0, "dkd.ce": 1.0, "dkd.alpha": 1.0, "dkd.beta": 8.0,
                                                   "dkd.warmup": 20 / 240, "label_smoothing": 0.0}


def test_configs_written_before_options_keep_what_they_trained() -> None:
    """A result.json config of the earlier format reads back as the options it trained with."""
    old = {"method": "lskd", "temperature": 4.0, "alpha": 0.1, "label_smoothing": 0.1, "dkd_alpha": 1.0,
           "dkd_beta": 8.0, "dkd_warmup": 0.1, "ls_temperature": 2.0, "lambda_start": 4.0, "lambda_end": 1.0}
    config = TrainConfig.from_dict(old)
    assert config.options() == {"T": 2.0, "lskd.ce": 0.1, "lskd.kd": pytest.approx(0.9), "label_smoothing": 0.0}
    kd = TrainConfig.from_dict({**old, "method": "kd", "label_smoothing": 0.0})
    assert kd.identity() == TrainConfig(method="kd").identity()  # unchanged method: the same identity
    dkd = TrainConfig.from_dict({**old, "method": "dkd"})
    assert dkd.option("dkd.warmup") == 0.1 and dkd.identity() != TrainConfig(method="dkd").identity()


# ----------------------------------------------------------------------------- born-again
def test_ban_generations_of_a_module_start_from_their_own_seeds(tmp_path, monkeypatch, one_thread) -> None:
    """Each generation of an nn.Module student is re-initialised under seed + g - 1 (before, all
    generations started from the same deep copy)."""
    from edgekd.distill import ban, train_student
    from edgekd.inputs.loaders import load_dataset
    from edgekd.inputs.teachers import BuiltinCNN

    seen: list[dict[str, torch.Tensor]] = []
    real = ban.train_student

    def spy(student, *args, **kwargs):
        seen.append({k: v.clone() for k, v in student.state_dict().items()})
        return real(student, *args, **kwargs)

    monkeypatch.setattr(ban, "train_student", spy)
    module = BuiltinCNN()
    config = TrainConfig(method="ban", generations=2, epochs=1, max_train_samples=256, batch_size=64,
                         seed=5, label_smoothing=0.1, cache_dir=str(tmp_path / "cache"))
    result = train_student(module, [], load_dataset(None), config, tmp_path / "ban", progress=False)
    assert [g["method"] for g in result.generations] == ["scratch", "kd"]
    assert len(seen) == 2
    for generation, init in enumerate(seen):
        expected = ban.reinitialised(module, 5 + generation).state_dict()
        assert all(torch.equal(init[k], expected[k]) for k in init)
    weights = [k for k in seen[0] if k.endswith("weight") and seen[0][k].ndim > 1]  # conv, linear (BN starts at 1)
    assert all(not torch.equal(seen[0][k], seen[1][k]) for k in weights)
    assert all(not torch.equal(seen[0][k], module.state_dict()[k]) for k in weights)  # not the given copy


def test_docs_methods_md_names_every_method_and_option() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text(encoding="utf-8")
    for method in METHODS.values():
        assert f"`{method.name}`" in text, f"docs/methods.md lacks method {method.name}"
        for option in method.options:
            assert f"`{option.name}`" in text, f"docs/methods.md lacks option {option.name} of {method.name}"
