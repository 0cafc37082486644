"""Hostile files and odd states (issue 26): every file edgekd or the deploy kit reads goes through
one bounded JSON/TOML reader; paths inside a run stay inside it, symlinks included; options that
run code or choose where to write come from the command line only; options are checked by type
and range before anything is written; every command that writes into a run takes its lock.

Each case builds its own hostile file and expects exit status 2, one ``error:`` line, no
traceback, and nothing written outside the run or ``--out``. The cases that need a finished run
share one tiny run made once for this module (:func:`finished_run`, 1 epoch); a case that
changes it works on a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgekd_deploy import files as kit_files
from edgekd_deploy import onnxmeta
from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import JsonFileError, read_json, read_jsonl
from edgekd.core.runfolder import RUN, RunFileError, read_doc
from edgekd.ship.predict import class_names

DEEP_JSON = "[" * 5000 + "]" * 5000
DEEP_TOML = "epochs = " + "[" * 3000 + "1" + "]" * 3000 + "\n"


def one_line(result: Result, *needles: str) -> str:
    """The single ``error:`` line of a refused CLI call (exit 2, no traceback)."""
    output = result.output
    assert result.exit_code == 2, (result.exit_code, output, result.exception)
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert all(n in errors[0] for n in needles), errors[0]
    return errors[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to show nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


# ----------------------------------------------------------------------------- bounded reader
def test_bounded_reader_refuses_deep_and_huge_documents(tmp_path, monkeypatch) -> None:
    for loads, text in ((kit_files.loads_json, DEEP_JSON), (kit_files.loads_toml, DEEP_TOML)):
        with pytest.raises(kit_files.DocumentError, match="nested deeper than 64"):
            loads(text)
    # a document nested just past the limit without recursing (parsed, then measured)
    with pytest.raises(kit_files.DocumentError, match="nested deeper"):
        kit_files.loads_json("[" * 65 + "]" * 65)
    assert kit_files.loads_json("[" * 64 + "]" * 64) is not None
    monkeypatch.setattr(kit_files, "MAX_BYTES", 1000)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(JsonFileError, match="larger than"):
        read_json(big)


def test_every_json_reader_turns_a_deep_file_into_one_line(tmp_path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP_JSON)
    with pytest.raises(JsonFileError, match="deep.json: JSON nested deeper"):
        read_json(deep)
    with pytest.raises(RunFileError, match="not readable JSON"):
        read_doc(RUN, deep)
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"ok": 1}\n' + DEEP_JSON + "\n")
    assert read_jsonl(lines) == [{"ok": 1}]  # the deep line is skipped like a torn one
    # ONNX metadata values: class names and the kit's JSON values
    assert class_names({"edgekd.classes": DEEP_JSON}, 3) == ["0", "1", "2"]
    assert onnxmeta.json_value({"edgekd.batch": DEEP_JSON}, "edgekd.batch", {}) == {}
    with pytest.raises(Exception, match="edgekd.normalization is not"):
        onnxmeta.normalization_of({"edgekd.normalization": DEEP_JSON})


@pytest.mark.parametrize("name, text", [("deep.toml", DEEP_TOML), ("deep.json", DEEP_JSON),
                                        ("run.json", '{"options": ' + DEEP_JSON + "}")])
def test_compress_config_nested_too_deep_is_one_line(name, text, tmp_path) -> None:
    config = tmp_path / name
    config.write_text(text)
    out = tmp_path / "runs" / "x"
    result = CliRunner().invoke(cli, ["compress", "--config", str(config), "--out", str(out)])
    one_line(result, "nested deeper")
    assert not out.exists()


def test_profile_and_calibration_files_nested_too_deep_are_one_line(tmp_path) -> None:
    profile = tmp_path / "deep.toml"
    profile.write_text('name = "x"\n' + DEEP_TOML.replace("epochs", "kind"))
    one_line(CliRunner().invoke(cli, ["profiles", "show", str(profile)]), "nested deeper")
    layer_profile = tmp_path / "deep.profile.json"
    layer_profile.write_text(DEEP_JSON)
    table = tmp_path / "table.json"
    one_line(CliRunner().invoke(cli, ["calibrate", "--from", str(layer_profile), "--table", str(table)]),
             "deep.profile.json")
    assert not table.exists()


# ----------------------------------------------------------------------------- calibration
def test_calibrations_with_negative_or_non_finite_times_are_refused(tmp_path) -> None:
    from edgekd.search.kernel_model import KernelTable
    from edgekd.search.latency import Calibration, feature_names

    table = KernelTable(profile="host-cpu", precision="fp32", kernels={"conv3x3": 0.01},
                        fallback={"1": {"conv": [1e-9, 1e-9, 0.001]}}, constants={"1": 0.05})
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    table.save(good)
    assert KernelTable.load(good).kernels == {"conv3x3": 0.01}
    for edit in ({"kernels": {"conv3x3": -0.5}}, {"constants": {"1": float("nan")}},
                 {"fallback": {"1": {"conv": [1e-9, -1.0, 0.0]}}}):
        bad.write_text(json.dumps({**table.to_dict(), **edit}))
        with pytest.raises(EdgekdError, match="negative or non-finite"):
            KernelTable.load(bad)
    coefficients = {name: 0.5 for name in feature_names()}
    calibration = Calibration(profile="host-cpu", precision="fp32",
                              hardware={"fp32_tflops": 1.0, "fp16_tflops": 1.0, "int8_tops": 1.0,
                                        "memory_bandwidth_gbs": 10.0, "dla_cores": 0,
                                        "layer_overhead_us": 1.0},
                              fits={"all": coefficients})
    calibration.save(good)
    assert Calibration.load(good).fits["all"] == coefficients
    bad.write_text(json.dumps({**calibration.to_dict(),
                               "fits": {"all": {**coefficients, "conv.compute": -2.0}}}))
    with pytest.raises(EdgekdError, match="negative.*conv.compute = -2.0"):
        Calibration.load(bad)
    out = tmp_path / "search"
    one_line(CliRunner().invoke(cli, ["search", "--calibration", str(bad), "--out", str(out)]),
             "negative")


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("args, needle", [
    (["--eta", "0"], "--eta 0: give a whole number, --eta 2 or more"),
    (["--eta", "1"], "--eta 1: give a whole number, --eta 2 or more"),
    (["--measure-iters", "0"], "--measure-iters 0: give a whole number, --measure-iters 1 or more"),
    (["--candidates", "0"], "--candidates 0"),
    (["--latency-ms", "nan"], "--latency-ms nan: give a finite number above 0"),
    (["--latency-ms", "-0.25"], "--latency-ms -0.25"),
    (["--hint-epochs", "0"], "hint_epochs"),
    (["--teacher-views", "1000000000", "--augment", "shift"], "GiB"),
])
def test_bad_options_are_refused_before_anything_is_written(args, needle, tmp_path) -> None:
    out = tmp_path / "runs" / "x"
    one_line(CliRunner().invoke(cli, ["compress", "--out", str(out), *args]), needle)
    assert not out.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, needle", [
    ("latency-ms = true\n", "give a number, not true/false"),
    ("candidates = 2.7\n", "give a whole number"),
    ("eta = 0\n", "--eta 0"),
    ("epochs = [3]\n", "single value"),
    ("trust-code = true\n", "remove it and give --trust-code on the command line"),
    ('out = "elsewhere"\n', "remove it and give --out on the command line"),
])
def test_config_files_cannot_enable_code_choose_the_output_or_bend_types(text, needle, tmp_path,
                                                                         monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "job.toml"
    config.write_text(text)
    one_line(CliRunner().invoke(cli, ["compress", "--config", str(config), "--out", "runs/x"]), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


def test_a_run_json_edited_to_write_elsewhere_is_refused(tmp_path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"format": "edgekd.run/1", "identity": {},
                                    "options": {"epochs": 2, "out": "../../ESCAPED"}}))
    one_line(CliRunner().invoke(cli, ["compress", "--config", str(run_json)]), "key 'out' is refused")
    assert not list(tmp_path.parent.glob("ESCAPED")) and not list(work.iterdir())


def test_single_class_data_names_the_class_count_not_the_learning_rate(tmp_path) -> None:
    import numpy as np
    import torch

    from edgekd.distill.losses import dkd_terms
    from edgekd.inputs.loaders import load_dataset

    with pytest.raises(EdgekdError, match="at least 2 classes, but the data has 1"):
        dkd_terms(torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), 4.0)
    full = load_dataset(None)
    one = tmp_path / "one.npz"
    np.savez(one, x_train=full.x_train[:300], y_train=np.zeros(300, dtype=np.int64),
             x_test=full.x_test[:50], y_test=np.zeros(50, dtype=np.int64))
    out = tmp_path / "run"
    one_line(CliRunner().invoke(cli, ["compress", "--data", str(one), "--method", "dkd",
                                      "--out", str(out)]), "the data has 1 class")
    assert not out.exists()


# ----------------------------------------------------------------------------- writes
def test_a_full_disk_while_saving_a_checkpoint_is_an_oserror_and_keeps_the_last_one(
        tmp_path, monkeypatch) -> None:
    import errno
    import os

    import torch

    from edgekd.core.errors import disk_error
    from edgekd.core.fileio import atomic_torch_save

    path = tmp_path / "checkpoint.pt"
    atomic_torch_save(path, {"weights": torch.ones(1000)})
    good = path.read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError) as caught:
        atomic_torch_save(path, {"weights": torch.zeros(5000)})
    monkeypatch.undo()
    message = str(disk_error(caught.value))
    assert "No space left" in message and "free some space" in message and "\n" not in message
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_file_where_a_folder_belongs_is_one_line(tmp_path) -> None:
    import subprocess
    import sys

    from edgekd.search.space import Stage, StudentSpec, build
    from edgekd.ship.export import export_onnx

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    one_line(CliRunner().invoke(cli, ["search", "--out", str(blocker / "sub")]), "blocker",
             "a file where a folder belongs")
    spec = StudentSpec(family="plain", input=(1, 28, 28), classes=10, stages=(Stage(4, 1, 2),))
    onnx = export_onnx(build(spec), spec.input, tmp_path / "m.onnx")
    proc = subprocess.run([sys.executable, "-m", "deploy", "bench", str(onnx), "--iters", "3",
                           "--warmup", "1", "--out", str(blocker / "m.json")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot write") and "blocker" in proc.stderr
    assert blocker.read_text() == "a file, not a folder"


# ----------------------------------------------------------------------------- a finished run
@pytest.fixture()
def run_copy(tmp_path_factory, tmp_path) -> Path:
    """A copy of the module's finished tiny run (compress_runs.reference_run: made once per
    test session and shared with the resume, report and integrity tests)."""
    import shutil

    from compress_runs import reference_run

    copy = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory), copy, symlinks=True)
    return copy


def _compress_resume(run: Path, tmp_path_factory) -> Result:
    from compress_runs import compress_args, shared_base, tiny_inputs

    data, teacher = tiny_inputs(shared_base(tmp_path_factory))
    return CliRunner().invoke(cli, compress_args(data, teacher, run, "--baselines", "--resume"))


def test_hostile_run_trees_are_refused_and_the_run_stays_resumable(run_copy, tmp_path,
                                                                   tmp_path_factory) -> None:
    from compress_runs import compress_args, reference_run, run_cli, shared_base, tiny_inputs

    run = run_copy
    assert not (reference_run(tmp_path_factory) / ".lock").exists()  # a finished run keeps none
    before = tree(run)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")

    (run / ".lock").symlink_to(victim)  # a lock that would truncate a file outside the run
    one_line(CliRunner().invoke(cli, ["report", str(run)]), ".lock is a symbolic link")
    one_line(_compress_resume(run, tmp_path_factory), ".lock is a symbolic link")
    (run / ".lock").unlink()

    (run / "report").rename(run / "report.kept")  # report/ linked to a folder outside
    (run / "report").symlink_to(outside, target_is_directory=True)
    one_line(CliRunner().invoke(cli, ["report", str(run)]), "leads outside the run")
    (run / "report").unlink()
    (run / "report").write_text("a file where the report folder belongs")
    one_line(CliRunner().invoke(cli, ["report", str(run)]), "is a file where the run has a folder")
    (run / "report").unlink()
    (run / "report.kept").rename(run / "report")

    (run / "export").rename(run / "export.kept")  # export/ as a file, then --resume
    (run / "export").write_text("not a folder")
    one_line(_compress_resume(run, tmp_path_factory), "export is a file where the run has a folder")
    (run / "export").unlink()
    (run / "export.kept").rename(run / "export")

    outcome = json.loads((run / "outcome.json").read_text())
    (run / "outcome.json").write_text(json.dumps({**outcome, "winner": "../../ESC"}))
    one_line(CliRunner().invoke(cli, ["report", str(run)]), "none of its trials")
    (run / "outcome.json").write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")

    assert victim.read_text() == "precious" and sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert tree(run) == {**before, "outcome.json": (run / "outcome.json").read_bytes()}
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    proc = run_cli(compress_args(data, teacher, run, "--baselines", "--resume"), base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| trained" not in proc.stderr and not (run / ".lock").exists()


def test_report_measurements_take_the_lock_and_any_name_but_no_bad_latency(run_copy,
                                                                           tmp_path) -> None:
    from edgekd.core.runfolder import acquire

    run = run_copy
    host = json.loads(sorted((run / "measurements").glob("host-*.json"))[0].read_text())
    named = tmp_path / "mesure été 1.json"  # any file name the user has
    named.write_text(json.dumps(host))
    measurements = sorted(p.name for p in (run / "measurements").iterdir())

    held = acquire(run)  # another process working on the run
    try:
        one_line(CliRunner().invoke(cli, ["report", str(run), "--measurements", str(named)]),
                 "in use by another edgekd process", str(__import__("os").getpid()))
    finally:
        held.release()
    assert sorted(p.name for p in (run / "measurements").iterdir()) == measurements

    for latency, needle in (({**host["latency_ms"], "median": float("nan")}, "median nan"),
                            ({**host["latency_ms"], "median": -0.25}, "median -0.25"),
                            ({**host["latency_ms"], "p99": True}, "p99 True")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**host, "latency_ms": latency}))
        one_line(CliRunner().invoke(cli, ["report", str(run), "--measurements", str(bad)]), needle)
    deep = tmp_path / "deep.json"
    deep.write_text('{"sha256": "x", "latency_ms": ' + DEEP_JSON + "}")
    one_line(CliRunner().invoke(cli, ["report", str(run), "--measurements", str(deep)]), "deep.json")
    assert sorted(p.name for p in (run / "measurements").iterdir()) == measurements

    merged = CliRunner().invoke(cli, ["report", str(run), "--measurements", str(named)])
    assert merged.exit_code == 0, merged.output
    stored = sorted(set(p.name for p in (run / "measurements").iterdir()) - set(measurements))
    assert stored == ["target-mesure__t__1.json"], stored
    assert not (run / ".lock").exists()


def test_export_finds_the_recorded_data_and_leaves_a_read_only_run_alone(run_copy, tmp_path,
                                                                         monkeypatch) -> None:
    from edgekd.ship import export_target

    run = run_copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the data is found by the path compress recorded, not by name
    before = tree(run)
    # a read-only run (chmod does not stop root, who runs some CI: the check is stood in for)
    monkeypatch.setattr(export_target, "writable", lambda folder: False)
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(tmp_path / "x"), "--int8"])
    assert result.exit_code == 0, result.output
    assert "not recorded in the run" in result.output
    assert tree(run) == before and not (run / ".lock").exists()
    assert sorted(p.suffix for p in (tmp_path / "x").glob("*.onnx")) == [".onnx", ".onnx"]


def test_the_parity_check_adapts_to_a_small_data_set_and_says_so(tmp_path) -> None:
    import numpy as np

    from edgekd.inputs.loaders import load_dataset
    from edgekd.run.preflight import check_parity_sample

    full = load_dataset(None)
    small = tmp_path / "small.npz"
    np.savez(small, x_train=full.x_train[:100], y_train=full.y_train[:100],
             x_test=full.x_test[:28], y_test=full.y_test[:28])
    dataset = load_dataset(str(small))
    count, line = check_parity_sample(dataset, None)
    assert count == 128 and line == "ONNX parity check on all 128 images of the data (fewer than the default 256)"
    assert check_parity_sample(full, None) == (256, None)
    with pytest.raises(EdgekdError, match="--parity-samples 128"):
        check_parity_sample(dataset, 256)  # a sample the user asked for is not cut short
