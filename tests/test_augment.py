"""Augmentation: what each mode does to an image, and that student and teacher see the very
same augmented batch (per-batch teacher and cached teacher views)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekd.inputs.data import make_dataset
from edgekd.distill import TrainConfig, train_student
from edgekd.distill import augment
from edgekd.distill import losses as losses_module

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_offers_the_augmentations_there_are():
    from edgekd.cli.cli_options import AUGMENTS

    assert AUGMENTS == augment.AUGMENTS


def test_auto_picks_crop_flip_for_rgb_and_shift_for_gray():
    assert augment.resolve("auto", (3, 32, 32)) == augment.Augment("crop-flip", pad=4, flip=True)
    assert augment.resolve("auto", (1, 28, 28)) == augment.Augment("shift", pad=2, flip=False)
    assert not augment.resolve("none", (3, 32, 32)).active


def test_crop_flip_matches_a_hand_made_crop_and_flip():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    aug = augment.Augment("crop-flip", pad=1, flip=True)
    params = augment.AugParams(oy=torch.tensor([0, 2]), ox=torch.tensor([1, 0]), flip=torch.tensor([True, False]))
    pad_value = torch.tensor([-1.0, -2.0, -3.0])
    out = augment.apply(x, aug, params, pad_value)
    for i in range(2):
        padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        for c in range(3):  # the border is the per-channel background value
            padded[c][padded[c] == 0] = pad_value[c]
        padded[:, 1:7, 1:7] = x[i]
        want = padded[:, params.oy[i]:params.oy[i] + 6, params.ox[i]:params.ox[i] + 6]
        if params.flip[i]:
            want = want.flip(-1)
        assert torch.equal(out[i], want)
    # image 0 came from offset (0, 1): its top row is border, its columns are shifted and flipped
    assert torch.all(out[0, 0, 0] == -1.0)


class _Recorder(nn.Module):
    """Wraps a model and keeps every input batch it was called with."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def _rgb_data():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(96, 8, 8, 3), dtype=np.uint8)  # no 0: only padding is background
    y = (x[..., 0].mean(axis=(1, 2)) > 127).astype(np.int64)
    return make_dataset(name="rgb-tiny", source="test", x_train=x, y_train=y, x_test=x[:16],
                        y_test=y[:16], classes=["dark", "bright"])


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2))


def test_student_and_teacher_see_the_same_crop_and_flip(tmp_path):
    data = _rgb_data()
    torch.manual_seed(0)
    teacher = _Recorder(_net())
    config = TrainConfig(method="kd", epochs=1, batch_size=16, augment="crop-flip", val_fraction=0.0,
                         use_cache=False)
    train_student(_net(), [teacher], data, config, tmp_path / "run", progress=False)
    steps = 96 // 16
    assert len(teacher.seen) == len(_SEEN) == steps  # the teacher ran on every batch
    for t_in, s_in in zip(teacher.seen, _SEEN):
        assert torch.equal(t_in, s_in)
    # and the batches were augmented: the padded border (background value) shows up in them
    background = float((0.0 - data.normalization.mean[0]) / data.normalization.std[0])
    edges = torch.cat([torch.cat([b[:, 0, 0, :], b[:, 0, -1, :]]) for b in _SEEN])
    assert bool((edges - background).abs().lt(1e-5).any())


_SEEN: list[torch.Tensor] = []


@pytest.fixture(autouse=True)
def _record_student_inputs(monkeypatch):
    """The trainer deep-copies the student, so record what ``_loss`` feeds it instead."""
    from edgekd.distill import trainer

    _SEEN.clear()
    real = trainer._Trainer._loss

    def spy(self, stage, x, y, t, progress):
        _SEEN.append(x.detach().clone())
        return real(self, stage, x, y, t, progress)

    monkeypatch.setattr(trainer._Trainer, "_loss", spy)


def test_cached_views_serve_the_teacher_outputs_of_the_served_view(tmp_path, monkeypatch):
    data = _rgb_data()
    torch.manual_seed(0)
    teacher = _net().eval()
    served: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_soft = losses_module.kd_soft_loss

    def spy(student_logits, teacher_logits, temperature):
        served.append(teacher_logits.detach().clone())
        return real_soft(student_logits, teacher_logits, temperature)

    monkeypatch.setattr(losses_module, "kd_soft_loss", spy)
    config = TrainConfig(method="kd", epochs=2, batch_size=16, augment="crop-flip", teacher_views=3,
                         val_fraction=0.0, use_cache=False)
    train_student(_net(), [teacher], data, config, tmp_path / "run", progress=False)
    assert len(served) == len(_SEEN) == 2 * 96 // 16
    with torch.no_grad():
        for x, t in zip(_SEEN, served):
            assert torch.allclose(teacher(x), t, atol=1e-5)  # the targets belong to that very view
    distinct = {tuple(x[0].flatten()[:8].tolist()) for x in _SEEN}
    assert len(distinct) > 1


def test_teacher_views_are_cached_once_for_every_trial(tmp_path):
    data = _rgb_data()
    torch.manual_seed(0)
    teacher = _Recorder(_net().eval())
    config = TrainConfig(method="kd", epochs=1, batch_size=16, augment="crop-flip", teacher_views=2,
                         cache_dir=str(tmp_path / "cache"))
    train_student(_net(), [teacher], data, config, tmp_path / "a", progress=False,
                  teacher_fps=["f" * 64])
    files = list((tmp_path / "cache").glob("views-*.npy"))
    assert len(files) == 1 and np.load(files[0]).shape == (2, 96, 2)
    calls = len(teacher.seen)
    assert calls == 2 * -(-96 // 512)  # two views of all 96 images, nothing per batch
    train_student(_net(), [teacher], data, TrainConfig(**{**config.to_dict(), "seed": 0, "lr": 0.01}),
                  tmp_path / "b", progress=False, teacher_fps=["f" * 64])
    assert len(teacher.seen) == calls  # a second trial reads the file: no teacher pass at all


def _conv_net() -> nn.Module:
    """A small CNN fx can trace, with a conv stage at full resolution for the hint pairing."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize("views", [0, 2])
def test_fitnet_hint_stage_taps_teacher_and_student_on_the_same_crop(tmp_path, monkeypatch, views):
    """FitNets stage 1 regresses the teacher's feature map from the student's: both must come
    from one augmented batch (with the per-batch teacher and with cached teacher views)."""
    from edgekd.distill.hints import FeatureTap

    taps: list[tuple[int, torch.Tensor]] = []
    real = FeatureTap.forward

    def spy(self, x):
        taps.append((id(self), x.detach().clone()))
        return real(self, x)

    monkeypatch.setattr(FeatureTap, "forward", spy)
    data = _rgb_data()
    torch.manual_seed(0)
    config = TrainConfig(method="fitnet", epochs=1, hint_epochs=1, batch_size=16, augment="crop-flip",
                         teacher_views=views, val_fraction=0.0, use_cache=False)
    train_student(_conv_net(), [_conv_net().eval()], data, config, tmp_path / "run", progress=False)
    steps = 96 // 16
    hint_batches = _SEEN[:steps]  # what _loss fed the hint epoch's steps
    assert len({who for who, _ in taps}) == 2  # one teacher tap, one student tap
    for batch in hint_batches:  # each step's batch reached BOTH taps unchanged
        assert len({who for who, x in taps if x.shape == batch.shape and torch.equal(x, batch)}) == 2
    background = float((0.0 - data.normalization.mean[0]) / data.normalization.std[0])
    edges = torch.cat([torch.cat([b[:, 0, 0, :], b[:, 0, -1, :]]) for b in hint_batches])
    assert bool((edges - background).abs().lt(1e-5).any())  # and they were augmented
