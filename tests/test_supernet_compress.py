"""``edgekd compress --strategy supernet`` end to end on tiny real data: one supernet trained
with KD, its front saved as inherited students, the best fine-tuned, exported, measured,
reported and bundled; killed during training, ``--resume`` finishes without starting over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compress_runs import cli_env, compress_args, run_cli, shared_base

SUPERNET = ["--strategy", "supernet"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_base(tmp_path_factory)


def _killed_then_resumed(base: Path, out: Path) -> tuple[int, subprocess.CompletedProcess]:
    """Start the run, SIGKILL it once the supernet has saved its first epoch, then resume."""
    args = compress_args(base / "tiny.npz", base / "teacher.pt", out, *SUPERNET)
    process = subprocess.Popen([sys.executable, "-m", "edgekd", *args], cwd=base, env=cli_env(base),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "supernet" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state"]["epochs_done"]
    return saved, run_cli([*args, "--resume"], base, timeout=600)


def test_supernet_strategy_runs_end_to_end_and_resumes_after_a_kill(base: Path) -> None:
    out = base / "supernet-run"
    epochs_at_kill, done = _killed_then_resumed(base, out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert epochs_at_kill >= 1
    checkpoint = torch.load(out / "supernet" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["state"]["epochs_done"] == 3  # the run's --epochs, continued, not restarted
    assert [r["epoch"] for r in checkpoint["state"]["history"]] == [1, 2, 3]

    outcome = json.loads((out / "outcome.json").read_text())
    record = outcome["supernet"]
    roles = [t["role"] for t in outcome["trials"]]
    assert roles.count("inherited") >= 2 and roles[-1] == "final"
    assert outcome["winner"] == f"{record['chosen']}-tuned"
    candidates = {json.loads(line)["id"]: json.loads(line) for line in
                  (out / "candidates.jsonl").read_text().splitlines()}
    for trial in outcome["trials"]:  # every reported student is costed and within the MAC budget
        assert candidates[trial["candidate"]]["macs"] <= 500_000
        assert (out / "export" / f"{trial['trial']}.onnx").is_file()
    tuned = json.loads((out / "trials" / outcome["winner"] / "result.json").read_text())
    assert tuned["epochs_done"] == 1 and tuned["method"] == "kd"

    summary = json.loads((out / "report" / "summary.json").read_text())
    assert {s["method"] for s in summary["students"]} == {"supernet", "kd"}
    assert "weight-sharing supernet" in (out / "report" / "report.md").read_text()
    assert (out / "bundle" / "model.onnx").is_file()

    stamp = (out / "supernet" / "checkpoint.pt").stat().st_mtime_ns
    subnets = (out / "supernet" / "subnets.jsonl").read_text()
    again = run_cli(compress_args(base / "tiny.npz", base / "teacher.pt", out, *SUPERNET, "--resume"), base)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "supernet" / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert (out / "supernet" / "subnets.jsonl").read_text() == subnets
    assert json.loads((out / "outcome.json").read_text())["winner"] == outcome["winner"]


def test_supernet_strategy_refuses_the_ray_executor_before_training(base: Path) -> None:
    out = base / "supernet-ray"
    found = run_cli(compress_args(base / "tiny.npz", base / "teacher.pt", out, *SUPERNET,
                                  "--executor", "ray"), base)
    assert found.returncode == 2
    assert "--strategy supernet" in found.stderr and "Traceback" not in found.stderr
    assert not out.exists()  # refused before the run folder is made
