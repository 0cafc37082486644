"""After selection, compress trains the chosen arm again on the training plus the validation
images and ships that model (edgekd.run.final_retrain); ``--no-final-retrain`` ships the arm as
it was trained; a kill during the retraining resumes it.

The run is the shared tiny reference run (tests/compress_runs.py: 2,000 MNIST images, trials
capped at 1,000 training images, a 10% validation split of 200), so the retraining sees
1,000 + 200 images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from compress_runs import cli_env, compress_args, kill_when, reference_run, run_cli, shared_base, summary_of, tiny_inputs
from edgekd.core.fileio import read_json, read_jsonl, sha256_file, write_jsonl
from edgekd.run.final_retrain import RETRAIN_RUNG, RETRAIN_SUFFIX, retrain_config


@pytest.fixture
def run_copy(tmp_path_factory, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory), copy)
    return copy


def _onnx_logits(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _model_logits(checkpoint, x: np.ndarray) -> np.ndarray:
    from edgekd.core.checkpoint import load_student

    model, _ = load_student(checkpoint)
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def test_the_shipped_student_is_the_arm_retrained_on_train_and_validation(tmp_path_factory) -> None:
    from edgekd.inputs.loaders import load_dataset
    from edgekd.ship.export import parity_inputs

    run = reference_run(tmp_path_factory)
    outcome = read_json(run / "outcome.json")
    arm, record = outcome["selected"], outcome["final_retrain"]
    assert arm == outcome["baselines"][outcome["winner_method"]]  # chosen by validation among the arms
    assert outcome["winner"] == record["trial"] == arm + RETRAIN_SUFFIX and record["from"] == arm
    # every labelled image it may use: the 1,000 training images of a trial + the 200 validation images
    arm_result = read_json(run / "trials" / arm / "result.json")
    result = read_json(run / "trials" / record["trial"] / "result.json")
    assert arm_result["train_samples"] == 1000 and record["validation_images"] == 200
    assert result["train_samples"] == record["images"] == 1000 + 200
    # the same method, options, schedule and epochs as the arm; no validation split, so no val acc
    same = {k: v for k, v in arm_result["config"].items() if k not in ("val_fraction", "max_train_samples")}
    assert {k: result["config"][k] for k in same} == same
    assert result["config"]["val_fraction"] == 0.0 and result["val_acc"] is None
    assert result["epochs_done"] == arm_result["epochs_done"]
    line = next(r for r in read_jsonl(run / "halving.jsonl") if r["rung"] == RETRAIN_RUNG)
    assert line["trial"] == record["trial"] and line["result"]["test_acc"] == record["test_acc"]
    # the exported ONNX and the bundle are the retrained weights, not the arm's
    x = parity_inputs(load_dataset(str(tiny_inputs(run.parents[1])[0])), 64)
    exported = _onnx_logits(run / "export" / f"{record['trial']}.onnx", x)
    np.testing.assert_allclose(exported, _model_logits(run / "trials" / record["trial"] / "checkpoint.pt", x),
                               atol=1e-4, rtol=1e-4)
    assert np.abs(exported - _model_logits(run / "trials" / arm / "checkpoint.pt", x)).max() > 1e-3
    bundled = {sha256_file(p) for p in (run / "bundle").rglob("*.onnx")}
    assert sha256_file(run / "export" / f"{record['trial']}.onnx") in bundled
    assert sha256_file(run / "export" / f"{arm}.onnx") not in bundled
    # the report: the headline's accuracy is the retrained model's, one line says so, the arm table has both
    summary = summary_of(run)
    assert summary["winner"] == record["trial"] and summary["final_retrain"]["images"] == 1200
    json.loads((run / "report" / "summary.json").read_text(), parse_constant=pytest.fail)  # no NaN
    assert next(s for s in summary["students"] if s["trial"] == record["trial"])["curve"] == []
    text = (run / "report" / "report.md").read_text()
    assert summary["final_retrain"]["line"] in text
    assert "The shipped student was retrained on train + validation images (1,200 images) after selection" in text
    head = text.split("```")[1]
    assert f"student {record['trial']} " in head and f"acc {100 * record['test_acc']:.2f}%" in head
    ablation = {row["trial"]: row for row in summary["ablation"]}
    assert ablation[arm]["test_acc"] == pytest.approx(arm_result["test_acc"])
    assert ablation[arm]["val_acc"] == pytest.approx(arm_result["val_acc"])
    assert ablation[record["trial"]]["test_acc"] == pytest.approx(result["test_acc"])
    assert ablation[record["trial"]]["retrained"] and ablation[record["trial"]]["val_acc"] is None
    assert f"({arm}; retrained on train + validation as {record['trial']}, the exported and bundled" in text


def test_no_final_retrain_ships_the_selected_arm(run_copy, tmp_path_factory) -> None:
    """``--resume --no-final-retrain`` on a finished run trains nothing and ships the arm itself."""
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    before = {p: p.stat().st_mtime_ns for p in run_copy.glob("trials/*/checkpoint.pt")}
    proc = run_cli(compress_args(data, teacher, run_copy, "--baselines", "--resume", "--no-final-retrain"), base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p: p.stat().st_mtime_ns for p in run_copy.glob("trials/*/checkpoint.pt")} == before
    outcome, summary = read_json(run_copy / "outcome.json"), summary_of(run_copy)
    arm = outcome["selected"]
    assert outcome["winner"] == summary["winner"] == arm and not arm.endswith(RETRAIN_SUFFIX)
    assert outcome["final_retrain"] is None and summary["final_retrain"] is None
    assert all(t["role"] != "retrained" for t in outcome["trials"])
    bundled = {sha256_file(p) for p in (run_copy / "bundle").rglob("*.onnx")}
    assert sha256_file(run_copy / "export" / f"{arm}.onnx") in bundled
    text = (run_copy / "report" / "report.md").read_text()
    assert "retrained on train + validation" not in text and f"student {arm} " in text


def test_a_kill_during_the_retraining_resumes_it(run_copy, tmp_path_factory) -> None:
    """The reference run with its retraining undone: resumed, killed after the retraining's first
    epoch, resumed again: the retraining continues from its checkpoint (no epoch twice) and ends
    with the reference's weights (same seed, CPU)."""
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    reference = reference_run(tmp_path_factory)
    folder = read_json(reference / "outcome.json")["final_retrain"]["trial"]
    shutil.rmtree(run_copy / "trials" / folder)
    write_jsonl(run_copy / "halving.jsonl",
                [r for r in read_jsonl(run_copy / "halving.jsonl") if r["rung"] != RETRAIN_RUNG])
    args = compress_args(data, teacher, run_copy, "--baselines", "--resume")
    metrics = run_copy / "trials" / folder / "metrics.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgekd", *args], cwd=base, env=cli_env(base),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: metrics.exists() and bool(read_jsonl(metrics)), poll_s=0.02)
    assert not (run_copy / "trials" / folder / "result.json").exists()
    done = len(read_jsonl(metrics))
    resumed = run_cli(args, base)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    epochs = [r["epoch"] for r in read_jsonl(metrics)]
    total = read_json(reference / "trials" / folder / "result.json")["epochs_done"]
    assert done >= 1 and epochs == list(range(1, total + 1))
    assert [r["trial"] for r in read_jsonl(run_copy / "halving.jsonl") if r["rung"] == RETRAIN_RUNG] == [folder]
    from edgekd.core.checkpoint import read_checkpoint

    mine = read_checkpoint(run_copy / "trials" / folder / "checkpoint.pt")["state_dict"]
    theirs = read_checkpoint(reference / "trials" / folder / "checkpoint.pt")["state_dict"]
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert summary_of(run_copy)["final_retrain"]["test_acc"] == summary_of(reference)["final_retrain"]["test_acc"]


def test_retrain_config_adds_the_validation_split_and_never_a_given_one() -> None:
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import with_validation
    from edgekd.inputs.loaders import load_dataset

    dataset = load_dataset(None)
    n = len(dataset.y_train)
    arm = TrainConfig(method="kd", epochs=3, max_train_samples=500)
    config, images, n_val = retrain_config(dataset, arm)
    assert n_val == round(0.1 * n) and images == 500 + n_val
    assert (config.val_fraction, config.max_train_samples, config.method, config.epochs) == (0.0, images, "kd", 3)
    config, images, _ = retrain_config(dataset, TrainConfig(method="scratch"))
    assert images == n and config.max_train_samples is None  # every training image
    # --val-data: the trials trained on every training image already; the given images stay for selection
    assert retrain_config(with_validation(dataset, dataset, "same"), arm) is None
    assert retrain_config(dataset, TrainConfig(val_fraction=0.0)) is None
