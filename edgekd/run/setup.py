"""What a compress run starts from: the :class:`Inputs` (the profile with its budget
overrides, the data, the teacher), loaded and checked against each other, and the run's
identity that run.json keeps (edgekd.run.rundir)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgekd.core.errors import EdgekdError
from edgekd.distill.methods import method_names
from edgekd.run.config import EMBEDDED_LATENCY_MS, CompressConfig
from edgekd.run.rundir import identity

if TYPE_CHECKING:
    import torch.nn as nn

    from edgekd.inputs.data import ImageDataset
    from edgekd.inputs.profiles import DeviceProfile

__all__ = ["Inputs", "load_inputs", "run_identity", "train_images"]


@dataclass
class Inputs:
    profile: DeviceProfile
    dataset: ImageDataset
    teacher: nn.Module
    teacher_fp: str
    parity_samples: int = 256
    #: the teacher on the validation and test splits (edgekd.run.selection.teacher_bias)
    teacher_bias: dict[str, Any] | None = None


def train_images(dataset: ImageDataset, config: CompressConfig) -> int:
    """How many images a trial trains on (before the validation split)."""
    n = len(dataset.y_train)
    return min(n, config.max_train_samples) if config.max_train_samples else n


def load_inputs(config: CompressConfig, dataset: ImageDataset | None = None) -> Inputs:
    """Profile (with budget overrides), data (unless given) and teacher, checked against
    each other."""
    from edgekd.inputs.data import apply_normalize
    from edgekd.inputs.loaders import load_dataset
    from edgekd.inputs.profiles import load_profile
    from edgekd.distill.builtin_teacher import load_teacher
    from edgekd.inputs.teachers import check_teacher, model_fingerprint

    if config.method not in method_names(compress=True):
        raise EdgekdError(f"unknown method {config.method!r}: use one of {', '.join(method_names(compress=True))}")
    latency_ms = config.latency_ms
    if latency_ms is None and config.is_embedded():
        latency_ms = EMBEDDED_LATENCY_MS
    profile = load_profile(config.profile or "host-cpu").with_budget(
        latency_ms=latency_ms, macs=config.max_macs, batch=config.batch)
    dataset = dataset if dataset is not None else apply_normalize(load_dataset(config.data), config.normalize)
    teacher = load_teacher(config.teacher, arch=config.arch, num_classes=dataset.num_classes,
                           trust_code=config.trust_code, dataset=dataset)
    check_teacher(teacher, dataset.input_shape, dataset.num_classes)
    return Inputs(profile, dataset, teacher, model_fingerprint(teacher), config.parity_samples)


def run_identity(config: CompressConfig, inputs: Inputs) -> dict:
    profile = inputs.profile.to_dict()
    budget = profile.pop("budget")
    profile.pop("source", None)
    return identity(
        teacher={"name": config.teacher or "builtin", "fingerprint": inputs.teacher_fp},
        data={"name": inputs.dataset.name, "fingerprint": inputs.dataset.fingerprint()},
        profile=profile, budget=budget, seed=config.seed, config=config.identity_config())

