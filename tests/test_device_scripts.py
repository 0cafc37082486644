"""Every device command a bundle README gives runs to completion, per TensorRT version and precision.

Each README code block carries ``<!-- step: S; tensorrt: V ... -->`` (edgekd/ship/bundle_readme.py).
For every bundle (Xavier NX on 8.5, Orin Nano on 8.6 / 10.3 / 10.16, AGX Orin up to 11.x with its
DLA, an H100 on 10.x / 11.x; FP32, FP16, INT8) and every TensorRT version the README names, the
blocks of one route are run as one ``sh -e`` script in a copy of the bundle: the deploy route
(build, DLA, measure) and the trtexec route (trtexec, measure). ``python3`` is the real
interpreter with a fake ``tensorrt`` of that version (tests/fake_tensorrt.py: the real binding's
names only, a parser that reads the ONNX, plans that remember their shapes) and a fake cuda-python,
so ``python3 -m deploy`` is the bundle's own kit; ``trtexec`` is a fake that checks its options,
shapes and precision against the version and the model. Apt, scp and ``edgekd report`` lines are
not device commands (tests/test_bundle_readme.py parses them)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from edgekd.inputs.loaders import load_dataset  # noqa: E402
from edgekd.inputs.profiles import load_profile  # noqa: E402
from edgekd.ship.bundle import make_bundle  # noqa: E402
from edgekd.ship.export import export_onnx  # noqa: E402
from fake_tensorrt import CUDA_RUNTIME, listing_for, read_plan  # noqa: E402
from small_student import trained_small_student  # noqa: E402

TESTS = Path(__file__).resolve().parent
BLOCK = re.compile(r"<!-- step: (\w+); tensorrt: ([^>]*) -->\n```\n(.*?)```", re.S)
ROUTES = {"deploy": ("build", "dla", "measure"), "trtexec": ("trtexec", "measure")}
#: (profile, precision, export batch: "static" or "dynamic"); CI runs the two that cover every
#: TensorRT version (8.5 on the Xavier, 8.6 to 11.x and the DLA on the AGX Orin), -m slow the rest
SLOW = pytest.mark.slow
CASES = [pytest.param("jetson-xavier-nx", "fp16", "static", marks=SLOW),
         ("jetson-xavier-nx", "int8", "static"),
         pytest.param("jetson-orin-nano-8gb", "fp32", "dynamic", marks=SLOW),
         pytest.param("jetson-orin-nano-8gb", "int8", "dynamic", marks=SLOW),
         ("jetson-agx-orin-64gb", "fp16", "static"),
         pytest.param("jetson-agx-orin-64gb", "int8", "static", marks=SLOW),
         pytest.param("h100", "fp16", "dynamic", marks=SLOW),
         pytest.param("h100", "fp32", "static", marks=SLOW)]


def _versions(on: str) -> list[str]:
    """The listed TensorRT versions a block's tag names ("10.x" stands for 10.3 and 10.16)."""
    found = []
    for version in on.split():
        found += ["10.3", "10.16"] if version == "10.x" else [version]
    return [listing_for(v) for v in found]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    model, _ = trained_small_student()
    root = tmp_path_factory.mktemp("exports")
    return {"static": export_onnx(model, (1, 28, 28), root / "static.onnx", batch=1),
            "dynamic": export_onnx(model, (1, 28, 28), root / "dynamic.onnx", dynamic_batch=(1, 8, 64),
                                   metadata={"edgekd.batch": json.dumps({"min": 1, "opt": 8, "max": 64})})}


@pytest.fixture(scope="module")
def fake_device(tmp_path_factory) -> dict[str, str]:
    """PATH and PYTHONPATH of the fake device: bin/python3, bin/trtexec, site/tensorrt.py, site/cuda."""
    root = tmp_path_factory.mktemp("device")
    bin_dir, site = root / "bin", root / "site"
    (site / "cuda" / "bindings").mkdir(parents=True)
    bin_dir.mkdir()
    (site / "cuda" / "__init__.py").write_text("")
    (site / "cuda" / "bindings" / "__init__.py").write_text("")
    (site / "cuda" / "bindings" / "runtime.py").write_text(CUDA_RUNTIME)
    (site / "tensorrt.py").write_text(
        "import os, sys\nsys.path.append(os.environ['FAKE_TESTS'])\n"
        "from fake_tensorrt import OnnxTensorRT\n"
        "sys.modules[__name__] = OnnxTensorRT(os.environ['FAKE_TENSORRT']).module\n")
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "trtexec").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "import os, sys; sys.path.insert(0, os.environ[\'FAKE_TESTS\']); '
        f'from fake_tensorrt import trtexec_main; sys.exit(trtexec_main(sys.argv[1:], os.environ[\'FAKE_TENSORRT\']))" "$@"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(site),
            "FAKE_TESTS": str(TESTS), "DEPLOY_CUDART": str(root / "no-libcudart.so")}


@pytest.mark.parametrize("name,precision,batch", CASES,
                         ids=["-".join(getattr(c, "values", c)) for c in CASES])
def test_every_device_command_completes(exports, fake_device, tmp_path: Path, name: str,
                                        precision: str, batch: str) -> None:
    base = load_profile(name)
    profile = dataclasses.replace(base, runtime=dataclasses.replace(base.runtime, precision=precision))
    bundle = make_bundle(exports[batch], tmp_path / "bundle", profile=profile, dataset=load_dataset(),
                         teacher_onnx=exports[batch], val_samples=64, calib_samples=64)
    readme = (bundle / "README.md").read_text()
    blocks = [(step, _versions(on), body) for step, on, body in BLOCK.findall(readme)]
    assert {step for step, _, _ in blocks} >= {"build", "trtexec", "measure"}
    if name == "jetson-agx-orin-64gb" and precision == "fp16":
        assert any(step == "dla" for step, _, _ in blocks)  # a static FP16 export on a board with DLAs
    ran, shapes = [], {}
    for version in sorted({v for _, on, _ in blocks for v in on}):
        for route, steps in ROUTES.items():
            script = "\n".join(body for step, on, body in blocks if step in steps and version in on)
            if not any(step in steps[:-1] and version in on for step, on, _ in blocks):
                continue
            work = tmp_path / f"{version}-{route}"
            shutil.copytree(bundle, work)
            env = {**os.environ, **fake_device, "FAKE_TENSORRT": version}
            script = script.replace("cd bundle\n", "")
            proc = subprocess.run(["sh", "-e", "-c", script], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 0, f"TensorRT {version}, {route} route:\n{script}\n{proc.stdout}\n{proc.stderr}"
            measured = json.loads((work / "measurement-model.json").read_text())
            assert measured["backend"] == "trt" and measured["versions"]["tensorrt"] == version
            if route == "deploy":
                engine = json.loads((work / "model.engine.json").read_text())
                want = "fp16" if precision == "fp16" else precision
                assert engine["precision"] == want and engine["tensorrt"] == version
                if version.startswith("11") and precision == "fp16":
                    assert engine["built_from"] == "model.fp16.onnx"  # no FP16 flag on 11: the FP16 ONNX
            ran.append((version, route))
            shapes[(version, route)] = read_plan((work / "model.engine").read_bytes())["profile"]
    for version in {v for v, _ in ran}:  # trtexec builds the batch range deploy build builds
        assert shapes[(version, "deploy")] == shapes[(version, "trtexec")]
        assert (shapes[(version, "deploy")] is not None) == (batch == "dynamic")
    assert {v for v, _ in ran} == {v for _, on, _ in blocks for v in on}
    assert {r for _, r in ran} == set(ROUTES)


@pytest.mark.parametrize("precision", [pytest.param("fp32", marks=pytest.mark.slow), "fp16", "int8"])
def test_calibration_commands_sh_completes(fake_device, tmp_path: Path, precision: str) -> None:
    """``edgekd calibrate --export``'s commands.sh under ``set -e`` on TensorRT 8.5, 10.3 and 11.x:
    an int8 profile builds the Q/DQ copies made on the host, an fp16 one on 11.x the FP16 copies."""
    from edgekd.search.space import Stage, StudentSpec
    from edgekd.ship.calibrate import export_set, write_commands

    base = load_profile("jetson-agx-orin-64gb")
    profile = dataclasses.replace(base, runtime=dataclasses.replace(base.runtime, precision=precision))
    specs = [StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 1, 2),)),
             StudentSpec("dwsep", (1, 28, 28), 10, (Stage(8, 1, 2), Stage(16, 1, 2)))]
    folder = tmp_path / "set"
    entries = export_set(specs, folder, max_batch=8)
    script = write_commands(folder, entries, [1, 8], profile).read_text()
    assert ("--int8" in script) == (precision == "int8") and (".int8.onnx" in script) == (precision == "int8")
    for version in ("8.5", "10.3", "11.x"):
        work = tmp_path / version
        shutil.copytree(folder, work)
        env = {**os.environ, **fake_device, "FAKE_TENSORRT": listing_for(version),
               # "with the deploy kit on PYTHONPATH" (commands.sh's first line): this checkout's
               "PYTHONPATH": os.pathsep.join([fake_device["PYTHONPATH"], str(TESTS.parent)])}
        proc = subprocess.run(["sh", "commands.sh"], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"TensorRT {version}:\n{script}\n{proc.stdout}\n{proc.stderr}"
        measured = sorted(work.glob("*.json"))
        assert len([m for m in measured if m.name != "index.json" and not m.name.endswith(".engine.json")]) == 4
