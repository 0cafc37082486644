"""Issue 14: the bundle README per profile and the FP16 ONNX made on the host.

Bundles for jetson-orin-nano-8gb, jetson-xavier-nx and h100 are made from one small trained
student; every command in each README's code blocks is parsed by the kit's (or edgekd's) own
CLI and its ``--help`` runs from the bundle's copy of the kit, so a README that drifts from the
CLI fails here. The FP16 ONNX is run by ONNX Runtime and compared with the FP32 one."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from click.testing import CliRunner  # noqa: E402

from edgekd_deploy.__main__ import build_parser  # noqa: E402
from edgekd_deploy.check import prepare_inputs  # noqa: E402
from edgekd_deploy.build import BuildOptions, check_precision  # noqa: E402
from edgekd_deploy.errors import DeployError  # noqa: E402
from edgekd_deploy.onnxmeta import read_onnx_header  # noqa: E402
from edgekd.cli.cli import cli  # noqa: E402
from edgekd.core.errors import EdgekdError  # noqa: E402
from edgekd.inputs.loaders import load_dataset  # noqa: E402
from small_student import trained_small_student  # noqa: E402
from edgekd.ship.bundle import make_bundle  # noqa: E402
from edgekd.ship.export import export_onnx, onnx_logits  # noqa: E402
from edgekd.ship.fp16 import make_checked_fp16  # noqa: E402

#: trtexec options the README may use: all in trtexec --help of TensorRT 8.5-11.x, except
#: --stronglyTyped (9.x+, used for 11.x only) and --fp16/--int8 (8.5-10.x only)
TRTEXEC_OPTIONS = {"--onnx", "--saveEngine", "--fp16", "--int8", "--stronglyTyped", "--minShapes",
                   "--optShapes", "--maxShapes", "--memPoolSize", "--timingCacheFile"}
PROFILES = ("jetson-orin-nano-8gb", "jetson-xavier-nx", "h100")


@pytest.fixture(scope="module")
def student_onnx(tmp_path_factory) -> Path:
    """A plain student trained a few steps on the shipped subset, exported with a dynamic batch."""
    model, _ = trained_small_student()
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    return export_onnx(model, (1, 28, 28), path, dynamic_batch=(1, 8, 64),
                       metadata={"edgekd.batch": json.dumps({"min": 1, "opt": 8, "max": 64})})


@pytest.fixture(scope="module")
def bundles(student_onnx: Path, tmp_path_factory) -> dict[str, Path]:
    dataset = load_dataset()
    root = tmp_path_factory.mktemp("bundles")
    return {name: make_bundle(student_onnx, root / name, profile=name, dataset=dataset,
                              val_samples=500) for name in PROFILES}


def _commands(readme: str) -> list[list[str]]:
    """Every line of every fenced code block, split like a shell would (cd lines dropped)."""
    blocks = re.findall(r"```\n(.*?)```", readme, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    return [shlex.split(line) for line in lines if not line.startswith(("cd ", "export PATH=", "rm -f "))]


@pytest.mark.parametrize("name", PROFILES)
def test_readme_commands_match_the_kit_and_edgekd(bundles: dict[str, Path], name: str) -> None:
    bundle = bundles[name]
    commands = _commands((bundle / "README.md").read_text())
    kinds = {argv[0] if argv[0] != "python3" else "deploy" for argv in commands}
    assert {"deploy", "edgekd", "scp", "trtexec"} <= kinds, kinds
    assert 'export PATH="$PATH:/usr/src/tensorrt/bin"' in (bundle / "README.md").read_text()
    subcommands = set()
    builds, trtexecs = [], []
    for argv in commands:
        if argv[0] == "python3":
            assert argv[1:3] == ["-m", "deploy"], argv
            build_parser().parse_args(argv[3:])  # every flag exists; a bad one exits 2 here
            subcommands.add(argv[3])
            if argv[3] == "build":
                assert (bundle / argv[4]).is_file(), f"{argv[4]} is not in the bundle"
                out = argv[argv.index("--out") + 1] if "--out" in argv else Path(argv[4]).stem + ".engine"
                builds.append((argv[4], out))
        elif argv[0] == "edgekd":
            result = CliRunner().invoke(cli, [argv[1], "--help"])
            assert result.exit_code == 0, result.output
            for option in (a for a in argv if a.startswith("--")):
                assert option in result.output, f"edgekd {argv[1]} has no {option}"
        elif argv[0].endswith("trtexec"):
            options = dict((a.split("=", 1) + [""])[:2] for a in argv[1:])
            assert set(options) <= TRTEXEC_OPTIONS, set(options) - TRTEXEC_OPTIONS
            assert (bundle / options["--onnx"]).is_file()
            trtexecs.append((options["--onnx"], options["--saveEngine"]))
    assert {"build", "bench", "check", "profile"} <= subcommands
    # a trtexec fallback for each engine (on TensorRT 11 from the FP16 ONNX deploy build takes itself)
    assert {out for _, out in builds} == {engine for _, engine in trtexecs}
    for sub in sorted(subcommands):  # the bundle's own copy of the kit answers --help
        proc = subprocess.run([sys.executable, "-m", "deploy", sub, "--help"], cwd=bundle,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "usage: python -m deploy " + sub in proc.stdout, proc.stderr


def test_readme_versions_per_profile(bundles: dict[str, Path]) -> None:
    xavier = (bundles["jetson-xavier-nx"] / "README.md").read_text()
    nano = (bundles["jetson-orin-nano-8gb"] / "README.md").read_text()
    h100 = (bundles["h100"] / "README.md").read_text()
    assert "--system-site-packages" in xavier and "--system-site-packages" in nano
    for readme in (xavier, nano, h100):
        assert "TensorRT 10 (JetPack 6)" not in readme and "(`pip install cuda-python`)" not in readme
        assert "never cuda-python 13.x" in readme.lower().replace("`pip install cuda-python` ", "cuda-python ")
        assert "Never run on hardware" in readme and "Only checked, not run on hardware" in readme
    assert "| JetPack 5.1.x (its last JetPack; Python 3.8) | 8.5 |" in xavier
    assert "| JetPack 6.1 / 6.2 | 10.3 |" in nano and "| JetPack 7.2 | 10.16 |" in nano
    assert "8.5 |" not in nano
    # TensorRT 11 (no FP16 flag): deploy build's --fp16 takes the FP16 ONNX by itself; trtexec names it
    assert "--onnx=model.fp16.onnx --saveEngine=model.engine --stronglyTyped" in h100
    assert "--onnx=model.fp16.onnx" not in xavier and "--onnx=model.fp16.onnx" not in nano
    assert "python3 -m deploy build model.onnx --fp16 --workspace-mb 8192" in h100
    # a dynamic batch: trtexec gets the min/opt/max deploy build takes from the metadata (1, 8, 64)
    shapes = "--minShapes=input:1x1x28x28 --optShapes=input:8x1x28x28 --maxShapes=input:64x1x28x28"
    assert shapes in h100 and shapes in nano and "--shapes=" not in h100
    # per-JetPack CUDA and the Jetson install step; the desktop's trtexec is stated absent from pip
    assert "| JetPack 5.1.x (its last JetPack; Python 3.8) | 8.5 | 11.4 (libcudart.so.11.0) |" in xavier
    assert "12.6 (libcudart.so.12)" in nano and "13.0 (libcudart.so.13)" in nano
    assert "sudo apt install python3-libnvinfer" in nano and "python3-libnvinfer" not in h100
    assert "ship **no**" in h100 and "trtexec" in h100


def test_fp16_onnx_is_checked_on_the_host(bundles: dict[str, Path]) -> None:
    bundle = bundles["h100"]
    fp16 = onnx.load(str(bundle / "model.fp16.onnx"))
    io_types = {v.type.tensor_type.elem_type for v in [*fp16.graph.input, *fp16.graph.output]}
    assert io_types == {onnx.TensorProto.FLOAT}  # keep-io-types: the kit feeds float32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    meta = read_onnx_header(bundle / "model.fp16.onnx").metadata
    assert meta["edgekd.precision"] == "fp16"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert meta["edgekd.source_sha256"] == manifest["model_sha256"]
    # the manifest's figures are what ONNX Runtime gives on val.npz, recomputed here
    with np.load(bundle / "val.npz") as val:
        x = prepare_inputs(val["x"], (1, 28, 28), (list(val["mean"]), list(val["std"])), "val")
        y, fp32_logits = val["y"], val["logits"]
    pred16 = onnx_logits(bundle / "model.fp16.onnx", x).argmax(1)
    (check,) = manifest["host_checks"]
    assert check["samples"] == 500
    assert check["accuracy"] == pytest.approx(float(np.mean(pred16 == y)), abs=1e-12)
    assert check["fp32_accuracy"] == pytest.approx(float(np.mean(fp32_logits.argmax(1) == y)), abs=1e-12)
    assert check["fp32_accuracy"] > 0.2 and check["drop"] <= 0.01  # trained; FP16 keeps it
    assert f"top-1 agreement {100 * check['top1_agreement']:.2f}%" in (bundle / "README.md").read_text()
    # TensorRT 11's check accepts the FP16 ONNX for --fp16 and still refuses the FP32 one
    check_precision("11.4.0", "11.x", BuildOptions(fp16=True), meta)
    with pytest.raises(DeployError, match="model.fp16.onnx"):
        check_precision("11.4.0", "11.x", BuildOptions(fp16=True),
                        read_onnx_header(bundle / "model.onnx").metadata)


def test_fp16_onnx_that_loses_accuracy_is_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = bundles["h100"]
    with np.load(bundle / "val.npz") as val:
        x = prepare_inputs(val["x"], (1, 28, 28), (list(val["mean"]), list(val["std"])), "val")
        y = val["y"]
    perfect = np.eye(10, dtype=np.float32)[y]  # an "FP32" reference that is always right
    with pytest.raises(EdgekdError, match="use a profile with precision fp32 or int8"):
        make_checked_fp16(bundle / "model.onnx", tmp_path / "m.fp16.onnx", x, y, perfect,
                          max_drop=0.01)
    assert not (tmp_path / "m.fp16.onnx").exists()


def test_a_cpu_bundle_readme_does_not_talk_about_tensorrt() -> None:
    """host-cpu runs ONNX Runtime: its README has no engine, no TensorRT, no trtexec."""
    from edgekd.inputs.profiles import load_profile
    from edgekd.ship.bundle_readme import ReadmeInputs, render_readme

    info = ReadmeInputs(batch=1, model_sha="0" * 64, has_teacher=True, input_shape=(1, 28, 28),
                        dynamic=False)
    text = render_readme(load_profile("host-cpu"), info)
    for word in ("TensorRT", "engine", "trtexec"):
        assert word not in text, word
    assert "python3 -m deploy bench" in text or "deploy bench" in text
    orin = render_readme(load_profile("jetson-orin-nano-8gb"), info)
    assert "no engine of this bundle" in orin and "*.engine.json" in orin
