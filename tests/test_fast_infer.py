"""The fused, channels_last copies that compute the teacher's targets and the student's
validation logits on CPU (edgekd.distill.fast_infer), and the per-trial thread default of compress."""

from __future__ import annotations

import torch
import torch.nn as nn

from edgekd.distill.fast_infer import fast_copy as logit_teacher
from edgekd.inputs.teachers import BuiltinCNN


def _trained_like_teacher() -> BuiltinCNN:
    """A built-in teacher with non-trivial BatchNorm statistics (as after training)."""
    torch.manual_seed(0)
    model = BuiltinCNN((1, 28, 28), 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_builtin_teacher_gets_a_fused_channels_last_copy_with_the_same_logits() -> None:
    teacher = _trained_like_teacher()
    x = torch.randn(16, 1, 28, 28)
    fast = logit_teacher(teacher, torch.device("cpu"), x[:4])
    assert fast is not teacher
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # folded into the convs
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    with torch.no_grad():
        assert torch.allclose(fast(x), teacher(x), atol=1e-4, rtol=1e-4)
    # the original is untouched (hint taps keep using it)
    assert any(isinstance(m, nn.BatchNorm2d) for m in teacher.modules())


class _SideEffect(nn.Module):
    """A user module whose forward records its calls: a traced copy would lose that."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def test_user_modules_script_modules_and_mismatches_keep_the_teacher_as_it_is(monkeypatch) -> None:
    x = torch.randn(4, 1, 28, 28)
    user = _SideEffect()
    user(x)
    user.eval()
    assert logit_teacher(user, torch.device("cpu"), x) is user
    scripted = torch.jit.script(_trained_like_teacher())
    assert logit_teacher(scripted, torch.device("cpu"), x) is scripted
    # a copy whose logits differ from the teacher's is never used
    import edgekd.distill.fast_infer as fast_infer

    teacher = _trained_like_teacher()
    real = fast_infer._ChannelsLast.forward
    monkeypatch.setattr(fast_infer._ChannelsLast, "forward", lambda self, t: real(self, t) + 1e-2)
    assert logit_teacher(teacher, torch.device("cpu"), x) is teacher


def test_compress_trains_each_cpu_trial_on_one_thread_unless_told() -> None:
    from edgekd.run.config import TRIAL_THREADS_CPU, CompressConfig

    assert TRIAL_THREADS_CPU == 1
    assert CompressConfig(device="cpu").resolved(10_000).threads_per_trial == 1
    assert CompressConfig(device="cpu", threads_per_trial=2).resolved(10_000).threads_per_trial == 2


def test_student_validation_uses_a_fused_copy_with_the_students_accuracy(monkeypatch, tmp_path,
                                                                          one_thread) -> None:
    """After each epoch the trainer scores a fused copy of the student (edgekd.distill.fast_infer);
    its accuracy is the student's own on the validation images."""
    import numpy as np

    from edgekd.core.checkpoint import load_student
    from edgekd.distill import TrainConfig, train_student
    from edgekd.distill import trainer as trainer_module
    from edgekd.distill.evaluate import accuracy, predict_logits
    from edgekd.distill.trainset import prepare_data
    from edgekd.inputs.loaders import load_dataset
    from edgekd.search.space import Stage, StudentSpec

    dataset = load_dataset(None)
    spec = StudentSpec("plain", (1, 28, 28), 10, (Stage(4, 1, 1), Stage(8, 1, 2)))
    made = []
    real = trainer_module.fast_copy

    def spy(model, device, sample):
        made.append(real(model, device, sample))
        return made[-1]

    monkeypatch.setattr(trainer_module, "fast_copy", spy)
    config = TrainConfig(method="scratch", epochs=1, max_train_samples=512, batch_size=64,
                         cache_dir=str(tmp_path / "cache"))
    result = train_student(spec, [], dataset, config, tmp_path / "run", progress=False)
    assert len(made) == 1 and not any(isinstance(m, nn.BatchNorm2d) for m in made[0].modules())
    model, _ = load_student(result.checkpoint)
    data = prepare_data(dataset, config)
    own = accuracy(predict_logits(model, data.x_val), data.y_val)
    assert np.isclose(result.val_acc, own, atol=1.0 / len(data.y_val))  # at most one near-tie flips
