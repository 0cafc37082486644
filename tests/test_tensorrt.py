"""TensorRT path of the deploy kit (8.5 to 11.x): build (fp32, fp16 where the version has
the flag, dynamic batch, timing cache), bench, profile (IProfiler), check against ONNX Runtime,
and the version / corrupt-engine errors.

Skipped, with the reason, where TensorRT or a CUDA GPU is missing (CI and the development
machines have none); run on a GPU host or a Jetson with ``pytest -m gpu``. Without a GPU,
tests/test_trt_api.py runs the same code paths against each version's listed API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import tensorrt  # noqa: F401
except ImportError:
    pytest.skip("TensorRT is not installed: the TensorRT tests need TensorRT 8.5-11.x and an "
                "NVIDIA GPU (pip install tensorrt, or a Jetson's system python3)",
                allow_module_level=True)


def _gpu_problem() -> str | None:
    from edgekd_deploy.cuda import Cuda
    from edgekd_deploy.errors import DeployError

    try:
        Cuda()
    except DeployError as error:
        return str(error)
    return None


if _gpu_problem():
    pytest.skip(f"no usable CUDA GPU: {_gpu_problem()}", allow_module_level=True)

from edgekd_deploy.trtapi import api_path  # noqa: E402

STRONGLY_TYPED = api_path(tensorrt.__version__) == "11.x"  # no --fp16 builder flag there
torch = pytest.importorskip("torch")

from edgekd.inputs.loaders import load_dataset  # noqa: E402
from edgekd.ship.export import export_onnx, parity_inputs, student_metadata  # noqa: E402
from edgekd.search.space import Stage, StudentSpec, build  # noqa: E402

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]


def deploy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, dataset) -> Path:
    folder = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    spec = StudentSpec(family="residual", input=(1, 28, 28), classes=10,
                       stages=(Stage(8, 1, 1), Stage(16, 1, 2)))
    model = build(spec)
    meta = student_metadata(spec=spec, classes=dataset.classes, input_shape=spec.input,
                            normalization=dataset.normalization, model_id=spec.id)
    x = parity_inputs(dataset)
    export_onnx(model, spec.input, folder / "static.onnx", batch=4, metadata=meta, parity_x=x)
    export_onnx(model, spec.input, folder / "dynamic.onnx", dynamic_batch=(1, 8, 32),
                metadata=meta, parity_x=x)
    np.savez(folder / "val.npz", x=dataset.x_test[:300], y=dataset.y_test[:300])
    np.savez(folder / "calib.npz", x=dataset.x_train[:256])
    return folder


def test_build_fp32_bench_and_check(onnx_dir: Path) -> None:
    proc = deploy("build", "static.onnx", "--timing-cache", "t.cache", cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((onnx_dir / "static.engine.json").read_text())
    assert info["tensorrt"] == tensorrt.__version__ and info["precision"] == "fp32"
    assert (onnx_dir / "t.cache").stat().st_size > 0
    proc = deploy("bench", "static.engine", "--batch", "4", "--iters", "20", "--out", "m.json",
                  cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((onnx_dir / "m.json").read_text())
    assert m["backend"] == "trt" and m["batch"] == 4 and m["latency_ms"]["median"] > 0
    from edgekd_deploy.files import sha256_file

    assert m["sha256"] == sha256_file(onnx_dir / "static.onnx")  # maps back to the export
    proc = deploy("check", "static.engine", "--data", "val.npz", "--reference", "static.onnx",
                  "--out", "c.json", cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    c = json.loads((onnx_dir / "c.json").read_text())
    assert c["reference"]["top1_agreement"] >= 0.99 and c["reference"]["max_abs_diff"] < 1e-2


def test_dynamic_batch_fp16_and_profile(onnx_dir: Path) -> None:
    shapes = ("--min", "1x1x28x28", "--opt", "8x1x28x28", "--max", "32x1x28x28")
    proc = deploy("build", "dynamic.onnx", "--fp16", *shapes, cwd=onnx_dir)
    if STRONGLY_TYPED:  # TensorRT 11: FP16 must come from an FP16 ONNX
        assert proc.returncode == 2 and "FP16 ONNX" in proc.stderr, proc.stderr
        assert not (onnx_dir / "dynamic.engine").exists()
        proc = deploy("build", "dynamic.onnx", *shapes, cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    for batch in ("1", "32"):
        proc = deploy("bench", "dynamic.engine", "--batch", batch, "--iters", "10", "--out",
                      f"b{batch}.json", cwd=onnx_dir)
        assert proc.returncode == 0, proc.stderr
    proc = deploy("bench", "dynamic.engine", "--batch", "64", cwd=onnx_dir)
    assert proc.returncode == 2 and "from 1 to 32" in proc.stderr
    proc = deploy("bench", "static.engine", "--batch", "8", cwd=onnx_dir)
    assert proc.returncode == 2 and "fixed batch of 4" in proc.stderr and "--min" not in proc.stderr
    proc = deploy("profile", "dynamic.engine", "--batch", "8", "--out", "p.json", cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    p = json.loads((onnx_dir / "p.json").read_text())
    assert p["layers"] and all({"name", "op_type", "ms"} <= set(layer) for layer in p["layers"])
    assert p["total_ms"] == pytest.approx(sum(layer["ms"] for layer in p["layers"]))


def test_int8_explicit_qdq(onnx_dir: Path) -> None:
    proc = deploy("build", "static.onnx", "--int8", "--calib", "calib.npz", "--out", "int8.engine",
                  cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    assert (onnx_dir / "static.int8.onnx").is_file()
    proc = deploy("check", "int8.engine", "--data", "val.npz", "--reference", "static.onnx",
                  cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr


def test_engine_from_another_version_and_corrupt_engine(onnx_dir: Path) -> None:
    proc = deploy("build", "static.onnx", "--out", "other.engine", cwd=onnx_dir)
    assert proc.returncode == 0, proc.stderr
    sidecar = onnx_dir / "other.engine.json"
    info = json.loads(sidecar.read_text())
    info["tensorrt"] = "9.0.0"
    sidecar.write_text(json.dumps(info))
    proc = deploy("bench", "other.engine", "--batch", "4", cwd=onnx_dir)
    assert proc.returncode == 2 and "built with TensorRT 9.0.0" in proc.stderr
    (onnx_dir / "junk.engine").write_bytes(os.urandom(4096))
    proc = deploy("bench", "junk.engine", cwd=onnx_dir)
    assert proc.returncode == 2 and "cannot load engine" in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1:]) == 1
