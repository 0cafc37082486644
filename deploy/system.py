"""Describe the machine a measurement was taken on: device name and runtime versions."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path


def _first_line(path: str) -> str | None:
    try:
        text = Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None
    return text.splitlines()[0].strip() if text else None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def board_name() -> str | None:
    """A Jetson's board name (e.g. 'NVIDIA Jetson Orin Nano ...'), None elsewhere."""
    return _first_line("/proc/device-tree/model")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(**extra: str | None) -> dict[str, str]:
    """Python, numpy, OS and L4T/JetPack versions plus ``extra`` (runtime versions)."""
    import numpy

    found = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "os": platform.platform(),
        "l4t": _first_line("/etc/nv_tegra_release"),
        **extra,
    }
    return {key: str(value) for key, value in found.items() if value}
