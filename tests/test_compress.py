"""``edgekd compress`` end to end on tiny real data, and its one-line refusals of bad input.

The reference run (tests/compress_runs.py) is the real command in a subprocess: search on the
host-cpu profile with a 500K-MAC cap, successive halving over 3 shortlisted students (2 then 3
epochs, the default method fitnet), baselines (scratch, kd), export with parity, host measurements, report and
bundle. This file checks every artifact it leaves.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from compress_runs import compress_args, reference_run, shared_base, tiny_inputs
from edgekd.cli.cli import cli
from edgekd.core.fileio import read_json, read_jsonl, sha256_file
from edgekd.distill.config import TrainConfig
from edgekd.run.config import DEFAULT_METHOD, CompressConfig
from edgekd.search.config import SearchConfig
from edgekd.search.space import StudentSpec


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return reference_run(tmp_path_factory)


def test_candidates_and_run_json(run) -> None:
    manifest = read_json(run / "run.json")
    assert manifest["command"][:2] == ["edgekd", "compress"]
    assert {"python", "torch", "onnx", "onnxruntime", "edgekd"} <= set(manifest["versions"])
    identity = manifest["identity"]
    assert len(identity["teacher"]["fingerprint"]) == 64 and len(identity["data"]["fingerprint"]) == 64
    assert identity["budget"]["macs"] == 500_000 and identity["profile"]["name"] == "host-cpu"
    candidates = read_jsonl(run / "candidates.jsonl")  # the students within the budget
    assert len(candidates) >= 3
    for row in candidates:
        assert StudentSpec.from_dict(row["spec"]).id == row["id"]
        assert row["latency"]["label"] in ("predicted", "calibrated", "measured")
        assert row["macs"] <= 500_000 and row["latency"]["ms"] <= identity["budget"]["latency_ms"]
    search = read_json(run / "outcome.json")
    assert {c["id"] for c in candidates if c["shortlisted"]} == set(search["shortlist"])
    # the plan (rungs x trials x epochs) is stored, and printed before the first trial trains
    plan = manifest["plan"]
    assert [(r["keep"], r["epochs"]) for r in plan["rungs"]] == [(3, 2), (1, 3)]
    # the configs of the run, each read back by its dataclass (issue 10.4)
    configs = manifest["configs"]
    compress = CompressConfig.from_dict(configs["compress"])
    assert compress.identity_config() == identity["config"] and compress.baselines
    assert TrainConfig.from_dict(configs["train"]).epochs == compress.epochs == plan["rungs"][-1]["epochs"]
    assert TrainConfig.from_dict(configs["train"]).method == compress.method
    search_config = SearchConfig.from_dict(configs["search"])
    assert search_config.shortlist == compress.candidates and search_config.max_macs == 500_000
    assert plan["epochs"] == search["epochs_spent"]
    log = (run.parents[1] / "stderr.txt").read_text().splitlines()
    assert log[log.index(plan["text"]) + 1].startswith("rung 1/2")
    # export and measurement say what they do, model by model, in a log too (issue 15.3)
    exported = [line for line in log if line.startswith("exported ")]
    measured = [line for line in log if line.startswith("measured ")]
    assert len(exported) == len(search["trials"]) and len(measured) == len(search["trials"]) + 1
    assert log.index(exported[-1]) < log.index(measured[0]) < log.index("writing the report")
    assert plan["text"].startswith("plan: 2 rungs: 3 trials x 2 ep -> 1 x 3 ep (from scratch)")


def test_run_files_are_readable_as_the_umask_allows(run) -> None:
    """Reports, summaries, bundle files and checkpoints are written atomically; they must not
    all end up 0600 (mkstemp's mode) whatever the umask (issue 15, item 4)."""
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    readable = 0o044 & ~umask
    files = [p for p in run.rglob("*") if p.is_file()]
    for kind in ("report/report.html", "report/summary.json", "bundle/", "checkpoint.pt", "run.json"):
        assert any(kind in p.as_posix() for p in files), kind
    private = [p.relative_to(run).as_posix() for p in files
               if stat.S_IMODE(p.stat().st_mode) & 0o044 != readable]
    assert not private, private[:5]


def test_trials_follow_the_halving_plan(run) -> None:
    search = read_json(run / "outcome.json")
    assert len(search["shortlist"]) == 3
    assert [(r["keep"], r["epochs"]) for r in search["rungs"]] == [(3, 2), (1, 3)]
    records = read_jsonl(run / "halving.jsonl")
    pairs = [(r["rung"], r["trial"]) for r in records]
    assert len(pairs) == len(set(pairs)), "a (rung, trial) was trained twice"
    spent = 0
    final = search["finalists"][0]
    assert final.endswith("-final") and search["finalists"] == [final]
    for trial in [*search["shortlist"], final]:
        folder = run / "trials" / trial
        for name in ("spec.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
            assert (folder / name).is_file(), f"{trial}/{name} missing"
        result = read_json(folder / "result.json")
        # the final trial's hint epoch (DEFAULT_METHOD: fitnet) comes on top of its 3 KD epochs (issue 12)
        assert result.get("hint_epochs_done", 0) == (1 if trial == final else 0)
        assert result["epochs_done"] - result.get("hint_epochs_done", 0) == (3 if trial == final else 2)
        # the selection rungs train kd (a hint stage does not fit a short rung), the final the default
        assert result["method"] == (DEFAULT_METHOD if trial == final else "kd")
        spent += result["epochs_done"] - result.get("hint_epochs_done", 0)
    # rung 1: 3 students x 2 epochs; final: the best one trained from scratch for 3 epochs
    assert spent == search["epochs_spent"] == 3 * 2 + 3
    assert search["epochs_full"] == 3 * 3
    # the final training's metrics start at epoch 1: it did not continue the rung-1 checkpoint
    assert [r["epoch"] for r in read_jsonl(run / "trials" / final / "metrics.jsonl")] == [1, 2, 3, 4]
    # the finalist is the best of rung 1 by validation accuracy
    rung0 = {r["trial"]: r["result"]["val_acc"] for r in records if r["rung"] == 0}
    assert rung0[final.removesuffix("-final")] == max(rung0.values())
    # per-rung depths are reported
    assert [len(d) for d in search["rung_depths"]] == [3, 1]
    # with --baselines the winner is the best by validation among the finalist's methods
    val = {m: read_json(run / "trials" / t / "result.json")["val_acc"] for m, t in search["baselines"].items()}
    assert search["baselines"][DEFAULT_METHOD] == final and set(search["baselines"]) == {DEFAULT_METHOD, "kd", "scratch"}
    assert search["selected"] == search["baselines"][search["winner_method"]]
    assert search["winner"] == search["final_retrain"]["trial"] == search["selected"] + "-all"  # what ships
    # ... with the arms that learn from the teacher handicapped by its validation-over-test gap
    # when it has seen the validation images (edgekd.run.selection)
    bias = search["teacher_bias"]
    assert {"val", "test", "gap", "se", "biased"} <= set(bias) and bias["n_test"] == 500
    handicap = bias["gap"] if bias["biased"] else 0.0
    scores = {m: v - (0.0 if m == "scratch" else handicap) for m, v in val.items()}
    assert search["arm_scores"] == pytest.approx(scores)
    assert scores[search["winner_method"]] == max(scores.values())
    text = (run / "report" / "report.md").read_text()
    assert f"Winner by validation accuracy among these: {search['winner_method']} (" in text


def test_onnx_exports_pass_parity_and_are_measured(run) -> None:
    from edgekd.core.checkpoint import load_student
    from edgekd.inputs.loaders import load_dataset
    from edgekd.ship.export import check_parity, parity_inputs, read_metadata

    search = read_json(run / "outcome.json")
    names = ["teacher"] + [t["trial"] for t in search["trials"]]
    for name in names:
        onnx = run / "export" / f"{name}.onnx"
        assert onnx.is_file()
        assert read_metadata(onnx)["edgekd.parity"] != "not checked"
        measurement = read_json(run / "measurements" / f"host-{name}.json")
        assert measurement["sha256"] == sha256_file(onnx)
        assert measurement["latency_ms"]["median"] > 0
    # parity again, independently, on the winner
    data = load_dataset(str(tiny_inputs(run.parents[1])[0]))
    model, _ = load_student(run / "trials" / search["winner"] / "checkpoint.pt")
    assert check_parity(model, run / "export" / f"{search['winner']}.onnx", parity_inputs(data)).passed


def test_summary_report_and_bundle(run) -> None:
    summary = read_json(run / "report" / "summary.json")
    search = read_json(run / "outcome.json")
    assert summary["winner"] == search["winner"]
    students = {s["trial"]: s for s in summary["students"]}
    assert set(students) == {t["trial"] for t in search["trials"]}
    assert 0.5 < summary["teacher"]["test_acc"] <= 1.0
    for s in students.values():
        assert s["latency"]["host"]["label"] == "measured"
        assert s["latency"]["target"]["label"] == "measured"  # host-cpu: the target is the host
        spread = s["speedup_spread"]["host"]
        if spread:  # timed together in rounds: the median of the per-round ratios, within their range
            assert spread["low"] <= s["speedup"]["host"] == spread["median"] <= spread["high"]
        else:
            assert s["speedup"]["host"] == pytest.approx(
                summary["teacher"]["latency"]["host"]["ms"] / s["latency"]["host"]["ms"], rel=0.01)
    # the default hint method is the ablation's fitnet arm (issue 12)
    assert {a["method"] for a in summary["ablation"]} == {DEFAULT_METHOD, "kd", "scratch"}
    assert [a["trial"] for a in summary["ablation"] if a.get("retrained")] == [summary["winner"]]
    assert any(s["pareto"] for s in students.values())

    text = (run / "report" / "report.md").read_text()
    assert "| id | family | method | depth | MACs | params | size MB |" in text
    assert "## Ablation" in text
    for trial in students:
        assert trial in text
    html = (run / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for name in ("accuracy_vs_latency", "accuracy_vs_macs", "training_curves"):
        assert (run / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

    bundle = run / "bundle"
    assert bundle.is_dir()
    onnx_in_bundle = list(bundle.rglob("*.onnx"))
    assert onnx_in_bundle
    winner_sha = sha256_file(run / "export" / f"{search['winner']}.onnx")
    assert winner_sha in {sha256_file(p) for p in onnx_in_bundle}

    stdout = (run.parents[1] / "stdout.txt").read_text()
    assert "report:" in stdout and "speed-up" in stdout


# ----------------------------------------------------------------------------- bad input
def _fails(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = shared_base(tmp_path_factory)
    return (base, *tiny_inputs(base))


def test_unknown_profile(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    _fails(compress_args(data, teacher, tmp_path / "o", "--profile", "no-such-device"),
           "no-such-device")


def test_missing_teacher_and_data(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    _fails(compress_args(data, tmp_path / "absent.pt", tmp_path / "o"), "absent.pt")
    _fails(compress_args(tmp_path / "absent.npz", teacher, tmp_path / "o"), "absent.npz")


def test_teacher_classes_differ_from_data(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    with np.load(data) as archive:
        arrays = dict(archive)
    keep_train, keep_test = arrays["y_train"] < 5, arrays["y_test"] < 5
    five = tmp_path / "five.npz"
    np.savez(five, x_train=arrays["x_train"][keep_train], y_train=arrays["y_train"][keep_train],
             x_test=arrays["x_test"][keep_test], y_test=arrays["y_test"][keep_test],
             classes=arrays["classes"][:5])
    _fails(compress_args(five, teacher, tmp_path / "o"), "class")


def test_budget_no_candidate_meets(inputs, tmp_path) -> None:
    _, data, teacher = inputs
    line = _fails(compress_args(data, teacher, tmp_path / "o", "--max-macs", "2K"), "smallest")
    assert "MACs" in line
    assert not (tmp_path / "o" / "trials").exists()


def test_out_holding_a_different_run(inputs, run, tmp_path) -> None:
    _, data, teacher = inputs
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    _fails(compress_args(data, teacher, copy, "--seed", "1"), "different run", "seed")
    _fails(compress_args(data, teacher, copy, "--max-macs", "900K", "--resume"),
           "cannot resume", "budget.macs")
    _fails(compress_args(data, teacher, copy), "already holds this run", "--resume")
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    _fails(compress_args(data, teacher, other), "holds no edgekd run")


def test_bad_schedule_fails_before_writing_the_run(inputs, tmp_path) -> None:
    """A bad --eta/--epochs/--candidates is refused before the run folder is written, so the
    corrected command can use the same --out (no "holds a different run")."""
    _, data, teacher = inputs
    out = tmp_path / "o"
    _fails(compress_args(data, teacher, out, "--eta", "1"), "--eta 2")
    _fails(compress_args(data, teacher, out, "--candidates", "0"), "--candidates")
    _fails(compress_args(data, teacher, out, "--epochs", "1", "--hint-epochs", "1"), "--epochs 2")
    _fails(compress_args(data, teacher, out, "--method", "kd", "--baselines", "--epochs", "1",
                         "--hint-epochs", "1"), "--epochs 2")  # the fitnet baseline needs it too
    assert not (out / "run.json").exists()


def test_default_method_is_fitnet_and_the_fitnet_arm_of_the_ablation() -> None:
    """Issue 12: compress defaults to the method that held up at every CIFAR-10 schedule (fitnet);
    with --baselines a hint method stands in for fitnet, other methods still get the fitnet arm."""
    from edgekd.run.pipeline import ablation_methods, run_methods

    assert DEFAULT_METHOD == "fitnet" and CompressConfig().method == DEFAULT_METHOD
    assert ablation_methods(CompressConfig(baselines=True)) == ("scratch", "kd")
    assert run_methods(CompressConfig(baselines=True)) == {"fitnet", "kd", "scratch"}
    assert ablation_methods(CompressConfig(method="fitnet-dkd", baselines=True)) == ("scratch", "kd")
    assert ablation_methods(CompressConfig(method="kd", baselines=True)) == ("scratch", "fitnet")
    assert ablation_methods(CompressConfig(method="dkd", baselines=True)) == ("scratch", "kd", "fitnet")
    result = CliRunner().invoke(cli, ["compress", "--help"])
    words = " ".join(result.output.split())
    # the why and its figures live in docs/methods.md (`edgekd methods`), not in --help
    assert "[default: fitnet]" in words and "edgekd methods" in words and "60.5" not in words


def test_compress_hint_options_reach_every_trial_and_the_identity() -> None:
    from edgekd.run.config import train_config

    plain = CompressConfig(hint_mode="single", hint_beta=1.0, hint_lr=5e-3)  # TrainConfig's defaults
    assert plain.hint_settings() == {} and "hint_mode" not in plain.identity_config()
    assert set(train_config(plain, "fitnet-dkd", 3)).isdisjoint({"hint_mode", "hint_beta", "hint_lr"})
    joint = CompressConfig(hint_mode="joint", hint_beta=0.5, hint_patience=4, augment="none", teacher_views=0)
    values = train_config(joint, "fitnet-dkd", 3)
    assert (values["hint_mode"], values["hint_beta"], values["hint_patience"]) == ("joint", 0.5, 4)
    assert joint.identity_config()["hint_mode"] == "joint"
    from edgekd.distill import TrainConfig

    TrainConfig(**values)  # a valid trial config
