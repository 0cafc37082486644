"""kill -9 in the middle of training, then ``--resume``: no finished trial is trained again and
the summary equals the uninterrupted reference run's (same seed, CPU).

The comparison uses :func:`compress_runs.deterministic_view`, which leaves out what depends on
the clock or the machine's load: latencies, FPS, speed-ups, seconds, timestamps and the
folder name. Everything else (candidates, halving survivors, every trial's epochs, validation
and test accuracy, the winner, the ablation) must be identical.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from compress_runs import (cli_env, compress_args, deterministic_view, kill_when, reference_run, run_cli, shared_base,
                           summary_of, tiny_inputs)
from edgekd.core.fileio import read_json, read_jsonl


def _comparable(summary: dict) -> dict:
    view = deterministic_view(summary)
    view["run"].pop("folder")
    return view


def _trained_lines(stderr: str) -> set[tuple[int, str]]:
    """(rung, trial) pairs a compress process says it trained (not resumed)."""
    found = set()
    for line in stderr.splitlines():
        match = re.match(r"rung (\d+)/\d+ .*\| trained (\S+):", line)
        if match:
            found.add((int(match.group(1)) - 1, match.group(2)))
    return found


def test_sigkill_mid_training_then_resume(tmp_path_factory) -> None:
    reference = reference_run(tmp_path_factory)
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    out = base / "runs" / "killed"
    args = compress_args(data, teacher, out, "--baselines")
    proc = subprocess.Popen([sys.executable, "-m", "edgekd", *args], cwd=base, env=cli_env(base),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait until one trial has finished and another one is training (has written an epoch)
    def a_trial_is_running() -> bool:
        records = read_jsonl(out / "halving.jsonl")
        started = [p.parent.name for p in (out / "trials").glob("*/metrics.jsonl")]
        return bool(records and set(started) - {r["trial"] for r in records})

    kill_when(proc, a_trial_is_running)
    assert proc.returncode == -signal.SIGKILL
    finished = {(r["rung"], r["trial"]) for r in read_jsonl(out / "halving.jsonl")}
    assert finished and not (out / "report").exists()

    resumed = run_cli(args + ["--resume"], base)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trained_again = _trained_lines(resumed.stderr) & finished
    assert not trained_again, f"finished trials trained again: {trained_again}"
    records = [(r["rung"], r["trial"]) for r in read_jsonl(out / "halving.jsonl")]
    assert len(records) == len(set(records)), "a (rung, trial) was recorded twice"
    assert "resumed" in resumed.stdout

    assert _comparable(summary_of(out)) == _comparable(summary_of(reference))


def test_rerun_without_out_numbers_a_new_folder(tmp_path, monkeypatch) -> None:
    """Rerunning the README's first command used to fail ("already holds this run"); like
    Ultralytics it now writes runs/default2, and --resume continues the latest (issue 15.2)."""
    from edgekd.run.config import CompressConfig
    from edgekd.run.rundir import run_folder
    from edgekd.run.rundir import open_run

    monkeypatch.chdir(tmp_path)
    config = CompressConfig()
    assert run_folder(config) == Path("runs/default")
    open_run(run_folder(config), {"seed": 0}, resume=False)
    assert run_folder(config) == Path("runs/default2")
    open_run(run_folder(config), {"seed": 0}, resume=False)
    assert run_folder(config) == Path("runs/default3")
    assert run_folder(CompressConfig(resume=True)) == Path("runs/default2")
    named = CompressConfig(data="photos", profile="t4")  # the other default names too
    assert run_folder(named) == Path("runs/t4-photos-builtin")
    assert run_folder(CompressConfig(out=Path("runs/default"))) == Path("runs/default")


def test_run_json_fed_back_reproduces_the_run(tmp_path_factory) -> None:
    """`edgekd compress --config RUN/run.json` runs the same job again (issue 15: run.json's
    config feeds back): every option is stored, and the new run's deterministic summary equals
    the first one's."""
    from edgekd.core.fileio import read_json

    reference = reference_run(tmp_path_factory)
    base = shared_base(tmp_path_factory)
    options = read_json(reference / "run.json")["options"]
    assert options["baselines"] is True and options["candidates"] == 3 and "out" not in options
    again = base / "runs" / "again"
    proc = run_cli(["compress", "--config", str(reference / "run.json"), "--out", str(again)], base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _comparable(summary_of(again)) == _comparable(summary_of(reference))
    assert read_json(again / "run.json")["options"] == options


def test_resume_with_baselines_trains_only_the_missing_arms(tmp_path_factory) -> None:
    """``--baselines`` is not part of a run's identity: ``--resume --baselines`` on a finished run
    without them keeps every trained trial and adds only the kd and scratch arms on the winner's
    architecture (how cifar_compress.md got seeds 1 and 2's baselines)."""
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    out = base / "runs" / "late-baselines"
    first = run_cli(compress_args(data, teacher, out), base)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not summary_of(out).get("ablation")
    trained = {p.parent.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/checkpoint.pt")}
    final = next(name for name in trained if name.endswith("-final"))

    again = run_cli(compress_args(data, teacher, out, "--baselines", "--resume"), base)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/checkpoint.pt")}
    assert {name: after[name] for name in trained} == trained  # nothing retrained
    arch = final.removesuffix("-final")
    selected = read_json(out / "outcome.json")["selected"]  # retrained on train + validation when new
    retrained = set() if selected == final else {f"{selected}-all"}
    assert set(after) - set(trained) == {f"{arch}-kd", f"{arch}-scratch"} | retrained
    methods = {row["method"] for row in summary_of(out)["ablation"]}
    assert methods == {"fitnet", "kd", "scratch"}


def test_a_rerun_says_which_folder_and_how_to_continue_the_previous(tmp_path, monkeypatch) -> None:
    """A second 'edgekd compress' writes runs/default2: its first line says so, why, and how to
    continue runs/default instead."""
    from edgekd.run.config import CompressConfig
    from edgekd.run.rundir import run_folder
    from edgekd.run.rundir import run_folder_line
    from edgekd.run.rundir import open_run

    monkeypatch.chdir(tmp_path)
    config = CompressConfig()
    assert run_folder_line(config, run_folder(config)) == "run folder: runs/default (the default folder)"
    open_run(run_folder(config), {"seed": 0}, resume=False)
    assert run_folder_line(config, run_folder(config)) == (
        "run folder: runs/default2 (a new run: runs/default already holds one; to continue that "
        "one instead, stop this (Ctrl-C) and add --resume --out runs/default to the command)")
    open_run(run_folder(config), {"seed": 0}, resume=False)
    assert "runs/default2 already holds one" in run_folder_line(config, run_folder(config))
    resumed = CompressConfig(resume=True)
    assert run_folder_line(resumed, run_folder(resumed)) == (
        "run folder: runs/default2 (--resume without --out: the latest default folder)")
    assert run_folder_line(CompressConfig(out=Path("x")), Path("x")) == "run folder: x (--out)"
