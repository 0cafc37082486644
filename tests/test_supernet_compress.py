"""``edgekd compress --strategy supernet`` end to end on tiny real data: one supernet trained
with KD, its front saved as inherited students, the best fine-tuned, exported, measured,
reported and bundled; killed during training, ``--resume`` finishes without starting over. On
the Ray executor (one task per supernet epoch, the fine-tune a Ray trial) the same happens
with the same numbers: both run every step on one torch thread."""

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


def _killed_then_resumed(base: Path, out: Path, *extra: str) -> tuple[int, subprocess.CompletedProcess]:
    """Start the run, SIGKILL it once the supernet has saved its first epoch, then resume."""
    args = compress_args(base / "tiny.npz", base / "teacher.pt", out, *SUPERNET, *extra)
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


@pytest.fixture(scope="module")
def local_run(base: Path) -> tuple[Path, int, subprocess.CompletedProcess]:
    """The local run, killed after its first supernet epoch and resumed."""
    out = base / "supernet-run"
    return (out, *_killed_then_resumed(base, out))


def test_supernet_strategy_runs_end_to_end_and_resumes_after_a_kill(base: Path, local_run) -> None:
    out, epochs_at_kill, done = local_run
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


def test_supernet_strategy_on_ray_matches_local_and_resumes_after_a_kill(base: Path, local_run) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'edgekd[ray]'")
    local = local_run[0]
    out = base / "supernet-ray"
    epochs_at_kill, done = _killed_then_resumed(base, out, "--executor", "ray", "--ray-cpus", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert epochs_at_kill >= 1
    assert "supernet epoch 3/3" in done.stderr  # the driver prints every epoch a worker trained

    def checkpoint(run: Path) -> dict:
        return torch.load(run / "supernet" / "checkpoint.pt", map_location="cpu", weights_only=True)

    remote_state, local_state = checkpoint(out)["state"], checkpoint(local)["state"]
    assert remote_state["epochs_done"] == 3
    assert remote_state["history"] == local_state["history"]  # every epoch's loss, to the bit
    for name, tensor in checkpoint(local)["weights"].items():
        assert torch.equal(checkpoint(out)["weights"][name], tensor), name

    def evaluated(run: Path) -> list[tuple[str, float]]:
        return [(r["id"], r["val_acc"]) for r in map(json.loads, (run / "supernet" / "subnets.jsonl")
                                                     .read_text().splitlines())]

    assert evaluated(out) == evaluated(local)
    remote, reference = (json.loads((run / "outcome.json").read_text()) for run in (out, local))
    assert remote["supernet"]["front"] == reference["supernet"]["front"]
    assert remote["winner"] == reference["winner"] == f"{reference['supernet']['chosen']}-tuned"
    tuned = [json.loads((run / "trials" / reference["winner"] / "result.json").read_text())
             for run in (out, local)]
    assert tuned[0]["epochs_done"] == 1  # fine-tuned as a Ray trial, written by the driver
    assert (tuned[0]["val_acc"], tuned[0]["test_acc"]) == (tuned[1]["val_acc"], tuned[1]["test_acc"])
    assert (out / "bundle" / "model.onnx").is_file()
