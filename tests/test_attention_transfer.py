"""Attention transfer (`at`), the feature method added through the tap interface alone: its loss
against a hand computation, its taps on real networks, and training through `edgekd train` and
`edgekd compress` with no trainer code that knows about it. A toy feature loss with parameters of
its own shows that such parameters train with the stage and are kept in the checkpoint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.core.checkpoint import read_checkpoint
from edgekd.core.fileio import read_json, read_jsonl
from edgekd.distill import losses
from edgekd.distill.config import TrainConfig
from edgekd.distill.methods import (METHODS, Batch, LossOut, Method, Stage, StudentOut, TapPair, TeacherOut,
                                    register_method, unregister_method)
from edgekd.search.space import Stage as SpaceStage, StudentSpec

SPEC = StudentSpec("plain", (1, 28, 28), 10, (SpaceStage(8, 1, 2), SpaceStage(16, 1, 2)))
#: the teacher: wider and deeper, with maps at the student's two resolutions (14x14, 7x7)
TEACHER = StudentSpec("plain", (1, 28, 28), 10, (SpaceStage(16, 2, 2), SpaceStage(32, 2, 2)))
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """TEACHER trained on labels for 2 epochs; its edgekd checkpoint is a valid --teacher."""
    from edgekd.distill import train_student
    from edgekd.inputs.loaders import load_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one_thread is function-scoped: it is not active in a module fixture
    result = train_student(TEACHER, [], load_dataset(None),
                           TrainConfig(method="scratch", epochs=2, batch_size=32, max_train_samples=2000, lr=0.1),
                           tmp_path_factory.mktemp("at-teacher"), progress=False)
    torch.set_num_threads(threads)
    assert result.test_acc > 0.6  # chance is 0.10
    return result.checkpoint


def ref_attention_term(a_s: np.ndarray, a_t: np.ndarray, p: float) -> float:
    """By hand: per image, Q = mean over channels of |A|^p at each position (the larger map
    average-pooled by blocks to the smaller one), divided by its L2 norm; the squared
    difference averaged over images and positions."""
    def q(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        b, c, h, w = a.shape
        m = np.zeros((b, h, w))
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    m[i, y, x] = sum(abs(a[i, k, y, x]) ** p for k in range(c)) / c
        fy, fx = h // size[0], w // size[1]
        pooled = m.reshape(b, size[0], fy, size[1], fx).mean(axis=(2, 4))
        flat = pooled.reshape(b, -1)
        return flat / np.sqrt((flat ** 2).sum(axis=1, keepdims=True))

    size = (min(a_s.shape[2], a_t.shape[2]), min(a_s.shape[3], a_t.shape[3]))
    return float(((q(a_s, size) - q(a_t, size)) ** 2).mean())


@pytest.mark.parametrize("p", [2.0, 1.0])
def test_at_loss_equals_a_hand_computation(p: float) -> None:
    rng = np.random.default_rng(1)
    s1, t1 = rng.normal(size=(3, 4, 4, 4)), rng.normal(size=(3, 6, 4, 4))  # equal size, other channels
    s2, t2 = rng.normal(size=(3, 5, 2, 2)), rng.normal(size=(3, 3, 4, 4))  # the teacher's map is larger
    z, y = rng.normal(size=(3, 10)), np.array([1, 7, 3])
    config = TrainConfig(method="at", label_smoothing=0.1, method_options={"at.beta": 500.0, "at.p": p})
    loss = METHODS["at"].stages[0].loss(config)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    out = loss.forward(StudentOut(logits=t(z), features=[t(s1), t(s2)]),
                       TeacherOut(logits=None, features=[t(t1), t(t2)]), Batch(t(z), torch.tensor(y)))
    target = np.full((3, 10), 0.01)
    target[np.arange(3), y] += 0.9
    log_p = z - z.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    ce = -(target * log_p).sum(1).mean()
    expected = ce + 500.0 / 2 * (ref_attention_term(s1, t1, p) + ref_attention_term(s2, t2, p))
    assert float(out.loss) == pytest.approx(expected, rel=1e-10)
    assert out.parts["at"] > 0
    same = losses.attention_transfer_loss(t(s1), 3.0 * t(s1), p)  # scale-free: a scaled copy matches
    assert float(same) == pytest.approx(0.0, abs=1e-20)


def test_at_taps_pair_teacher_stage_ends_with_student_maps_of_their_size() -> None:
    from edgekd.distill.hints import list_layers
    from edgekd.inputs.builtin_teacher import BuiltinCNN
    from edgekd.search.space import build

    teacher = BuiltinCNN()
    pairs = METHODS["at"].stages[0].loss(TrainConfig(method="at")).taps(
        list_layers(teacher, (1, 28, 28)), list_layers(build(SPEC), (1, 28, 28)))
    assert len(pairs) >= 2 and all(isinstance(p, TapPair) for p in pairs)
    assert all(p.teacher_shape[1:] == p.student_shape[1:] for p in pairs)  # one pair per resolution
    assert len({p.student_shape[1:] for p in pairs}) == len(pairs)


def test_at_trains_through_edgekd_train(teacher_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPEC.to_json())
    out = tmp_path / "at"
    args = ["train", "--student", str(spec_file), "--teacher", str(teacher_file), "--method", "at",
            "--epochs", "3", "--max-train-samples", "1200", "--batch-size", "32", "--lr", "0.1",
            "--method-opt", "at.beta=200", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["at", "at", "at"]
    assert all(r["loss_parts"]["at"] > 0 for r in records)
    assert records[1]["loss_parts"]["at"] < records[0]["loss_parts"]["at"]  # the maps move toward the teacher's
    stored = read_json(out / "result.json")
    assert stored["method"] == "at" and stored["test_acc"] > 0.25, stored["test_acc"]  # chance is 0.10
    assert stored["config"]["method_options"] == {"at.beta": 200.0}
    refused = CliRunner().invoke(cli, [*args[:-2], "-T", "4", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "method at does not use option T" in refused.output


class ProjectedAT(nn.Module):
    """Toy feature loss with parameters: a 1x1 projection of the student's last tapped map onto
    the teacher's channels, L2 to the teacher's map, plus CE."""

    def __init__(self, config) -> None:
        super().__init__()
        self.proj: nn.Module | None = None

    def taps(self, teacher_layers, student_layers):
        s = [l for l in student_layers if l.shape and len(l.shape) == 3][-1]
        t = [l for l in teacher_layers if l.shape and len(l.shape) == 3 and l.shape[1:] == s.shape[1:]][-1]
        self.proj = nn.Conv2d(s.shape[0], t.shape[0], 1)
        return [TapPair(t.name, s.name, tuple(t.shape), tuple(s.shape))]

    def forward(self, student_out, teacher_out, batch):
        fit = (self.proj(student_out.features[0]) - teacher_out.features[0]).pow(2).mean()
        ce = losses.cross_entropy(student_out.logits, batch.y)
        return LossOut(ce + fit, {"fit": float(fit.detach())})


def test_a_feature_loss_with_parameters_trains_them_and_keeps_them(teacher_file, tmp_path) -> None:
    from edgekd.core.checkpoint import load_student
    from edgekd.distill import train_student
    from edgekd.inputs.loaders import load_dataset

    register_method(Method("toy-proj", "toy projected features", compress=False,
                           stages=(Stage("proj", ProjectedAT, teacher=True),)))
    try:
        dataset = load_dataset(None)
        teacher = load_student(teacher_file)[0].eval()
        config = TrainConfig(method="toy-proj", epochs=1, max_train_samples=400, batch_size=32, lr=0.05,
                             cache_dir=str(tmp_path / "cache"))
        result = train_student(SPEC, [teacher], dataset, config, tmp_path / "run", progress=False)
        state = read_checkpoint(result.checkpoint)["extra"]["train_state"]["loss_states"]["proj"]
        assert set(state) == {"proj.weight", "proj.bias"}
        first = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]["loss_parts"]["fit"]
        assert np.isfinite(first)
        fresh = nn.Conv2d(state["proj.weight"].shape[1], state["proj.weight"].shape[0], 1)
        assert not torch.equal(fresh.weight, state["proj.weight"])  # trained (and stored)
    finally:
        unregister_method("toy-proj")


@pytest.mark.slow
def test_at_trains_through_edgekd_compress(tmp_path) -> None:
    from tests.compress_runs import compress_args, tiny_inputs

    data, teacher = tiny_inputs(tmp_path)
    out = tmp_path / "run"
    args = compress_args(data, teacher, out, "--method", "at", "--method-opt", "at.beta=100", "--no-bundle",
                         "--no-progress")
    done = subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "report" / "summary.json").is_file()
    results = [read_json(p) for p in out.glob("trials/*/result.json")]
    assert results and {r["method"] for r in results} == {"at"}  # every rung trains at
    assert {r["config"]["method_options"]["at.beta"] for r in results} == {100.0}
    assert max(r["test_acc"] for r in results) > 0.2  # chance is 0.10


class TappedHint(nn.Module):
    """FitNets' stage 1 written against the tap interface alone: the pair of
    edgekd.distill.pairing.best_pair, a 1x1 regressor of the loss's own, 1/2 ||u - r(v)||^2 per
    channel (edgekd.distill.losses.hint_loss)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.regressor: nn.Module | None = None

    def taps(self, teacher_layers, student_layers):
        from edgekd.distill.pairing import best_pair

        t, s = best_pair(teacher_layers, student_layers)
        self.regressor = nn.Conv2d(s.shape[0], t.shape[0], 1)
        return [TapPair(t.name, s.name, tuple(t.shape), tuple(s.shape))]

    def forward(self, student_out, teacher_out, batch):
        loss = losses.hint_loss(teacher_out.features[0], self.regressor(student_out.features[0]), "channel")
        return LossOut(loss, {"hint": float(loss.detach())})


def test_fitnets_two_stages_are_expressible_in_the_tap_interface(teacher_file, tmp_path) -> None:
    """A hint stage (taps + a regressor owned by the loss) then KD, registered at test time:
    it trains with no trainer code of its own, the regressor fits, and KD follows."""
    from edgekd.core.checkpoint import load_student
    from edgekd.distill import train_student
    from edgekd.distill.method_catalog import KD_OPTIONS
    from edgekd.distill.methods import lazy_loss
    from edgekd.inputs.loaders import load_dataset

    register_method(Method("toy-fitnet", "hint stage then KD, through taps", compress=False, options=KD_OPTIONS,
                           stages=(Stage("hint", TappedHint, teacher=True, epochs=lambda config: 1),
                                   Stage("kd", lazy_loss("edgekd.distill.objectives", "KDLoss"), teacher=True))))
    try:
        teacher = load_student(teacher_file)[0].eval()
        config = TrainConfig(method="toy-fitnet", epochs=3, max_train_samples=1200, batch_size=32, lr=0.1,
                             cache_dir=str(tmp_path / "cache"))
        result = train_student(SPEC, [teacher], load_dataset(None), config, tmp_path / "run", progress=False)
        records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
        assert [r["stage"] for r in records] == ["hint", "kd", "kd"]
        assert set(records[0]["loss_parts"]) == {"hint"} and "kd" in records[1]["loss_parts"]
        state = read_checkpoint(result.checkpoint)["extra"]["train_state"]["loss_states"]["hint"]
        assert set(state) == {"regressor.weight", "regressor.bias"}
        assert result.test_acc > 0.25  # chance is 0.10
    finally:
        unregister_method("toy-fitnet")
