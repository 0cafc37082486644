"""Real inputs: a torchvision teacher fed as it was trained (--normalize), the teacher check before
any training, and the reference students, end to end through ``edgekd compress`` at 224 px.

The 224-px data is synthetic but learnable (two classes told apart by colour, with noise), and
the teacher is a real torchvision resnet18 (weights=None) whose classifier is fitted by least
squares on its own pooled features of ImageNet-normalised images: a teacher that is right when
fed ImageNet's statistics and that a different normalisation would degrade.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError


def colour_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 NHWC images: class 0 reddish, class 1 bluish, with pixel noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    base = np.where(y[:, None] == 0, [[170, 60, 60]], [[60, 60, 170]])
    x = base[:, None, None, :] + rng.integers(-40, 41, size=(n, size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def fitted_resnet18(x_nhwc: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """resnet18 (weights=None) with ``fc`` fitted by least squares on ImageNet-normalised images."""
    import torchvision
    from edgekd_deploy.onnxmeta import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    fc, model.fc = model.fc, torch.nn.Identity()
    with torch.no_grad():
        feats = model(x)
    scale = feats.abs().mean()
    design = torch.cat([feats / scale, torch.ones(len(feats), 1)], 1).double()
    target = torch.nn.functional.one_hot(torch.from_numpy(y), 2).double() * 2 - 1
    solution = torch.linalg.lstsq(design, target, driver="gelsd").solution.float()
    fc.weight.data = (solution[:-1] / scale).T.contiguous()
    fc.bias.data = solution[-1].contiguous()
    model.fc = fc
    return model


@pytest.fixture(scope="module")
def colour224(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("colour224")
    x, y = colour_images(48, 224, 0)
    xt, yt = colour_images(8, 224, 1)
    np.savez(base / "colour224.npz", x_train=x, y_train=y, x_test=xt, y_test=yt,
             classes=np.array(["red", "blue"]))
    torch.save(fitted_resnet18(x, y).state_dict(), base / "resnet18.pt")
    return base / "colour224.npz", base / "resnet18.pt"


def test_normalize_names_and_lists() -> None:
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.onnxmeta import parse_normalize

    assert parse_normalize("dataset", 3) is None
    assert parse_normalize("none", 1) == ([0.0], [1.0])
    assert parse_normalize("imagenet", 3) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert parse_normalize("0.5,0.25", 3) == ([0.5] * 3, [0.25] * 3)
    assert parse_normalize("0.1,0.2,0.3,1,2,3", 3) == ([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    for bad, channels in (("imagenet", 1), ("0.5", 3), ("0.5,0", 3), ("1,2,3", 3), ("ImageNett", 3)):
        with pytest.raises(DeployError):
            parse_normalize(bad, channels)


def test_compress_224_torchvision_teacher_with_reference(colour224: tuple[Path, Path], tmp_path: Path) -> None:
    """The done-when run: resnet18 teacher at 224 px, --normalize imagenet, a reference student."""
    data, teacher = colour224
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "compress", "--data", str(data), "--teacher", str(teacher), "--arch", "resnet18",
        "--normalize", "imagenet", "--family", "mbconv", "--reference", "--max-macs", "20M", "--latency-ms", "1000",
        "--candidates", "1", "--finalists", "1", "--epochs", "2", "--hint-epochs", "1",
        "--batch-size", "16", "--teacher-views", "1", "--augment", "none", "--parity-samples", "16",
        "--measure-iters", "5", "--threads-per-trial", "1", "--no-bundle", "--no-progress",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["config"]["normalize"] == "imagenet"
    outcome = json.loads((out / "outcome.json").read_text())
    refs = [t for t in outcome["trials"] if t["role"] == "reference"]
    assert [t["model"] for t in refs] == ["mobilenet_v3_small_x0_5"]  # the only one within 20M MACs
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["teacher"]["test_acc"] == 1.0  # fed ImageNet's statistics, as it was fitted
    assert {s["spec"]["family"] for s in summary["students"] if s["role"] != "reference"} == {"mbconv"}
    ref = next(s for s in summary["students"] if s["role"] == "reference")
    assert ref["exported"] and ref["latency"]["host"]["ms"] > 0
    report = (out / "report" / "report.md").read_text()
    assert "Reference students" in report and "mobilenet_v3_small_x0_5" in report
    from edgekd_deploy.onnxmeta import read_onnx_header

    meta = read_onnx_header(out / "export" / f"{ref['trial']}.onnx").metadata
    assert json.loads(meta["edgekd.normalization"]) == {"mean": [0.485, 0.456, 0.406],
                                                        "std": [0.229, 0.224, 0.225]}


def test_a_teacher_at_chance_is_refused_before_training(tmp_path: Path) -> None:
    """An untrained teacher scores chance on the validation split: one line, exit 2, nothing written."""
    from edgekd.inputs.builtin_teacher import BuiltinCNN

    torch.manual_seed(0)
    torch.save(BuiltinCNN((1, 28, 28), 10).state_dict(), tmp_path / "untrained.pt")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["compress", "--teacher", str(tmp_path / "untrained.pt"), "--arch",
                                      "edgekd:builtin-cnn", "--out", str(out), "--no-progress"])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "at chance on the validation split" in line and "--normalize" in line and "class order" in line
    assert not (out / "run.json").exists() and not (out / "trials").exists()


class _PixelReader(torch.nn.Module):
    """Logits: one-hot of the class written in pixel (0, 0) (value 20 * class, --normalize none)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # where the evaluator looks for the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 255 / 20).round().long(), 10).float()


def _coded(correct_share: float) -> "object":
    from edgekd.inputs.data import apply_normalize, make_dataset

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    shown = np.where(rng.random(2000) < correct_share, y, (y + 1 + rng.integers(0, 9, 2000)) % 10)
    x = np.zeros((2000, 1, 4, 4), dtype=np.uint8)
    x[:, 0, 0, 0] = shown * 20
    ds = make_dataset(name="coded", source="coded", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    return apply_normalize(ds, "none")


@pytest.mark.parametrize("share, outcome", [(0.1, "refused"), (0.3, "warned"), (0.9, "quiet")])
def test_teacher_check_refuses_chance_and_warns_when_low(share: float, outcome: str) -> None:
    from edgekd.run.preflight import check_teacher_accuracy

    warnings: list[str] = []
    run = lambda: check_teacher_accuracy(_PixelReader(), _coded(share), seed=0,  # noqa: E731
                                         val_fraction=0.1, warn=warnings.append)
    if outcome == "refused":
        with pytest.raises(EdgekdError, match="at chance"):
            run()
        return
    accuracy = run()
    assert abs(accuracy["val_acc"] - share) < 0.08
    assert len(warnings) == (1 if outcome == "warned" else 0)


TORCHVISION_TEACHERS = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf",
                        "shufflenet_v2_x0_5", "convnext_tiny")


def _hint_step(arch: str, side: int) -> None:
    """Pair a torchvision teacher (random weights) with a searched mbconv student and a reference
    student at ``side`` px: every pair at equal resolution (or pooled down), the HintSet's
    targets and predictions of one shape, and one optimiser step that changes the student."""
    import torchvision

    from edgekd.distill.hint_stage import HintSet
    from edgekd.distill.pairing import hint_pairs
    from edgekd.search.reference import reference_spec
    from edgekd.search.space import Stage, StudentSpec, build

    torch.manual_seed(0)
    shape = (3, side, side)
    teacher = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    searched = StudentSpec("mbconv", shape, 10, (Stage(16, 1, 1), Stage(24, 1, 2), Stage(40, 1, 2), Stage(80, 1, 2)),
                           stem_stride=2, expansion=2, act="relu6")
    for spec in (searched, reference_spec("mobilenet_v3_small_x0_5", shape, 10)):
        student = build(spec)
        pairs = hint_pairs(teacher, student, shape, stages="all")
        assert pairs, (arch, spec.describe())
        for pair in pairs:
            assert pair.guided_shape[1] <= pair.hint_shape[1], (arch, pair)  # never upsampled
        hints = HintSet(teacher, student, pairs)
        x = torch.randn(2, *shape)
        targets, predictions, _ = hints.features(x)
        assert [t.shape for t in targets] == [p.shape for p in predictions]
        before = [p.detach().clone() for p in student.parameters()]
        optimizer = torch.optim.SGD([*student.parameters(), *hints.parameters()], lr=0.1)
        loss = sum(torch.nn.functional.mse_loss(p, t) for p, t in zip(predictions, targets))
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


@pytest.mark.parametrize("arch", TORCHVISION_TEACHERS)
def test_hint_taps_of_torchvision_teachers_at_96(arch: str) -> None:
    _hint_step(arch, 96)


@pytest.mark.slow
@pytest.mark.parametrize("arch", TORCHVISION_TEACHERS)
def test_hint_taps_of_torchvision_teachers_at_224(arch: str) -> None:
    _hint_step(arch, 224)


def _faithful(name: str, side: int) -> None:
    """The reference spec builds exactly the torchvision model: same parameters, same MACs."""
    from edgekd.search.cost import module_cost, spec_cost
    from edgekd.search.reference import reference_spec, torchvision_model
    from edgekd.search.space import StudentSpec, build

    spec = reference_spec(name, (3, side, side), 10)
    assert StudentSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["model"] == name
    model = build(spec).eval()
    original = torchvision_model(name, 10, small=side < 64).eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in original.parameters())
    assert spec_cost(spec).macs == module_cost(original, (3, side, side)).macs
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        assert tuple(model.features(x).shape[1:]) == spec.feature_shapes()[-1]


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "shufflenet_v2_x0_5", "resnet18"])
def test_reference_students_are_the_torchvision_models(name: str) -> None:
    _faithful(name, 96)


@pytest.mark.slow
def test_every_reference_student_is_its_torchvision_model() -> None:
    from edgekd.search.reference import REFERENCE_MODELS

    for name in REFERENCE_MODELS:
        for side in (32, 224):
            _faithful(name, side)


@pytest.mark.parametrize("name", ["mobilenet_v3_small_x0_5", "mnasnet0_5"])
def test_reference_batchnorm_statistics_follow_recent_batches(name: str) -> None:
    """torchvision builds these with BatchNorm momentum 0.01 and 3e-4 (ImageNet-length training):
    after 30 train-mode passes their running mean would still sit near its initial 0. A reference
    student's must describe the recent batches, or eval mode judges weights it no longer has."""
    from edgekd.search.reference import torchvision_model

    model = torchvision_model(name, 10, small=True).train()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 4 + 2  # far from zero mean
    with torch.no_grad():
        batch_mean = conv(x).mean(dim=(0, 2, 3))
        for _ in range(30):
            model(x)
    assert torch.allclose(norm.running_mean, batch_mean, rtol=0.1, atol=0.05 * float(batch_mean.abs().max()))


def test_small_inputs_get_a_stride_one_stem_and_no_max_pool() -> None:
    from edgekd.search.reference import reference_spec
    from edgekd.search.space import StudentSpec

    spec = reference_spec("resnet18", (3, 32, 32), 10)
    assert spec.feature_shapes()[-1] == (512, 4, 4)  # 32 / 8, as a CIFAR ResNet; 1x1 without the adaptation
    assert reference_spec("resnet18", (3, 96, 96), 10).feature_shapes()[-1] == (512, 3, 3)  # 96 / 32
    forged = {**spec.to_dict(), "stages": [{"width": 8, "depth": 1, "stride": 1}]}
    with pytest.raises(EdgekdError, match="stages of reference resnet18"):
        StudentSpec.from_dict(forged)
    with pytest.raises(EdgekdError, match="for family 'reference' only"):
        StudentSpec.from_dict({**forged, "family": "plain"})


def test_splits_are_uint8_and_normalised_per_access() -> None:
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.trainset import NormalizedImages, prepare_data
    from edgekd.inputs.data import to_tensor
    from edgekd.inputs.loaders import load_dataset

    ds = load_dataset(None)
    data = prepare_data(ds, TrainConfig(method="scratch", epochs=1))
    assert isinstance(data.x_train, NormalizedImages) and data.x_train.data.dtype == torch.uint8
    idx = torch.tensor([5, 0, 17])
    expected = to_tensor(ds.x_train[data.train_idx[[5, 0, 17]]], ds.normalization)
    assert torch.equal(data.x_train[idx], expected)
    assert torch.equal(data.x_test[2:4], to_tensor(ds.x_test[2:4], ds.normalization))
    assert data.x_test[3].shape == tuple(ds.input_shape)


def test_reference_students_take_grayscale_images() -> None:
    from edgekd.search.reference import reference_spec
    from edgekd.search.space import build

    for name in ("mobilenet_v3_small_x0_5", "mnasnet0_5", "resnet18"):
        spec = reference_spec(name, (1, 28, 28), 10)
        with torch.no_grad():
            assert build(spec).eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10), name


def test_the_verdict_says_plainly_when_a_reference_beat_the_search() -> None:
    from edgekd.report.references import reference_verdict

    def student(trial: str, acc: float, ms: float, model: str | None = None) -> dict:
        return {"trial": trial, "model": model, "test_acc": acc,
                "latency": {"host": {"ms": ms, "label": "measured"}, "target": None}}

    winner = student("w", 0.80, 2.0)
    assert reference_verdict(winner, []).startswith("No reference model fits the budget")
    assert "A reference model beat edgekd's search: fast" in reference_verdict(
        winner, [student("r1", 0.80, 1.0, "fast"), student("r2", 0.70, 0.5, "weak")])  # as accurate, faster
    slower = reference_verdict(winner, [student("r1", 0.85, 3.0, "big")])
    assert slower.startswith("No reference model beat") and "big is more accurate" in slower
    assert "at least as accurate" in reference_verdict(winner, [student("r1", 0.75, 1.0, "small")])


def test_train_refuses_imagenet_statistics_for_grayscale_data(tmp_path: Path) -> None:
    from edgekd.search.space import Stage, StudentSpec

    spec = tmp_path / "spec.json"
    spec.write_text(StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 1, 1),)).to_json())
    result = CliRunner().invoke(cli, ["train", "--student", str(spec), "--method", "scratch", "--normalize",
                                      "imagenet", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "--normalize imagenet needs RGB images" in result.output
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
