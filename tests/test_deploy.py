"""The deploy kit: ONNX Runtime runner, bench -> Measurement JSON, bad input -> one line + exit 2,
and the host's measure_onnx through a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgekd.core.errors import EdgekdError  # noqa: E402
from edgekd.ship.export import export_onnx  # noqa: E402
from edgekd.ship.measure import measure_onnx  # noqa: E402
from edgekd.search.space import Stage, StudentSpec, build  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LATENCY_KEYS = {"mean", "median", "p90", "p99", "min", "std"}


@pytest.fixture(scope="module")
def student_onnx(tmp_path_factory) -> Path:
    spec = StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                       stages=(Stage(8, 2, 1), Stage(16, 2, 2)))
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    return export_onnx(build(spec), spec.input, out, dynamic_batch=(1, 4, 32),
                       metadata={"edgekd.id": spec.id, "edgekd.profile": "host-cpu"})


@pytest.fixture(scope="module")
def static_onnx(tmp_path_factory) -> Path:
    spec = StudentSpec(family="plain", input=(1, 28, 28), classes=10, stages=(Stage(4, 1, 2),))
    return export_onnx(build(spec), spec.input, tmp_path_factory.mktemp("onnx") / "static.onnx")


def deploy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m deploy ARGS`` from the repository's copy of the kit, run in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def assert_measurement(m: dict, model: Path, batch: int) -> None:
    assert m["format"] == "edgekd.measurement/1"
    assert m["model"] == model.name and len(m["sha256"]) == 64
    assert m["backend"] == "ort" and m["precision"] == "fp32" and m["batch"] == batch
    assert LATENCY_KEYS <= set(m["latency_ms"])
    lat = m["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"]
    assert m["throughput"] == pytest.approx(batch * 1000 / lat["median"])
    assert m["device"] and m["versions"]["onnxruntime"]


def test_bench_writes_measurement_json(tmp_path: Path, student_onnx: Path) -> None:
    out = tmp_path / "m.json"
    proc = deploy("bench", str(student_onnx), "--backend", "ort", "--batch", "4",
                  "--warmup", "2", "--iters", "10", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(out.read_text())
    assert_measurement(m, student_onnx, 4)
    assert m["iterations"] == 10 and m["warmup"] == 2
    assert m["model_id"] and m["profile"] == "host-cpu"


def test_measure_onnx_runs_the_kit_in_a_subprocess(tmp_path: Path, student_onnx: Path) -> None:
    m = measure_onnx(student_onnx, batch=1, warmup=2, iters=10, out=tmp_path / "x.json")
    assert_measurement(m, student_onnx, 1)
    assert json.loads((tmp_path / "x.json").read_text()) == m


def test_ort_runner_infer_contract(student_onnx: Path) -> None:
    from edgekd_deploy.runners import OrtRunner

    runner = OrtRunner(student_onnx)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    out = runner.infer({runner.input_name: x})
    assert list(out) == ["logits"] and out["logits"].shape == (3, 10)
    assert runner.metadata["edgekd.profile"] == "host-cpu"


@pytest.mark.parametrize("setup, args, message", [
    ("missing", ("bench", "{tmp}/nope.onnx"), "not found"),
    ("text", ("bench", "{tmp}/fake.onnx"), "not an ONNX model"),
    ("static", ("bench", "{model}", "--batch", "4"), "fixed batch of 1"),
    ("engine", ("bench", "{tmp}/old.engine"), "built with TensorRT 8.6.1"),
    ("no data", ("check", "{model}", "--data", "{tmp}/none.npz"), "data file"),
    ("bad npz", ("check", "{model}", "--data", "{tmp}/fake.onnx"), "not a readable .npz"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, static_onnx: Path, setup, args,
                                         message) -> None:
    (tmp_path / "fake.onnx").write_text("this is not a protobuf\n")
    (tmp_path / "old.engine").write_bytes(b"\x00not an engine")
    (tmp_path / "old.engine.json").write_text(json.dumps({"tensorrt": "8.6.1"}))
    argv = [a.format(tmp=tmp_path, model=static_onnx) for a in args]
    proc = deploy(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_measure_onnx_bad_model_is_edgekd_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x01\x02garbage")
    with pytest.raises(EdgekdError, match="not an ONNX model"):
        measure_onnx(bad, iters=1)


def test_profile_writes_per_layer_json(tmp_path: Path, student_onnx: Path) -> None:
    proc = deploy("profile", str(student_onnx), "--batch", "2", "--iters", "5", "--out",
                  str(tmp_path / "p.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["format"] == "edgekd.layer-profile/1" and p["backend"] == "ort" and p["batch"] == 2
    assert {"model", "sha256", "device", "layers", "total_ms"} <= set(p)
    assert any(layer["op_type"] == "Conv" for layer in p["layers"])
    assert all(layer["ms"] >= 0 and layer["name"] for layer in p["layers"])
    assert p["total_ms"] == pytest.approx(sum(layer["ms"] for layer in p["layers"]))
    assert p["iterations"] == 5


def test_summarize_matches_numpy() -> None:
    from edgekd_deploy.timing import summarize, time_callable

    samples = [3.0, 1.0, 2.0, 10.0, 2.5]
    latency, throughput = summarize(samples, batch=4)
    assert latency["median"] == 2.5 and latency["min"] == 1.0 and latency["max"] == 10.0
    assert latency["p90"] == pytest.approx(np.percentile(samples, 90))
    assert latency["std"] == pytest.approx(np.std(samples, ddof=1))
    assert throughput == pytest.approx(4 * 1000 / 2.5)
    calls = []
    assert len(time_callable(lambda: calls.append(1), warmup=3, iters=7)) == 7 and len(calls) == 10


def test_onnx_header_reader_without_onnx(student_onnx: Path, tmp_path: Path) -> None:
    import onnx

    from edgekd_deploy.errors import DeployError
    from edgekd_deploy.onnxmeta import read_onnx_header

    header = read_onnx_header(student_onnx)
    proto = onnx.load(str(student_onnx))
    assert header.metadata == {p.key: p.value for p in proto.metadata_props}
    assert header.opsets[""] == 17 and header.ir_version == proto.ir_version
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(DeployError, match="not an ONNX model"):
        read_onnx_header(junk)


def test_build_without_tensorrt_is_one_line(tmp_path: Path, static_onnx: Path) -> None:
    pytest.importorskip("numpy")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: tests/test_tensorrt.py covers build")
    except ImportError:
        pass
    proc = deploy("build", str(static_onnx), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: TensorRT is not installed") and proc.stderr.count("\n") == 1


def test_interleaved_bench_records_each_round_and_one_session(tmp_path: Path, student_onnx: Path,
                                                               static_onnx: Path) -> None:
    """Several models timed together: each Measurement has its per-round medians and the same
    session, so their ratio can be taken round by round; at least --iters runs each."""
    proc = deploy("bench", str(student_onnx), str(static_onnx), "--min-seconds", "0.06",
                  "--rounds", "3", "--iters", "30", "--threads", "1", "--no-spin", "--warmup", "2",
                  "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(found) == 2
    for m in found:
        assert len(m["round_ms"]) == 3 and all(v > 0 for v in m["round_ms"])
        assert m["iterations"] >= 30
        assert min(m["round_ms"]) <= m["latency_ms"]["p90"]
    assert found[0]["protocol"]["session"] == found[1]["protocol"]["session"]
