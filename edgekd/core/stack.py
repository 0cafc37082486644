"""The numeric stack edgekd runs on (torch, torchvision, onnxruntime), checked before a long
command starts: a broken install is one line that names the packages and the fix, not a
traceback minutes later.

The usual break is a CPU-only ``torch`` next to a CUDA ``torchvision`` (pip took torchvision
from PyPI when PyTorch's CPU index could not be reached): ``import torchvision`` then fails
with ``operator torchvision::nms does not exist``. torchvision pins the torch release it was
built for (``Requires-Dist: torch==X``), so a version mismatch is found from the package
metadata; a build mismatch (CPU against CUDA) only shows on import.
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata

from edgekd.core.errors import EdgekdError

__all__ = ["CPU_FIX", "check_stack", "stack_problem"]

#: The packages imported, in order (a later one imports the earlier ones).
STACK = ("torch", "torchvision", "onnxruntime")

#: The reinstall that gives a matching CPU-only pair (the README's CPU route).
CPU_FIX = ("pip install --force-reinstall torch torchvision "
           "--index-url https://download.pytorch.org/whl/cpu")
#: The same for a machine with an NVIDIA GPU (PyPI's default builds).
CUDA_FIX = "pip install --force-reinstall torch torchvision"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _pinned_torch() -> str | None:
    """The torch release torchvision's metadata pins (``torch==2.9.0``), if it pins one."""
    try:
        requires = metadata.requires("torchvision") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requires:
        found = re.fullmatch(r"torch\s*\(?\s*==\s*([0-9][0-9.]*)\s*\)?\s*(;.*)?", requirement.strip())
        if found:
            return found.group(1)
    return None


def _fix() -> str:
    torch = _version("torch") or ""
    return CUDA_FIX if "+cu" in torch else CPU_FIX


def _installed() -> str:
    return ", ".join(f"{name} {_version(name) or 'missing'}" for name in STACK)


def stack_problem() -> str | None:
    """One line saying what is wrong with the installed stack and how to fix it (None: it
    imports and its versions match)."""
    torch, pinned = _version("torch"), _pinned_torch()
    if torch and pinned and torch.split("+")[0] != pinned:
        return (f"torchvision {_version('torchvision')} was built for torch {pinned} but torch "
                f"{torch} is installed: reinstall a matching pair: {_fix()}")
    for name in STACK:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - any failure to import is a broken install
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            return (f"the PyTorch stack does not import ({name}: {reason}; installed: {_installed()}): "
                    f"reinstall a matching torch/torchvision pair: {_fix()}")
    return None


def check_stack() -> None:
    """Raise :class:`EdgekdError` when :func:`stack_problem` finds one."""
    problem = stack_problem()
    if problem:
        raise EdgekdError(problem)
