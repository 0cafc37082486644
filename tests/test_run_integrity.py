"""Issue 16, run-folder integrity: a damaged run file is repaired from what is still sound or
refused in one line that names it; two processes never work on one run; temp files left by a
kill are cleaned; appends after a torn line start on a fresh line.

The fuzz-style test damages the files of one finished tiny run (shared with test_resume.py
and the report tests: :func:`compress_runs.reference_run`, copied per case) in four ways
(truncate to half, empty, ``[]``, delete) and resumes it. The CI version damages one file of
every kind per way and resumes once per way (a different trial for each trial file, so each
repair is checked on its own trial); the exhaustive version (every file of the run, each way,
one resume each: about 250 resumes) is marked ``slow``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from compress_runs import (compress_args, deterministic_view, reference_run, run_cli, shared_base, summary_of,
                           tiny_inputs)
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import append_jsonl, read_jsonl
from edgekd.run.rundir import open_run

MODES = ("truncate", "empty", "list", "delete")


def damage(path: Path, mode: str) -> None:
    if mode == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif mode == "empty":
        path.write_bytes(b"")
    elif mode == "list":
        path.write_text("[]\n")
    else:
        path.unlink()


def _comparable(summary: dict) -> dict:
    view = deterministic_view(summary)
    view["run"].pop("folder")
    for student in view["students"]:
        student.pop("curve", None)  # a damaged metrics.jsonl loses its curve points
    return view


def _trained(stderr: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"\| trained (\S+):", stderr)}


def _checkpoints(run: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (run / "trials").glob("*/checkpoint.pt")}


def _resume(run: Path, base: Path) -> subprocess.CompletedProcess:
    data, teacher = tiny_inputs(base)
    return run_cli(compress_args(data, teacher, run, "--baselines", "--resume"), base)


def _check_outcome(proc: subprocess.CompletedProcess, run: Path, reference: Path,
                   damaged: list[Path], before: dict[str, int]) -> None:
    """A finished run equal to the reference, or one line naming a damaged file; never a
    traceback; no trial retrained unless a file of its own folder was damaged."""
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(lines) == 1, output
        assert any(p.name in lines[0] for p in damaged), output
        return
    assert _comparable(summary_of(run)) == _comparable(summary_of(reference))
    hurt = {p.parent.name for p in damaged if p.parent.parent.name == "trials"}
    trained = _trained(proc.stderr)
    assert not {t for t in trained if t not in hurt and f"{t}-final" not in hurt}, (trained, hurt)
    after = _checkpoints(run)
    rewritten = {name for name, mtime in before.items() if after.get(name) != mtime}
    assert rewritten <= hurt, (rewritten, hurt)
    leftovers = [p for p in run.rglob("*.tmp")]
    assert not leftovers, leftovers


def _files(run: Path) -> list[Path]:
    skip = ("bundle/deploy/",)
    return sorted(p for p in run.rglob("*") if p.is_file()
                  and not any(part in str(p.relative_to(run)) for part in skip))


def _one_of_each_kind(run: Path) -> list[Path]:
    """One file of every kind, trial files from different trials (so repairs do not mask
    each other). run.json is left out: without it nothing can be repaired (it is refused;
    see test_damaged_run_json_is_refused_in_one_line)."""
    trials = sorted(p for p in (run / "trials").iterdir())
    picks = [run / "candidates.jsonl", run / "halving.jsonl", run / "outcome.json",
             run / "teacher.json", run / "report" / "summary.json", run / "bundle" / "manifest.json"]
    for folder, name in zip(trials, ("result.json", "checkpoint.pt", "metrics.jsonl", "spec.json")):
        picks.append(folder / name)
    exports = sorted((run / "export").glob("*.json"))
    picks += [exports[0], exports[1].with_suffix(".onnx"),
              sorted((run / "measurements").glob("host-*.json"))[2]]
    return [p for p in picks if p.exists()]


@pytest.fixture()
def run_copy(tmp_path_factory, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory), copy)
    return copy


@pytest.mark.parametrize("mode", MODES)
def test_resume_repairs_every_kind_of_damaged_file(mode, run_copy, tmp_path_factory) -> None:
    base = shared_base(tmp_path_factory)
    reference = reference_run(tmp_path_factory)
    picks = _one_of_each_kind(run_copy)
    before = _checkpoints(run_copy)
    for path in picks:
        damage(path, mode)
    proc = _resume(run_copy, base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_outcome(proc, run_copy, reference, picks, before)


@pytest.mark.parametrize("mode", ("list", "delete"))  # truncate/empty: the slow test
def test_damaged_run_json_is_refused_in_one_line(mode, run_copy, tmp_path_factory) -> None:
    damage(run_copy / "run.json", mode)
    proc = _resume(run_copy, shared_base(tmp_path_factory))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "run.json" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_resume_after_damaging_each_file_each_way(tmp_path_factory, tmp_path) -> None:
    base = shared_base(tmp_path_factory)
    reference = reference_run(tmp_path_factory)
    for relative in [p.relative_to(reference) for p in _files(reference)]:
        for mode in MODES:
            copy = tmp_path / "run"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(reference, copy)
            before = _checkpoints(copy)
            damage(copy / relative, mode)
            proc = _resume(copy, base)
            if relative.name == "run.json":
                assert proc.returncode == 2, proc.stderr
            _check_outcome(proc, copy, reference, [copy / relative], before)


# ----------------------------------------------------------------------------- lock, temp files
def test_second_process_on_a_run_is_refused_naming_the_pid(run_copy, tmp_path_factory) -> None:
    with open(run_copy / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("424242")
        handle.flush()
        proc = _resume(run_copy, shared_base(tmp_path_factory))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "in use" in last and "424242" in last, last


def test_temp_files_of_a_kill_are_cleaned_and_a_first_write_kill_is_no_obstacle(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".run.json.abc123.tmp").write_text('{"form')  # killed in the very first write
    identity = {"teacher": {"fingerprint": "t"}, "data": {"fingerprint": "d"}, "profile": {},
                "budget": {}, "seed": 0, "config": {}}
    run, resumed = open_run(out, identity, resume=False, command=["edgekd"])
    assert not resumed and not list(out.rglob("*.tmp"))
    (out / "trials" / "x").mkdir(parents=True)
    (out / "trials" / "x" / ".result.json.zz.tmp").write_text("{")
    run.release()
    run, resumed = open_run(out, identity, resume=True, command=["edgekd"])
    assert resumed and not list(out.rglob("*.tmp"))
    with pytest.raises(EdgekdError, match=f"in use by another edgekd process \\(pid {os.getpid()}\\)"):
        open_run(out, identity, resume=True, command=["edgekd"])
    run.release()


def test_append_after_a_torn_tail_starts_a_fresh_line(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"a": 1})
    with open(log, "a") as handle:
        handle.write('{"torn": ')  # killed mid-line
    append_jsonl(log, {"b": 2})
    append_jsonl(log, {"c": 3})
    assert read_jsonl(log) == [{"a": 1}, {"b": 2}, {"c": 3}]



def test_directory_is_fsynced_after_each_atomic_replace(tmp_path, monkeypatch) -> None:
    import edgekd.core.fileio as fileio

    synced: list[Path] = []
    monkeypatch.setattr(fileio, "fsync_dir", lambda folder: synced.append(Path(folder)))
    fileio.atomic_write_json(tmp_path / "a" / "x.json", {"x": 1})
    fileio.append_jsonl(tmp_path / "b" / "log.jsonl", {"x": 1})  # a new file's entry too
    assert synced == [tmp_path / "a", tmp_path / "b"]


def test_a_kill_between_metrics_line_and_checkpoint_loses_no_curve_point(tmp_path, monkeypatch,
                                                                        one_thread) -> None:
    import edgekd.distill.checkpointing as trainer  # saves the checkpoint
    from edgekd.inputs.data import make_dataset
    from edgekd.inputs.loaders import load_dataset
    from edgekd.distill import TrainConfig, train_student
    from edgekd.search.space import Stage, StudentSpec

    full = load_dataset()
    data = make_dataset(name="tiny", source="test", classes=full.classes,
                        x_train=full.x_train[:128], y_train=full.y_train[:128],
                        x_test=full.x_test[:32], y_test=full.y_test[:32])
    spec = StudentSpec(family="plain", input=(1, 28, 28), classes=10, stages=(Stage(4, 1, 2),))
    config = TrainConfig(method="scratch", epochs=2, batch_size=32)
    saves = {"n": 0}
    real_save = trainer.atomic_torch_save

    def killed_at_second_save(path, obj):
        saves["n"] += 1
        if saves["n"] == 2:  # epoch 2's checkpoint: "kill -9" right before it is written
            raise KeyboardInterrupt
        return real_save(path, obj)

    monkeypatch.setattr(trainer, "atomic_torch_save", killed_at_second_save)
    with pytest.raises(KeyboardInterrupt):
        train_student(spec, [], data, config, tmp_path / "t", progress=False)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "t" / "metrics.jsonl")] == [1, 2]
    monkeypatch.setattr(trainer, "atomic_torch_save", real_save)
    result = train_student(spec, [], data, config, tmp_path / "t", progress=False)
    assert result.epochs_done == 2
    assert [r["epoch"] for r in read_jsonl(tmp_path / "t" / "metrics.jsonl")] == [1, 2]
