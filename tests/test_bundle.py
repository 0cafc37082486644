"""The device bundle and the CLI: `edgekd export CHECKPOINT --bundle`, then the bundle's own copy
of the deploy kit runs bench + check in a subprocess where importing torch (or edgekd) fails;
an AST walk proves deploy/ never imports torch or edgekd."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from edgekd.core.checkpoint import save_student  # noqa: E402
from edgekd.cli.cli import cli  # noqa: E402
from edgekd.inputs.data import to_tensor  # noqa: E402
from edgekd.inputs.loaders import load_dataset  # noqa: E402
from small_student import SMALL_SPEC, trained_small_student  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
FORBIDDEN = {"torch", "torchvision", "edgekd"}
ALLOWED = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "tensorrt", "cuda", "deploy"}
#: onnx only where ONNX Runtime's quantizer needs it (it is the quantizer's own dependency)
ALLOWED_IN = {"quantize.py": {"onnx"}, "files.py": {"tomli"}}  # tomli: TOML on Python 3.10, for edgekd

BLOCK_TORCH = '''
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "edgekd"):
            raise ImportError(f"blocked: the deploy kit imported {name}")
        return None

sys.meta_path.insert(0, _Block())
'''


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value).split(".")[0])
    return found


def test_deploy_imports_neither_torch_nor_edgekd() -> None:
    files = sorted(DEPLOY.glob("*.py"))
    assert {"__main__.py", "runners.py", "timing.py", "build.py"} <= {f.name for f in files}
    for file in files:
        modules = _imports(ast.parse(file.read_text(), filename=str(file)))
        assert not modules & FORBIDDEN, f"{file.name} imports {modules & FORBIDDEN}"
        extra = modules - ALLOWED - ALLOWED_IN.get(file.name, set())
        assert not extra, f"{file.name} imports {extra}: deploy/ may use stdlib, numpy, onnxruntime, tensorrt, cuda"


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> tuple[Path, float, np.ndarray]:
    """A small student trained for a few steps on the shipped subset (non-trivial accuracy)."""
    model, dataset = trained_small_student()
    spec = SMALL_SPEC
    with torch.no_grad():  # PyTorch's predictions on the bundle's 1000 validation images
        pred = model(to_tensor(dataset.x_test[:1000], dataset.normalization)).argmax(1).numpy()
    accuracy = float(np.mean(pred == dataset.y_test[:1000]))
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_student(path, model, spec=spec, classes=dataset.classes, input_shape=dataset.input_shape,
                 normalization=dataset.normalization, method="scratch",
                 metrics={"test_acc": accuracy})
    return path, accuracy, pred


@pytest.fixture(scope="module")
def bundle(trained_checkpoint, tmp_path_factory) -> Path:
    checkpoint, _acc, _pred = trained_checkpoint
    out = tmp_path_factory.mktemp("export")
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--out", str(out), "--bundle",
                                      "--profile", "jetson-orin-nano-8gb"])
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 100.00% on 256 samples" in result.output
    return out / "bundle"


def test_bundle_contents_and_readme(bundle: Path, trained_checkpoint) -> None:
    for name in ("model.onnx", "profile.toml", "calib.npz", "val.npz", "README.md",
                 "manifest.json", "deploy/__main__.py", "deploy/runners.py", "deploy/build.py"):
        assert (bundle / name).is_file(), name
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["profile"] == "jetson-orin-nano-8gb"
    readme = (bundle / "README.md").read_text()
    assert "python3 -m deploy build model.onnx --fp16" in readme
    assert "python3 -m deploy bench model.engine" in readme
    assert "python3 -m deploy check model.engine --data val.npz" in readme
    assert "edgekd report" in readme and "--measurements" in readme
    from edgekd.inputs.profiles import load_profile

    assert load_profile(str(bundle / "profile.toml")).name == "jetson-orin-nano-8gb"
    with np.load(bundle / "val.npz") as val:
        assert val["x"].dtype == np.uint8 and val["x"].shape == (1000, 1, 28, 28)
        assert val["logits"].shape == (1000, 10)
    meta = json.loads(subprocess.run(
        [sys.executable, "-c", "import json,sys; from deploy.onnxmeta import read_onnx_header; "
         "print(json.dumps(read_onnx_header(sys.argv[1]).metadata))", str(bundle / "model.onnx")],
        capture_output=True, text=True, check=True, cwd=bundle).stdout)
    spec = json.loads(meta["edgekd.spec"])
    assert spec["family"] == "plain" and json.loads(meta["edgekd.input_shape"]) == [1, 28, 28]
    assert json.loads(meta["edgekd.normalization"])["mean"]
    assert meta["edgekd.profile"] == "jetson-orin-nano-8gb"
    assert float(meta["edgekd.accuracy"]) == pytest.approx(trained_checkpoint[1])


def test_bundle_kit_runs_where_torch_cannot_be_imported(bundle: Path, trained_checkpoint,
                                                         tmp_path: Path) -> None:
    _checkpoint, torch_accuracy, _pred = trained_checkpoint
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=bundle, env=env, capture_output=True,
                              text=True, timeout=120)

    probe = run("-c", "import deploy, sys; print(deploy.__file__)\n"
                      "try:\n    import torch\nexcept ImportError as e:\n    print('blocked', e)")
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.splitlines()[0]).resolve().parent == (bundle / "deploy").resolve()
    assert "blocked" in probe.stdout

    bench = run("-m", "deploy", "bench", "model.onnx", "--backend", "ort", "--iters", "10",
                "--out", str(tmp_path / "m.json"))
    assert bench.returncode == 0, bench.stderr
    measurement = json.loads((tmp_path / "m.json").read_text())
    assert measurement["backend"] == "ort" and measurement["latency_ms"]["median"] > 0

    check = run("-m", "deploy", "check", "model.onnx", "--data", "val.npz",
                "--out", str(tmp_path / "c.json"))
    assert check.returncode == 0, check.stderr
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["samples"] == 1000
    assert result["accuracy"] == pytest.approx(torch_accuracy, abs=1e-12)  # same samples, same answer
    assert result["accuracy"] > 0.2  # a trained model, well above chance (0.1)
    assert result["reference"]["top1_agreement"] == 1.0
    # the printed accuracy comes with the value to compare it with (issue 15, item 7)
    expected = f"{100 * result['reference']['reference_accuracy']:.2f}%"
    assert f"accuracy {100 * result['accuracy']:.2f}% (expected {expected}" in check.stdout


def test_check_rejects_data_of_the_wrong_shape(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4, np.int64))
    proc = subprocess.run([sys.executable, "-m", "deploy", "check", "model.onnx", "--data", str(bad)],
                          cwd=bundle, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "the model takes (1, 28, 28)" in proc.stderr


def test_export_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for args in (["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")],
                 ["export", str(junk), "--out", str(tmp_path / "o")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


def test_bundle_needs_a_profile(trained_checkpoint, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["export", str(trained_checkpoint[0]), "--out",
                                      str(tmp_path), "--bundle"])
    assert result.exit_code == 2 and "--profile" in result.output + (result.stderr or "")


def test_export_a_run_reuses_its_export_and_bundles_the_teacher(trained_checkpoint,
                                                                  tmp_path: Path) -> None:
    """A run folder: the best trial of report/summary.json; its existing export is copied byte
    for byte (same sha256 as the run's measurements) and the teacher joins the bundle."""
    from edgekd.ship.export import export_onnx, parity_inputs, student_metadata
    from edgekd.core.checkpoint import load_student
    from edgekd.core.fileio import sha256_file

    checkpoint = trained_checkpoint[0]
    run = tmp_path / "run"
    (run / "trials" / "t07").mkdir(parents=True)
    (run / "trials" / "t07" / "checkpoint.pt").write_bytes(checkpoint.read_bytes())
    (run / "report").mkdir()
    (run / "report" / "summary.json").write_text(json.dumps(
        {"best": {"id": "t07", "checkpoint": "trials/t07/checkpoint.pt"}, "winner": "t07"}))
    model, info = load_student(checkpoint)
    dataset = load_dataset()
    meta = student_metadata(spec=info.spec, normalization=dataset.normalization, model_id="t07")
    export_onnx(model, info.input_shape, run / "export" / "t07.onnx", metadata=meta,
                parity_x=parity_inputs(dataset))
    export_onnx(model, info.input_shape, run / "export" / "teacher.onnx")  # stands in for it
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(out), "--bundle",
                                      "--profile", "jetson-agx-orin-64gb"])
    assert result.exit_code == 0, result.output
    assert sha256_file(out / "t07.onnx") == sha256_file(run / "export" / "t07.onnx")
    assert sha256_file(out / "bundle" / "model.onnx") == sha256_file(run / "export" / "t07.onnx")
    assert (out / "bundle" / "teacher.onnx").is_file()
    readme = (out / "bundle" / "README.md").read_text()
    assert "python3 -m deploy build teacher.onnx --fp16" in readme
    assert f"edgekd report {run} --measurements measurement-model.json" in readme


def test_int8_qdq_from_the_bundle_calibration_keeps_accuracy(bundle: Path, tmp_path: Path) -> None:
    """The INT8 route (explicit Q/DQ, calibrated on calib.npz) checked on the host with ONNX
    Runtime: Q/DQ nodes present, accuracy within 3 points of fp32, >= 90% top-1 agreement."""
    import onnx

    from edgekd_deploy.check import check
    from edgekd_deploy.quantize import quantize_qdq

    qdq = quantize_qdq(bundle / "model.onnx", bundle / "calib.npz", tmp_path / "model.int8.onnx")
    ops = {node.op_type for node in onnx.load(str(qdq)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32 = check(bundle / "model.onnx", bundle / "val.npz")
    int8 = check(qdq, bundle / "val.npz")
    assert int8["precision"] == "int8"
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.03
    assert int8["reference"]["top1_agreement"] >= 0.9


def test_int8_qdq_sits_on_inputs_and_the_host_computes_it_as_written(bundle: Path, tmp_path: Path) -> None:
    """Q/DQ on the inputs of Conv/Gemm only (the logits leave the last Gemm in float), and the host's
    INT8 outputs are the Q/DQ graph's own arithmetic: the same as ONNX Runtime with every graph
    optimisation off, whatever integer kernels this CPU has (u8s8 sums saturate without VNNI)."""
    import onnx
    import onnxruntime as ort

    from edgekd_deploy.check import load_data, normalization_of, prepare_inputs
    from edgekd_deploy.quantize import quantize_qdq
    from edgekd_deploy.runners import OrtRunner

    qdq = quantize_qdq(bundle / "model.onnx", bundle / "calib.npz", tmp_path / "model.int8.onnx")
    graph = onnx.load(str(qdq)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    assert producer[graph.output[0].name] == "Gemm"
    quantized = [producer.get(node.input[0], "input") for node in graph.node if node.op_type == "QuantizeLinear"]
    assert quantized and not set(quantized) & {"Conv", "Gemm", "MatMul", "Add"}, quantized
    with OrtRunner(qdq) as runner:
        x = prepare_inputs(load_data(bundle / "val.npz").x[:200], runner.sample_shape,
                           normalization_of(runner), "val")
        got = np.concatenate([runner.infer({runner.input_name: x[i:i + 1]})[runner.output_names[0]]
                              for i in range(len(x))])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(qdq), options, providers=["CPUExecutionProvider"])
    want = np.concatenate([plain.run(None, {runner.input_name: x[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_int8_profile_bundle_ships_qdq_models(bundle: Path, tmp_path: Path) -> None:
    """An int8 target: the bundle carries Q/DQ copies made on the host, which remember the
    sha256 of the fp32 export (so device figures map back), and the README builds them."""
    import dataclasses

    from edgekd_deploy.onnxmeta import read_onnx_header
    from edgekd.ship.bundle import make_bundle
    from edgekd.core.fileio import sha256_file
    from edgekd.inputs.profiles import load_profile

    orin = load_profile("jetson-agx-orin-64gb")
    int8 = dataclasses.replace(orin, runtime=dataclasses.replace(orin.runtime, precision="int8"))
    out = make_bundle(bundle / "model.onnx", tmp_path / "b8", profile=int8, dataset=load_dataset(),
                      teacher_onnx=bundle / "model.onnx", val_samples=300)
    for name in ("model", "teacher"):
        meta = read_onnx_header(out / f"{name}.int8.onnx").metadata
        assert meta["edgekd.precision"] == "int8"
        assert meta["edgekd.source_sha256"] == sha256_file(out / f"{name}.onnx")
    readme = (out / "README.md").read_text()
    assert "python3 -m deploy build model.int8.onnx --int8 --out model.engine" in readme
    assert "python3 -m deploy build teacher.int8.onnx --int8 --out teacher.engine" in readme
    # the Q/DQ model's host accuracy (ONNX Runtime) is measured next to FP32's (issue 14)
    (check,) = json.loads((out / "manifest.json").read_text())["host_checks"]
    assert check["precision"] == "int8" and check["samples"] == 300
    assert check["fp32_accuracy"] > 0.2 and check["top1_agreement"] >= 0.9
    assert f"int8 ONNX vs fp32 ONNX on 300 validation images: accuracy {100 * check['accuracy']:.2f}%" in readme


def test_int8_bundle_falls_back_to_fp16_beyond_the_tolerance(bundle: Path, tmp_path: Path) -> None:
    """An int8 target whose INT8 model loses more than the tolerance: the bundle builds FP16 by
    default, says why in one line (README, manifest, the export's notes) and keeps the Q/DQ files."""
    import dataclasses

    from edgekd.inputs.profiles import load_profile
    from edgekd.ship.bundle import BundleConfig
    from edgekd.ship.bundle import make_bundle

    orin = load_profile("jetson-agx-orin-64gb")
    int8 = dataclasses.replace(orin, runtime=dataclasses.replace(orin.runtime, precision="int8"))
    strict = BundleConfig(int8_tolerance=-100.0)  # any INT8 model "loses" more than -100 points
    out = make_bundle(bundle / "model.onnx", tmp_path / "b", profile=int8, dataset=load_dataset(),
                      val_samples=200, config=strict)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and "more than --int8-tolerance -100" in manifest["fallback"]
    assert "\n" not in manifest["fallback"]
    assert [c["precision"] for c in manifest["host_checks"]] == ["int8", "fp16"]
    assert (out / "model.int8.onnx").is_file() and (out / "model.fp16.onnx").is_file()
    readme = (out / "README.md").read_text()
    assert manifest["fallback"] in readme
    assert "python3 -m deploy build model.onnx --fp16" in readme and "model.int8.onnx --int8" not in readme
    kept = make_bundle(bundle / "model.onnx", tmp_path / "k", profile=int8, dataset=load_dataset(),
                       val_samples=200, config=BundleConfig(int8_tolerance=100.0))
    assert json.loads((kept / "manifest.json").read_text())["precision"] == "int8"


def test_bundle_commands_use_the_batch_the_model_was_exported_with(trained_checkpoint, tmp_path: Path) -> None:
    """A model exported at batch 4 for a batch-1 profile: the bundle's commands ask for batch 4
    (the static ONNX refuses any other), and the kit's bench runs with them."""
    import json
    import subprocess
    import sys

    checkpoint, _acc, _pred = trained_checkpoint
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--out", str(out), "--bundle",
                                      "--profile", "jetson-orin-nano-8gb", "--batch", "4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["batch"] == 4
    assert "deploy bench model.engine --batch 4 " in (out / "bundle" / "README.md").read_text()
    bench = subprocess.run([sys.executable, "-m", "deploy", "bench", "model.onnx", "--batch", "4",
                            "--iters", "3", "--warmup", "1", "--out", str(tmp_path / "m.json")],
                           cwd=out / "bundle", capture_output=True, text=True)
    assert bench.returncode == 0, bench.stderr
    assert json.loads((tmp_path / "m.json").read_text())["batch"] == 4


def test_export_a_run_given_by_a_relative_path(trained_checkpoint, tmp_path: Path,
                                               monkeypatch) -> None:
    """``edgekd export runs/default --out x`` as the README shows it: a relative run folder
    whose summary names only the winner used to be joined twice (runs/default/runs/default/...)
    (issue 15, item 1)."""
    run = tmp_path / "runs" / "default"
    (run / "trials" / "t07").mkdir(parents=True)
    (run / "trials" / "t07" / "checkpoint.pt").write_bytes(trained_checkpoint[0].read_bytes())
    (run / "report").mkdir()
    (run / "report" / "summary.json").write_text(json.dumps({"winner": "t07"}))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["export", "runs/default", "--out", "x"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "t07.onnx").is_file()


def test_simplify_without_onnxslim_is_refused(trained_checkpoint, tmp_path: Path,
                                              monkeypatch) -> None:
    """--simplify used to do nothing, silently, when onnxslim was missing (issue 15, item 8)."""
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import onnxslim -> ImportError
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(trained_checkpoint[0]), "--out", str(out),
                                      "--simplify"])
    text = result.output  # click mixes stderr into it
    assert result.exit_code == 2, text
    assert "onnxslim" in text and "pip install" in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1 and not out.exists()


def test_dynamic_batch_bundle_benchmarks_at_the_budget_batch(trained_checkpoint,
                                                              tmp_path: Path) -> None:
    """``--dynamic-batch 1,8,32`` for a batch-1 profile: the device commands time batch 1 (the
    budget's), not the optimisation profile's OPT of 8 (issue 15, item 9)."""
    from edgekd.ship.bundle import bundle_batch

    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", str(trained_checkpoint[0]), "--out", str(out),
                                      "--bundle", "--profile", "jetson-orin-nano-8gb",
                                      "--dynamic-batch", "1,8,32"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "bundle" / "manifest.json").read_text())["batch"] == 1
    readme = (out / "bundle" / "README.md").read_text()
    assert "deploy bench model.engine --batch 1 " in readme and "--batch 8" not in readme
    # a budget batch outside the dynamic range falls back to OPT (a batch the engine accepts)
    assert bundle_batch({"min": 4, "opt": 8, "max": 32}, 1) == 8
    assert bundle_batch({"static": 4}, 1) == 4


def test_predict_images_without_torch(bundle: Path, trained_checkpoint, tmp_path: Path) -> None:
    """`edgekd predict MODEL.onnx DIR --json` with torch blocked: the top-1 class of each PNG
    is PyTorch's prediction on the same image, with the class names from the ONNX metadata."""
    from PIL import Image

    _checkpoint, _acc, pred = trained_checkpoint
    dataset = load_dataset()
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(dataset.x_test[i].reshape(28, 28)).save(folder / f"img{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")  # skipped: not an image suffix
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TORCH.replace('"torch", "torchvision", "edgekd"',
                                                                '"torch", "torchvision"'))
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    proc = subprocess.run([sys.executable, "-m", "edgekd", "predict", str(bundle / "model.onnx"),
                           str(folder), "--top", "3", "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["image"]).name for r in records] == [f"img{i:02d}.png" for i in range(12)]
    classes = [str(c) for c in dataset.classes]
    for i, record in enumerate(records):
        top = record["top"]
        assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
        assert top[0]["class"] == classes[pred[i]], i
    plain = CliRunner().invoke(cli, ["predict", str(bundle / "model.onnx"), str(folder / "img00.png"),
                                     "--top", "2"])
    assert plain.exit_code == 0 and plain.output.startswith(f"{folder / 'img00.png'}: ")
    assert plain.output.count("%") == 2
    bad = CliRunner().invoke(cli, ["predict", str(bundle / "model.onnx"), str(folder / "notes.txt")])
    assert bad.exit_code == 2 and "cannot be read" in bad.output and "Traceback" not in bad.output


def test_export_int8_reports_host_accuracy_next_to_fp32(trained_checkpoint, tmp_path: Path) -> None:
    """``export --int8``: a Q/DQ model (per-channel weights) calibrated on training images, its
    ONNX Runtime accuracy printed next to FP32 and recorded in ID.int8.json."""
    import onnx

    from edgekd.core.fileio import read_json, sha256_file

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(trained_checkpoint[0]), "--out", str(out), "--int8"])
    assert result.exit_code == 0, result.output
    [fp32] = [p for p in out.glob("*.onnx") if not p.name.endswith(".int8.onnx")]
    qdq = fp32.with_name(f"{fp32.stem}.int8.onnx")
    ops = {node.op_type for node in onnx.load(str(qdq)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weight_scales = [i for i in onnx.load(str(qdq)).graph.initializer
                     if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1]
    assert weight_scales  # per-channel: one scale per output channel
    record = read_json(fp32.with_name(f"{fp32.stem}.int8.json"))
    check = record["check"]
    assert record["onnx_sha256"] == sha256_file(qdq) and record["source_sha256"] == sha256_file(fp32)
    # FP32 figure: the ONNX on the same 1000 test images PyTorch was scored on (well above chance)
    assert check["samples"] == 1000 and abs(check["fp32_accuracy"] - trained_checkpoint[1]) <= 0.002
    assert check["fp32_accuracy"] > 0.2
    assert abs(check["accuracy"] - check["fp32_accuracy"]) <= 0.03
    assert check["top1_agreement"] >= 0.9
    assert (f"accuracy {100 * check['accuracy']:.2f}% vs fp32 {100 * check['fp32_accuracy']:.2f}%"
            in result.output)


def _measure_data(path: Path, x_test: np.ndarray, y_test: np.ndarray) -> Path:
    np.savez(path, x_train=x_test, y_train=y_test, x_test=x_test, y_test=y_test)
    return path


def test_measure_with_data_prints_accuracy_next_to_latency(bundle: Path, trained_checkpoint,
                                                            tmp_path: Path) -> None:
    """`edgekd measure MODEL.onnx --data DATA` with torch blocked: top-1 accuracy on the test
    split (the 1,000 images PyTorch scored in the fixture) matches PyTorch's, on one line with
    the latency and in the JSON; a model/data mismatch is one line, exit 2, nothing written."""
    _checkpoint, torch_accuracy, _pred = trained_checkpoint
    dataset = load_dataset()
    data = _measure_data(tmp_path / "d.npz", dataset.x_test[:1000], dataset.y_test[:1000])
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TORCH.replace('"torch", "torchvision", "edgekd"',
                                                                '"torch", "torchvision"'))
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "edgekd", "measure", str(bundle / "model.onnx"),
                           "--data", str(data), "--iters", "5", "--warmup", "1", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    acc = record["accuracy"]
    assert acc["samples"] == 1000 and acc["split"] == "test" and acc["classes"] == 10
    assert acc["top1"] == pytest.approx(torch_accuracy, abs=2e-3) and acc["top1"] > 0.15  # above chance (0.1)
    assert record["latency_ms"]["median"] > 0
    from edgekd.core import fmt

    line = [x for x in proc.stdout.splitlines() if "top-1 accuracy" in x]
    assert len(line) == 1 and "ms (median, batch 1)" in line[0], proc.stdout
    assert f"top-1 accuracy {fmt.percent(acc['top1'])} on 1,000 test images" in line[0]

    plain_out = tmp_path / "plain.json"
    plain = CliRunner().invoke(cli, ["measure", str(bundle / "model.onnx"), "--iters", "2",
                                     "--warmup", "0", "--out", str(plain_out)])
    assert plain.exit_code == 0, plain.output
    assert "accuracy" not in json.loads(plain_out.read_text()) and "top-1" not in plain.output

    rgb = _measure_data(tmp_path / "rgb.npz", np.repeat(dataset.x_test[:50], 3, axis=1),
                        dataset.y_test[:50])
    five = _measure_data(tmp_path / "five.npz", dataset.x_test[:50], dataset.y_test[:50] % 5)
    for bad_data, words in ((rgb, "(3, 28, 28)"), (five, "has 10 classes")):
        bad_out = tmp_path / f"{bad_data.stem}.json"
        bad = CliRunner().invoke(cli, ["measure", str(bundle / "model.onnx"), "--data",
                                       str(bad_data), "--out", str(bad_out)])
        assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output
        assert bad.output.startswith("error: ") and len(bad.output.strip().splitlines()) == 1
        assert words in bad.output and not bad_out.exists(), bad.output
