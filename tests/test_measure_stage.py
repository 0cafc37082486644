"""compress's host measurement: the teacher and the students timed together in rounds (one
``deploy bench`` session), one Measurement file each, kept while they still match their ONNX."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from edgekd.core.fileio import read_json  # noqa: E402
from edgekd.core.runfolder import RunDir  # noqa: E402
from edgekd.run.config import CompressConfig  # noqa: E402
from edgekd.run.ship_stages import measure_stage  # noqa: E402
from edgekd.search.space import Stage, StudentSpec, build  # noqa: E402
from edgekd.ship.export import export_onnx  # noqa: E402


def _run_with_exports(root: Path) -> RunDir:
    run = RunDir(root)
    run.export.mkdir(parents=True)
    for name, width in (("teacher", 16), ("s1", 4), ("s2", 8)):
        spec = StudentSpec(family="plain", input=(1, 28, 28), classes=10, stages=(Stage(width, 2, 1),))
        torch.manual_seed(0)
        export_onnx(build(spec), spec.input, run.export_onnx(name))
    return run


def test_teacher_and_students_are_measured_together_and_kept(tmp_path: Path) -> None:
    run = _run_with_exports(tmp_path / "run")
    config = CompressConfig(measure_seconds=0.09, measure_rounds=3, measure_iters=30, measure_warmup=2)
    inputs = SimpleNamespace(profile=SimpleNamespace(budget=SimpleNamespace(batch=1)))
    lines: list[str] = []
    names = ["teacher", "s1", "s2"]
    measure_stage(config, inputs, run, names, lines.append)
    records = [read_json(run.host_measurement(name)) for name in names]
    assert len({r["protocol"]["session"] for r in records}) == 1  # one session: interleaved
    assert all(r["protocol"]["rounds"] == 3 and r["protocol"]["threads"] == 1 for r in records)
    assert all(len(r["round_ms"]) == 3 and r["iterations"] >= 30 for r in records)
    assert [line.split(":")[0] for line in lines] == ["measured teacher", "measured s1", "measured s2"]
    before = [run.host_measurement(n).stat().st_mtime_ns for n in names]
    measure_stage(config, inputs, run, names, lines.append)  # all still match: nothing re-measured
    assert [run.host_measurement(n).stat().st_mtime_ns for n in names] == before
    run.host_measurement("s2").unlink()  # one missing: all measured again, in one new session
    measure_stage(config, inputs, run, names, lines.append)
    again = [read_json(run.host_measurement(name)) for name in names]
    assert len({r["protocol"]["session"] for r in again}) == 1
    assert again[0]["protocol"]["session"] != records[0]["protocol"]["session"]
