"""The TensorRT parser check of a bundle's models, on the host, before the bundle is written.

Every ONNX a bundle carries for a TensorRT profile (the student, the teacher, their FP16 and
INT8 copies) goes through :func:`deploy.opcheck.check_model` for the profile's TensorRT
(``runtime.tensorrt``), or for every version with an operator table when the profile does not
name one, so a model the device's parser cannot take (an opset, an operator or an input form
it lacks) is refused here in one line instead of failing on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from edgekd.core.errors import EdgekdError

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.inputs.profiles import DeviceProfile


def tensorrt_versions(profile: "DeviceProfile") -> list[str]:
    """The TensorRT versions a bundle for ``profile`` is checked against ([] for ONNX Runtime)."""
    from edgekd_deploy.opcheck import supported_versions

    if profile.runtime.backend != "trt":
        return []
    return [profile.runtime.tensorrt] if profile.runtime.tensorrt else supported_versions()


def require_parsable(models: Iterable[Path], profile: "DeviceProfile") -> dict[str, list[str]]:
    """Raise :class:`EdgekdError` (the model, the operator, the version and the fix) unless the
    ONNX parser of each of the profile's TensorRT versions takes every model in ``models``;
    returns ``{model file name: versions checked}`` for the manifest."""
    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.opcheck import check_model

    versions = tensorrt_versions(profile)
    checked: dict[str, list[str]] = {}
    for model in models:
        for version in versions:
            try:
                problems = check_model(model, version)
            except DeployError as error:
                raise EdgekdError(str(error)) from None
            if problems:
                more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
                raise EdgekdError(f"'{model.name}' cannot go into a bundle for profile "
                                  f"'{profile.name}': {problems[0].line()}{more}")
        checked[model.name] = list(versions)
    return checked
