"""Issue 16, security: no code runs from a data file or from the working directory, and no path
read from a run file leads outside the run. Each payload here creates a marker file when it
runs; the tests assert the marker is never created (and, where it is cheap, that the payload is
real: trusting the file does run it)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.core.checkpoint import save_student
from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.ship.export import export_onnx
from edgekd.ship.export_target import export_target
from edgekd.ship.measure import measure_onnx
from edgekd.report.report import write_report
from edgekd.search.space import Stage, StudentSpec, build
from edgekd.inputs.teachers import load_teacher

SPEC = StudentSpec(family="plain", input=(1, 28, 28), classes=10, stages=(Stage(4, 1, 2),))


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_pt2(path: Path, marker: Path) -> Path:
    """A genuine torch.export archive whose sample inputs are a pickle that runs a payload
    (torch's pt2 loader falls back to ``torch.load(weights_only=False)`` for them)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(10)).eval()
    model(torch.zeros(1, 1, 28, 28))
    clean = path.with_suffix(".clean.pt2")
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 28, 28),)), clean)
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = buffer.getvalue()
            dst.writestr(item, data)
    return path


def test_pt2_teacher_needs_trust_code_and_its_payload_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _evil_pt2(tmp_path / "evil.pt2", marker)
    with pytest.raises(EdgekdError, match="torch.export program.*--trust-code"):
        load_teacher(str(evil))
    assert not marker.exists()
    # through the CLI (compress/train/layers share load_teacher): one line, exit 2, no payload
    result = CliRunner().invoke(cli, ["layers", str(evil)])
    assert result.exit_code == 2 and "--trust-code" in result.output, result.output
    assert "Traceback" not in result.output and not marker.exists()
    # the payload is real: a user who trusts the file runs it
    try:
        load_teacher(str(evil), trust_code=True)
    except EdgekdError:
        pass
    assert marker.exists()


def test_measurement_ignores_a_deploy_folder_and_numpy_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = export_onnx(build(SPEC), SPEC.input, tmp_path / "model" / "m.onnx")
    work = tmp_path / "work"
    (work / "deploy").mkdir(parents=True)
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write(__name__)\n"
    for name in ("deploy/__init__.py", "deploy/__main__.py", "numpy.py", "onnxruntime.py"):
        (work / name).write_text(payload)
    monkeypatch.chdir(work)
    monkeypatch.setenv("PYTHONPATH", str(work))  # -I ignores it, as it does the cwd
    m = measure_onnx(Path("../model/m.onnx"), warmup=1, iters=3, out=Path("m.json"))
    assert not marker.exists()
    assert m["model"] == "m.onnx" and m["latency_ms"]["median"] > 0
    assert json.loads((work / "m.json").read_text())["sha256"] == m["sha256"]


def _fake_run(root: Path, best: dict) -> Path:
    """A run folder with a real student checkpoint and a summary.json naming ``best``."""
    save_student(root / "trials" / "t1" / "checkpoint.pt", build(SPEC), spec=SPEC,
                 classes=[str(i) for i in range(10)], input_shape=SPEC.input,
                 normalization={"mean": [0.1307], "std": [0.3081]}, method="scratch", metrics={})
    (root / "report").mkdir(parents=True)
    (root / "report" / "summary.json").write_text(json.dumps({"best": best}))
    return root


def test_export_refuses_ids_and_checkpoints_outside_the_run(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "a" / "run", {"id": "../../../X", "checkpoint": "trials/t1/checkpoint.pt"})
    out = tmp_path / "a" / "out"
    with pytest.raises(EdgekdError, match="summary.json.*not a plain id"):
        export_target(run, out)
    assert not list(tmp_path.rglob("X.onnx")) and not out.exists()

    outside = tmp_path / "elsewhere" / "checkpoint.pt"
    outside.parent.mkdir()
    outside.write_bytes((run / "trials" / "t1" / "checkpoint.pt").read_bytes())
    for checkpoint in ("../../elsewhere/checkpoint.pt", str(outside)):
        (run / "report" / "summary.json").write_text(
            json.dumps({"best": {"id": "t1", "checkpoint": checkpoint}}))
        with pytest.raises(EdgekdError, match="points outside the run folder"):
            export_target(run, out)
        assert not out.exists()
    # the same run with a sound summary exports
    (run / "report" / "summary.json").write_text(json.dumps({"best": {"id": "t1"}}))
    assert export_target(run, out).onnx == out / "t1.onnx"


def test_report_on_a_folder_that_is_not_a_run_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"not really")
    measurement = tmp_path / "m.json"
    measurement.write_text(json.dumps({"sha256": "ab" * 32, "latency_ms": {"median": 1.0}}))
    with pytest.raises(EdgekdError, match="holds no run.json"):
        write_report(folder, [measurement])
    result = CliRunner().invoke(cli, ["report", str(folder), "--measurements", str(measurement)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert sorted(p.name for p in folder.rglob("*")) == ["cat.png"]
