"""Self-describing student checkpoints, and weights loaded into a model with an error that says
what differs (:func:`load_weights`, for students and teachers alike).

A checkpoint is one ``torch.save``'d dict that holds everything needed to rebuild and use the
student without the run that produced it::

    {"format": "edgekd.checkpoint/1", "spec": {...StudentSpec dict or None...},
     "state_dict": {...}, "classes": [...], "input_shape": [C, H, W],
     "normalization": {"mean": [...], "std": [...]}, "method": "fitnet",
     "metrics": {...}, "extra": {...}}

It is written atomically and read with ``torch.load(..., weights_only=True)``, so only
tensors and plain Python containers may go in (no pickled objects, no code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_torch_save

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


class Describable(Protocol):
    """What a checkpoint stores of a :class:`~edgekd.search.space.StudentSpec` or a
    :class:`~edgekd.inputs.data.Normalization` (core imports neither): its JSON form."""

    def to_dict(self) -> dict[str, Any]: ...

FORMAT = "edgekd.checkpoint/1"
_REQUIRED = ("format", "spec", "state_dict", "classes", "input_shape", "normalization",
             "method", "metrics")


@dataclass
class StudentCheckpoint:
    """What a checkpoint says about its student (everything but the weights)."""

    path: Path
    spec: dict[str, Any] | None
    classes: list[str]
    input_shape: tuple[int, ...]
    normalization: dict[str, list[float]]
    method: str
    metrics: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def make_checkpoint(model_state: dict[str, Any], *, spec: Describable | dict[str, Any] | None,
                    classes: list[str], input_shape: tuple[int, ...],
                    normalization: Describable | dict[str, list[float]], method: str,
                    metrics: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring) for a state_dict."""
    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else spec
    norm = normalization.to_dict() if hasattr(normalization, "to_dict") else normalization
    return {
        "format": FORMAT,
        "spec": spec_dict,
        "state_dict": {k: v.detach().cpu() for k, v in model_state.items()},
        "classes": [str(c) for c in classes],
        "input_shape": [int(v) for v in input_shape],
        "normalization": {"mean": [float(v) for v in norm["mean"]],
                          "std": [float(v) for v in norm["std"]]},
        "method": str(method),
        "metrics": dict(metrics),
        "extra": dict(extra or {}),
    }


def save_student(path: str | Path, model: nn.Module | dict[str, Any], *,
                 spec: Describable | dict[str, Any] | None, classes: list[str], input_shape: tuple[int, ...],
                 normalization: Describable | dict[str, list[float]], method: str,
                 metrics: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and description to ``path`` atomically."""
    state = model.state_dict() if hasattr(model, "state_dict") else model
    return atomic_torch_save(path, make_checkpoint(
        state, spec=spec, classes=classes, input_shape=input_shape,
        normalization=normalization, method=method, metrics=metrics, extra=extra))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated; a missing, corrupt or foreign file -> EdgekdError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"checkpoint '{path}': no such file; pass the checkpoint.pt that "
                          "'edgekd train' wrote")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise EdgekdError(f"checkpoint '{path}' cannot be read ({first}): it is corrupt or not "
                          "an edgekd checkpoint; pass another file, or delete it and run the "
                          "command that wrote it again ('edgekd compress --out RUN --resume' "
                          "retrains a run's damaged trial by itself)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise EdgekdError(f"checkpoint '{path}' is not an edgekd student checkpoint (format {found!r}, "
                          f"expected {FORMAT!r}): pass a checkpoint.pt written by 'edgekd train'")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise EdgekdError(f"checkpoint '{path}' lacks {', '.join(missing)}: it is damaged; delete "
                          "it and run the command that wrote it again (edgekd train / compress "
                          "--resume)")
    return data


def load_student(path: str | Path) -> tuple[Any, StudentCheckpoint]:
    """Rebuild the student from its spec and load its weights (eval mode, CPU)."""
    from edgekd.search.space import StudentSpec, build  # layering: known exception (core -> search)

    path = Path(path)
    data = read_checkpoint(path)
    if data["spec"] is None:
        raise EdgekdError(f"checkpoint '{path}' has no student spec (it was trained from a custom "
                          "nn.Module): build that module yourself and load checkpoint['state_dict']")
    model = build(StudentSpec.from_dict(data["spec"]))
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0][:160]
        raise EdgekdError(f"checkpoint '{path}': weights do not match its spec ({first}): "
                          "the file is damaged; retrain") from None
    model.eval()
    info = StudentCheckpoint(path=path, spec=data["spec"], classes=list(data["classes"]),
                             input_shape=tuple(data["input_shape"]),
                             normalization=data["normalization"], method=data["method"],
                             metrics=dict(data["metrics"]), extra=dict(data.get("extra") or {}))
    return model, info


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, what: str, arch: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with an error that says what differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} is {_shape(state[k])} in the file but {_shape(expected[k])} in {arch}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({', '.join(unexpected[:3])})")
        parts += shapes[:3]
        raise EdgekdError(f"{what} does not match --arch {arch}: {'; '.join(parts)}; pass the "
                          "architecture (and class count) the weights were trained with")
    model.load_state_dict(state, strict=True)


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(v) for v in t.shape) or "scalar"
