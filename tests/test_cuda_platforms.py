"""Per-platform CUDA guidance (deploy.cuda_platforms): each JetPack's and each desktop driver's
libcudart is named in the fix of a CUDA error, recognised from the files the platform has."""

from __future__ import annotations

import pytest

from edgekd_deploy.cuda import cuda_error_line
from edgekd_deploy.cuda_platforms import (DESKTOP12, DESKTOP13, JETPACK5, JETPACK60, JETPACK61, JETPACK7,
                                   fix_hint, jetson_platform, platform_for)

#: the first line of /etc/nv_tegra_release on each JetPack
RELEASES = {
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64": JETPACK5,
    "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64": JETPACK60,
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64": JETPACK61,
    "# R38 (release), REVISION: 2.0, GCID: 40871601, BOARD: generic, EABI: aarch64": JETPACK7,
}


@pytest.mark.parametrize("release,platform", RELEASES.items(), ids=lambda v: getattr(v, "cuda", None))
def test_each_jetpack_is_recognised_with_its_libcudart(release: str, platform) -> None:
    assert jetson_platform(release) is platform
    hint = fix_hint(release=release)
    assert platform.libcudart in hint and f"CUDA {platform.cuda}" in hint
    assert ("never cuda-python 13.x" in hint) == (platform is not JETPACK7)


def test_jetpack_libraries_are_the_ones_nvidia_ships() -> None:
    assert (JETPACK5.cuda, JETPACK5.libcudart) == ("11.4", "libcudart.so.11.0")
    assert {JETPACK60.cuda, JETPACK61.cuda} == {"12.2", "12.6"} and JETPACK61.libcudart == "libcudart.so.12"
    assert JETPACK7.libcudart == "libcudart.so.13" and not JETPACK5.cuda_python


def test_a_pc_is_told_by_its_driver() -> None:
    assert platform_for("12.8", release="") is DESKTOP12
    assert platform_for("13.1", release="") is DESKTOP13
    assert platform_for(None, release="") is None
    generic = fix_hint(None, release="")
    for name in ("libcudart.so.11.0", "libcudart.so.12", "libcudart.so.13", "DEPLOY_CUDART"):
        assert name in generic


def test_a_driver_too_old_names_the_library_of_its_cuda() -> None:
    line = cuda_error_line("libcudart.so.13", "cudaGetDeviceCount", 35, "cudaErrorInsufficientDriver",
                           runtime="13.0", driver="12.4")
    assert "libcudart.so.12" in line.split("driver is older")[1] and "\n" not in line
