"""Refresh tests/data/trt_api/: the TensorRT and CUDA names that exist in each version's real
Python bindings, so that tests/test_trt_api.py can check, without a GPU, that every attribute
the deploy kit uses on a version path (deploy/trtapi.py) exists in each version it serves.

How the listings are made (run by hand; needs pip with access to PyPI, gcc and binutils'
readelf/nm, and a CPython of each wheel's tag, e.g. pyenv's python3.10 for TensorRT 8.5):

* TensorRT: ``pip download --no-deps`` the binding wheel of each version (x86_64 manylinux;
  the aarch64 JetPack builds are not on PyPI). The bindings' ``tensorrt.so`` links
  ``libnvinfer.so.N``, ``libnvonnxparser.so.N``, ``libnvinfer_plugin.so.N`` (and on 8.x
  ``libnvparsers.so.8``), whose wheels (``tensorrt-cu12-libs``) are only on NVIDIA's own index.
  They are not needed to *list* the API: the module's classes, methods, properties and enum
  values are all registered by the bindings' own pybind11 code. So a stub of each of those
  libraries is compiled, exporting only the few C entry points the bindings import
  (``createInferBuilder_INTERNAL`` ...; read with ``nm -D --undefined-only``), each returning
  0, and never called: the module is imported (with ``LD_LIBRARY_PATH`` on the stubs) and
  ``dir()`` of every class the kit touches is written out. The stubs can build nothing; they
  only let the real binding module load.
* cuda-python: the wheel is installed into a temporary folder and its runtime module imported
  (no GPU needed to import); the names the kit uses that exist are written out.
* libcudart: the ``nvidia-cuda-runtime`` wheel's ``libcudart.so.N``; its exported symbols
  (``nm -D --defined-only``).

Usage: ``python tools/refresh_trt_api.py [--only 10.3.0] [--keep /tmp/trt-wheels]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "trt_api"
sys.path.insert(0, str(REPO))

from edgekd_deploy.trtapi import CUDA_PYTHON_USES, LIBCUDART_USES, USES  # noqa: E402

PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_28_x86_64")

# (listing name, pip requirement, CPython version of the wheel, what it stands for)
TENSORRT = [
    ("8.5.3.1", "tensorrt==8.5.3.1", "3.10",
     "JetPack 5.1 ships 8.5.2 (aarch64, not on PyPI); 8.5.3.1 x86_64 is the nearest wheel of 8.5"),
    ("8.6.1", "tensorrt-bindings==8.6.1", "3.11",
     "JetPack 6.0 ships 8.6.2 (aarch64, not on PyPI); 8.6.1 x86_64 is the nearest wheel of 8.6"),
    ("10.3.0", "tensorrt-cu12-bindings==10.3.0", "3.11",
     "JetPack 6.1/6.2 ship 10.3.0 (aarch64); the same version's x86_64 wheel"),
    ("10.16.1.11", "tensorrt-cu12-bindings==10.16.1.11", "3.11",
     "JetPack 7.2 ships 10.16; the x86_64 wheel of 10.16.1"),
    ("11.4.0.106", "tensorrt-cu12-bindings==11.4.0.106", "3.11",
     "pip tensorrt 11.4 (x86_64); TensorRT 11.4.1 is what JetPack 7.2.2+ gets"),
]
# (listing name, pip requirements (the first is listed, the rest are what it imports), module)
CUDA_PYTHON = [
    ("cuda-python-12.2.1", ("cuda-python==12.2.1",), "cuda.cudart"),
    ("cuda-python-12.6.2.post1", ("cuda-python==12.6.2.post1",), "cuda.bindings.runtime"),
    ("cuda-bindings-12.9.4", ("cuda-bindings==12.9.4", "cuda-pathfinder==1.9.1"), "cuda.bindings.runtime"),
    ("cuda-bindings-13.5.0", ("cuda-bindings==13.5.0", "cuda-pathfinder==1.9.1"), "cuda.bindings.runtime"),
]
LIBCUDART = [
    ("libcudart-12.6", "nvidia-cuda-runtime-cu12==12.6.77", "libcudart.so.12"),
    ("libcudart-13.0", "nvidia-cuda-runtime==13.0.96", "libcudart.so.13"),
]


def sh(*args: str, **kw) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def download(requirement: str, python: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.glob("*.whl"))
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    sh(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
       "--python-version", python, *platforms, "-d", str(folder), requirement)
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    wheels = [w for w in folder.glob("*.whl")
              if w.name.lower().startswith(f"{name}-{version}".lower())] or sorted(set(folder.glob("*.whl")) - before)
    if not wheels:
        raise SystemExit(f"pip saved no wheel for {requirement}")
    return wheels[0]


def python_for(version: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    for candidate in (shutil.which(f"python{version}"),
                      *sorted(Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}"))):
        if candidate and subprocess.run([str(candidate), "-c", "pass"]).returncode == 0:
            return str(candidate)
    raise SystemExit(f"no python{version} found: install it (e.g. pyenv install {version})")


def undefined_symbols(library: Path) -> list[str]:
    symbols = []
    for line in sh("nm", "-D", "--undefined-only", str(library)).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1]:
            symbols.append(parts[1])
    return symbols


def needed(library: Path) -> list[str]:
    return [line.split("[")[1].split("]")[0] for line in sh("readelf", "-d", str(library)).splitlines()
            if "(NEEDED)" in line and "libnv" in line]


def make_stubs(bindings: Path, folder: Path, python: str) -> None:
    """Stub libraries for the TensorRT libraries the bindings link, exporting the symbols that
    nothing else in the process provides (libc, libstdc++, libm and libpython do the rest)."""
    probe = ("import ctypes,sys; lib=ctypes.CDLL(None); "
             "[print(n) for n in sys.argv[1:] if not hasattr(lib, n)]")
    missing = sh(python, "-c", probe, *undefined_symbols(bindings)).split()
    source = folder / "stub.c"
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in missing))
    for soname in needed(bindings):
        sh("gcc", "-shared", "-fPIC", "-o", str(folder / soname), f"-Wl,-soname,{soname}", str(source))


DUMP = r"""
import importlib, json, sys
trt = importlib.import_module(sys.argv[1])
owners = json.loads(sys.argv[2])
def resolve(dotted):
    obj = trt
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj
members = {}
for owner in owners:
    try:
        obj = resolve(owner)
    except AttributeError:
        continue
    members[owner] = sorted(n for n in dir(obj) if not n.startswith("_"))
module = sorted(n for n in dir(trt) if not n.startswith("_")) + ["__version__"]
print(json.dumps({"reported_version": trt.__version__, "module": module, "members": members}))
"""


PRESENT = r"""
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
present = []
for name in json.loads(sys.argv[2]):
    obj = module
    try:
        for part in name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        continue
    present.append(name)
print(json.dumps(present))
"""


def owners() -> list[str]:
    found = set()
    for names in USES.values():
        for name in names:
            if "." in name:
                found.add(name.rsplit(".", 1)[0])
            else:
                found.add(name)
    return sorted(n for n in found if n[:1].isupper())


def list_tensorrt(version: str, requirement: str, python_version: str, note: str, work: Path) -> dict:
    wheel = download(requirement, python_version, work / "wheels")
    unpacked = work / f"trt-{version}"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:  # only the Python files and the bindings module
        for member in archive.namelist():
            if member.endswith((".py", "/tensorrt.so")) and "dist-info" not in member:
                archive.extract(member, unpacked)
    package = next(p.parent.name for p in unpacked.glob("*/tensorrt.so"))
    python = python_for(python_version)
    stubs = unpacked / "_stubs"
    stubs.mkdir()
    make_stubs(unpacked / package / "tensorrt.so", stubs, python)
    env = {**os.environ, "LD_LIBRARY_PATH": str(stubs), "PYTHONPATH": str(unpacked)}
    dump = json.loads(sh(python, "-c", DUMP, package, json.dumps(owners()), env=env))
    return {"version": version, "wheel": wheel.name, "imported_as": package,
            "how": "imported with stub libnvinfer/libnvonnxparser/libnvinfer_plugin "
                   "(tools/refresh_trt_api.py)", "stands_for": note, **dump}


def list_cuda_python(name: str, requirements: tuple[str, ...], module: str, work: Path) -> dict:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheels = [download(requirement, version, work / "wheels") for requirement in requirements]
    wheel = wheels[0]
    target = work / name
    shutil.rmtree(target, ignore_errors=True)
    sh(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
       *map(str, wheels))
    probe = PRESENT
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    present = json.loads(sh(sys.executable, "-S", "-c", probe, module, json.dumps(CUDA_PYTHON_USES),
                            env=env))
    return {"version": name, "wheel": wheel.name, "module": module,
            "checked": list(CUDA_PYTHON_USES), "present": present}


def list_libcudart(name: str, requirement: str, soname: str, work: Path) -> dict:
    wheel = download(requirement, "3.11", work / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        member = next(m for m in archive.namelist() if m.endswith("/" + soname))
        path = Path(archive.extract(member, work / name))
    exported = {line.split()[-1].split("@")[0] for line in
                sh("nm", "-D", "--defined-only", str(path)).splitlines() if line.strip()}
    checked = list(LIBCUDART_USES) + ["cudaGetDeviceProperties", "cudaGetDeviceProperties_v2"]
    return {"version": name, "wheel": wheel.name, "library": soname, "checked": checked,
            "present": [n for n in checked if n in exported]}


def write(name: str, listing: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(listing, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="refresh only this listing (e.g. 10.3.0 or libcudart-12.6)")
    parser.add_argument("--keep", help="download and unpack here (kept) instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trt-api-") as tmp:
        work = Path(args.keep or tmp)
        for version, requirement, python, note in TENSORRT:
            if not args.only or args.only == version:
                write(f"tensorrt-{version}", list_tensorrt(version, requirement, python, note, work))
        for name, requirement, module in CUDA_PYTHON:
            if not args.only or args.only == name:
                write(name, list_cuda_python(name, requirement, module, work))
        for name, requirement, soname in LIBCUDART:
            if not args.only or args.only == name:
                write(name, list_libcudart(name, requirement, soname, work))


if __name__ == "__main__":
    main()
