"""The fused, channels_last copy of a teacher that computes distillation targets on CPU
(edgekd.distill.fast_teacher), and the per-trial thread default of compress."""

from __future__ import annotations

import torch
import torch.nn as nn

from edgekd.distill.fast_teacher import logit_teacher
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
    import edgekd.distill.fast_teacher as fast_teacher

    teacher = _trained_like_teacher()
    real = fast_teacher._ChannelsLast.forward
    monkeypatch.setattr(fast_teacher._ChannelsLast, "forward", lambda self, t: real(self, t) + 1e-2)
    assert logit_teacher(teacher, torch.device("cpu"), x) is teacher


def test_compress_trains_each_cpu_trial_on_one_thread_unless_told() -> None:
    from edgekd.run.config import TRIAL_THREADS_CPU, CompressConfig

    assert TRIAL_THREADS_CPU == 1
    assert CompressConfig(device="cpu").resolved(10_000).threads_per_trial == 1
    assert CompressConfig(device="cpu", threads_per_trial=2).resolved(10_000).threads_per_trial == 2
