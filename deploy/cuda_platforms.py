"""Which CUDA runtime each platform a bundle meets has, and the fix hint that names it.

A CUDA error is only useful with the right library in the fix: JetPack 5 ships CUDA 11.4
(``libcudart.so.11.0``), JetPack 6.0 CUDA 12.2 and 6.1/6.2 CUDA 12.6 (``libcudart.so.12``),
JetPack 7 CUDA 13 (``libcudart.so.13``); a desktop or data-centre GPU has whatever its driver
supports (CUDA 12 or 13). The Jetson is recognised by ``/etc/nv_tegra_release`` (L4T R35 is
JetPack 5, R36 JetPack 6, R38 JetPack 7), a desktop by the CUDA version its driver reports.

cuda-python is optional (the kit uses the system ``libcudart`` through ctypes first); where a
hint names it, it names the release line that matches the driver: cuda-python 13.x needs an
R580+ driver, so never on JetPack 5 or 6.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True)
class CudaPlatform:
    """One platform's CUDA runtime: where its ``libcudart`` is and which cuda-python fits."""

    name: str
    cuda: str
    libcudart: str
    folder: str
    cuda_python: str  # the pip requirement that matches the driver, or "" where none is advised

    def hint(self) -> str:
        """The fix sentence for this platform."""
        path = f"{self.folder}/{self.libcudart}"
        text = (f"{self.name} has CUDA {self.cuda}: use its {self.libcudart} ({path}; set "
                f"DEPLOY_CUDART={path} if it is not found)")
        if self.cuda_python:
            text += f", or pip install '{self.cuda_python}'"
        if not self.cuda.startswith("13"):
            text += "; never cuda-python 13.x here (it needs an R580+ driver)"
        return text


JETPACK5 = CudaPlatform("JetPack 5.1 (L4T R35)", "11.4", "libcudart.so.11.0", "/usr/local/cuda-11.4/lib64", "")
JETPACK60 = CudaPlatform("JetPack 6.0 (L4T R36.2/R36.3)", "12.2", "libcudart.so.12", "/usr/local/cuda-12.2/lib64",
                         "cuda-python>=12.2,<12.3")
JETPACK61 = CudaPlatform("JetPack 6.1/6.2 (L4T R36.4)", "12.6", "libcudart.so.12", "/usr/local/cuda-12.6/lib64",
                         "cuda-python>=12.6,<12.7")
JETPACK7 = CudaPlatform("JetPack 7 (L4T R38)", "13.0", "libcudart.so.13", "/usr/local/cuda-13.0/lib64",
                        "cuda-python>=13,<14")
DESKTOP12 = CudaPlatform("A PC whose driver supports CUDA 12", "12.x", "libcudart.so.12", "/usr/local/cuda-12/lib64",
                         "cuda-python>=12,<13")
DESKTOP13 = CudaPlatform("A PC whose driver supports CUDA 13 (R580+)", "13.x", "libcudart.so.13",
                         "/usr/local/cuda-13/lib64", "cuda-python>=13,<14")
PLATFORMS = (JETPACK5, JETPACK60, JETPACK61, JETPACK7, DESKTOP12, DESKTOP13)


def jetson_platform(release: str | None = None) -> CudaPlatform | None:
    """The JetPack of this Jetson from ``/etc/nv_tegra_release`` (or ``release``, its text), e.g.
    ``# R36 (release), REVISION: 4.3`` -> JetPack 6.1/6.2; None on anything else."""
    if release is None:
        try:
            release = TEGRA_RELEASE.read_text(errors="replace")
        except OSError:
            return None
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)", release)
    if not found:
        return None
    major, revision = int(found.group(1)), int(found.group(2))
    if major == 35:
        return JETPACK5
    if major == 36:
        return JETPACK61 if revision >= 4 else JETPACK60
    if major >= 38:
        return JETPACK7
    return None


def platform_for(driver_cuda: str | None = None, release: str | None = None) -> CudaPlatform | None:
    """This machine's platform: the Jetson's JetPack, else a PC by its driver's CUDA major
    version (``driver_cuda`` such as "12.8"); None when neither is known."""
    jetson = jetson_platform(release)
    if jetson is not None:
        return jetson
    if driver_cuda:
        major = driver_cuda.split(".")[0]
        if major == "12":
            return DESKTOP12
        if major.isdigit() and int(major) >= 13:
            return DESKTOP13
    return None


def fix_hint(driver_cuda: str | None = None, release: str | None = None) -> str:
    """Use the CUDA runtime that came with the driver: the sentence for this machine's platform,
    or for every platform when it is unknown."""
    found = platform_for(driver_cuda, release)
    if found is not None:
        return "use the CUDA runtime that came with the driver: " + found.hint()
    return ("use the CUDA runtime that came with the driver (JetPack 5: libcudart.so.11.0, CUDA "
            "11.4; JetPack 6: libcudart.so.12, CUDA 12.2 on 6.0 and 12.6 on 6.1/6.2; JetPack 7 and "
            "R580+ PC drivers: libcudart.so.13; other PCs: libcudart.so.12), and set "
            "DEPLOY_CUDART=/path/to/that/libcudart if it is not found; never cuda-python 13.x "
            "on JetPack 5 or 6")
