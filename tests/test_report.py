"""The report: Pareto front, deterministic view, and ``edgekd report RUN --measurements``
rebuilding everything from the run folder with a latency brought back from a device."""

from __future__ import annotations

import html
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from compress_runs import deterministic_view, reference_run, shared_base, summary_of
from edgekd.cli.cli import cli
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import read_json
from edgekd.report.report import build_summary, pareto_front


def test_pareto_front() -> None:
    points = [("a", 1.0, 0.90), ("b", 2.0, 0.95), ("c", 2.5, 0.93), ("d", 0.5, 0.80),
              ("e", 1.0, 0.85), ("f", None, 0.99), ("g", 2.0, 0.95)]
    # c is beaten by b; e by a; f has no latency; b and g tie (neither dominates)
    assert pareto_front(points) == ["a", "b", "d", "g"]


def test_deterministic_view_drops_only_volatile_values() -> None:
    summary = {"run": {"folder": "x", "command": ["edgekd"], "seed": 0},
               "students": [{"trial": "t", "test_acc": 0.9, "latency": {"host": {"ms": 1.0}},
                             "fps": {"host": 1000.0}, "speedup": {"host": 2.0}}],
               "timing": {"training_s": 3.0}, "winner": "t"}
    view = deterministic_view(summary)
    assert view == {"run": {"folder": "x", "seed": 0}, "students": [{"trial": "t", "test_acc": 0.9}],
                    "winner": "t"}


@pytest.fixture()
def run_copy(tmp_path_factory, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reference_run(tmp_path_factory), copy)
    return copy


def test_report_rebuilds_the_same_summary(run_copy) -> None:
    before = summary_of(run_copy)
    before["run"]["folder"] = run_copy.name  # the copy's folder name differs from the original
    shutil.rmtree(run_copy / "report")
    result = CliRunner().invoke(cli, ["report", str(run_copy)])
    assert result.exit_code == 0, result.output + result.stderr
    after = summary_of(run_copy)
    assert after == before  # same files in, same summary out (latencies included)
    for name in ("report.md", "report.html", "accuracy_vs_latency.png", "accuracy_vs_macs.png",
                 "training_curves.png"):
        assert (run_copy / "report" / name).is_file()


def test_report_merges_device_measurements(run_copy, tmp_path) -> None:
    summary = summary_of(run_copy)
    winner = summary["winner"]
    device = []
    for name, factor in ((winner, 3.0), ("teacher", 6.0)):
        record = read_json(run_copy / "measurements" / f"host-{name}.json")
        record["device"] = "Jetson test board"
        record["latency_ms"] = {k: v * factor for k, v in record["latency_ms"].items()}
        record.pop("round_ms", None)  # a device measurement of one model, not the host's rounds
        path = tmp_path / f"{name}-orin.json"
        path.write_text(json.dumps(record))
        device.append(path)
    result = CliRunner().invoke(cli, ["report", str(run_copy), "-m", str(device[0]),
                                      "--measurements", str(device[1])])
    assert result.exit_code == 0, result.output + result.stderr
    merged = summary_of(run_copy)
    student = next(s for s in merged["students"] if s["trial"] == winner)
    # the host figure before the merge (on a host-cpu run the merged one replaces it)
    host_ms = next(s for s in summary["students"] if s["trial"] == winner)["latency"]["host"]["ms"]
    assert student["latency"]["target"] == {**student["latency"]["target"], "label": "measured",
                                            "device": "Jetson test board"}
    # both sides are rounded to 6 significant digits in the summary (issue 15.7)
    assert student["latency"]["target"]["ms"] == pytest.approx(3 * host_ms, rel=1e-5)
    teacher_target = merged["teacher"]["latency"]["target"]["ms"]
    # the speed-up is rounded to 2 decimals: compare within that rounding, not relatively
    assert student["speedup"]["target"] == pytest.approx(teacher_target / (3 * host_ms), abs=0.0051)
    assert sorted(p.name for p in (run_copy / "measurements").glob("target-*.json")) == sorted(
        f"target-{p.name}" for p in device)
    assert "Jetson" not in json.dumps(summary)  # only the merged run has the device


def test_report_bad_input_is_one_line(run_copy, tmp_path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    for args, needle in ((["report", str(tmp_path / "nowhere")], "does not exist"),
                         (["report", str(run_copy), "-m", str(bogus)], "Measurement"),
                         (["report", str(run_copy), "-m", str(tmp_path / "absent.json")], "absent.json")):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(EdgekdError, match="no run.json"):
        build_summary(tmp_path)


def test_html_and_markdown_say_the_same(tmp_path_factory) -> None:
    """report.html used to lack the Search section and the data/teacher line (issue 15.7)."""
    report = reference_run(tmp_path_factory) / "report"
    md, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    headings = re.findall(r"^## (.+)$", md, re.M)
    assert "Search" in headings
    for heading in headings:
        assert f"<h2>{html.escape(heading)}</h2>" in page, heading
    inputs = next(line for line in md.splitlines() if "Data: " in line and "teacher: " in line)
    assert html.escape(inputs) in page
    rungs = md[md.index("| rung | trials |"):].split("\n\n")[0]
    assert rungs.count("\n") >= 2 and "<th>rung</th>" in page
    for term in ("size MB: ", "Pareto: ", "FPS = 1000 x batch / latency"):  # the columns explained
        assert term in md and term in page


def test_summary_ids_are_unique_and_numbers_read_alike(tmp_path_factory) -> None:
    from edgekd.core import fmt

    run = reference_run(tmp_path_factory)
    summary = summary_of(run)
    ids = [s["id"] for s in summary["students"]]
    assert len(ids) == len(set(ids)), ids  # the final and its search trial shared an id
    assert all(s["candidate"] in s["id"] for s in summary["students"])

    def floats(value):
        if isinstance(value, float):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from floats(v)
        elif isinstance(value, list):
            for v in value:
                yield from floats(v)
    noisy = [f for f in floats(summary) if f != fmt.significant(f, 7)]
    assert not noisy, noisy[:5]  # e.g. float32's 0.39899998903274536
    for s in summary["students"]:
        fps = s["fps"]["host"]
        assert fps == fmt.significant(fps), fps  # no more digits than the latency has
    # one accuracy format in the headline, the table and the terminal
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    md = (run / "report" / "report.md").read_text()
    assert f"acc {fmt.percent(winner['test_acc'])}" in md
    assert f"| {fmt.percent(winner['test_acc'])} |" in md
    # the gap the user trades for the speed-up, in points, next to the student's accuracy
    points = round(100 * (summary["teacher"]["test_acc"] - winner["test_acc"]), 2)
    side = "below" if points > 0 else "above"
    gap = f"({abs(points):.2f} points {side} the teacher)" if points else "(the teacher's accuracy)"
    assert f"acc {fmt.percent(winner['test_acc'])} {gap}" in md
    stdout = (run.parents[1] / "stdout.txt").read_text()
    assert f"acc {fmt.percent(winner['test_acc'])}" in stdout


def test_report_refuses_a_measurement_of_another_target(run_copy, tmp_path) -> None:
    """Issue 14.7: backend, precision and batch are checked against the run's profile; a
    mismatch is refused in one line and nothing is copied; --force merges it labelled."""
    winner = summary_of(run_copy)["winner"]
    record = read_json(run_copy / "measurements" / f"host-{winner}.json")
    record.update(backend="trt", precision="fp16", device="NVIDIA Jetson Orin Nano (Orin)")
    record["latency_ms"] = {k: v / 10 for k, v in record["latency_ms"].items()}
    path = tmp_path / "orin.json"
    path.write_text(json.dumps(record))
    result = CliRunner().invoke(cli, ["report", str(run_copy), "-m", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: orin.json was not measured on this run's target (host-cpu")
    assert "backend trt (the profile's is ort)" in result.stderr and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list((run_copy / "measurements").glob("target-*.json"))

    result = CliRunner().invoke(cli, ["report", str(run_copy), "-m", str(path), "--force"])
    assert result.exit_code == 0, result.output + result.stderr
    line = next(l for l in result.output.splitlines() if l.startswith("merged orin.json"))
    assert f"report table row '{winner}'" in line and "[forced: backend trt" in line
    student = next(s for s in summary_of(run_copy)["students"] if s["trial"] == winner)
    assert student["latency"]["target"]["label"] == "measured, forced"
    assert student["latency"]["target"]["forced"][0].startswith("backend trt")
    assert student["latency"]["target"]["ms"] == pytest.approx(record["latency_ms"]["median"], rel=1e-3)


def test_measurement_target_checks_device_backend_precision_batch() -> None:
    from edgekd.report.merge import Target

    nano = Target("jetson-orin-nano-8gb", "jetson", "trt", "fp16", 1)
    # the case: an x86 ONNX Runtime FP32 figure offered as an Orin Nano one
    x86 = {"device": "AMD EPYC 7B13", "backend": "ort", "precision": "fp32", "batch": 1}
    problems = nano.mismatches(x86)
    assert [p.split()[0] for p in problems] == ["backend", "precision", "device"]
    good = {"device": "NVIDIA Jetson Orin Nano Developer Kit (Orin)", "backend": "trt",
            "precision": "fp16", "batch": 1}
    assert nano.mismatches(good) == []
    assert nano.mismatches({**good, "batch": 8}) == ["batch 8 (the profile's is 1)"]
    xavier = Target("jetson-xavier-nx", "jetson", "trt", "fp16", 1)
    assert xavier.mismatches(good) == ["device 'NVIDIA Jetson Orin Nano Developer Kit (Orin)' "
                                       "is not a jetson-xavier-nx"]
    h100 = Target("h100", "gpu", "trt", "fp16", 64)
    assert h100.mismatches({**good, "device": "NVIDIA H100 80GB HBM3", "batch": 64}) == []


def test_report_shows_the_int8_row_next_to_fp32(run_copy, tmp_path, tmp_path_factory) -> None:
    """After ``export RUN --int8`` the report lists the winner's FP32 row and its INT8 row, with
    the INT8 ONNX Runtime accuracy next to the FP32 ONNX's; a stale INT8 copy is not shown."""
    winner = summary_of(run_copy)["winner"]
    data = shared_base(tmp_path_factory) / "tiny.npz"  # the run's data (recorded by name)
    result = CliRunner().invoke(cli, ["export", str(run_copy), "--out", str(tmp_path / "x"), "--int8",
                                      "--data", str(data)])
    assert result.exit_code == 0, result.output + result.stderr
    assert (run_copy / "export" / f"{winner}.int8.onnx").is_file()
    result = CliRunner().invoke(cli, ["report", str(run_copy)])
    assert result.exit_code == 0, result.output + result.stderr
    summary = summary_of(run_copy)
    [student] = [s for s in summary["students"] if s["trial"] == winner]
    int8 = student["int8"]
    assert 0.0 <= int8["accuracy"] <= 1.0 and abs(int8["accuracy"] - int8["fp32_onnx_accuracy"]) <= 0.1
    assert int8["onnx"] == f"{winner}.int8.onnx" and int8["samples"] > 0
    report = (run_copy / "report" / "report.md").read_text()
    fp32_row = next(line for line in report.splitlines() if line.startswith(f"| {winner} *"))
    int8_row = next(line for line in report.splitlines() if line.startswith(f"| {winner} int8 |"))
    assert report.splitlines().index(int8_row) == report.splitlines().index(fp32_row) + 1
    assert "fp32 ONNX" in int8_row and f"{100 * int8['accuracy']:.1f}" in int8_row
    delta = round(100 * (int8["accuracy"] - int8["fp32_onnx_accuracy"]), 2)
    assert int8["delta_points"] == delta and f"{delta:+.2f} points" in int8_row  # INT8 minus FP32
    (run_copy / "export" / f"{winner}.onnx").write_bytes(b"changed")  # the INT8 copy is now stale
    assert build_summary(run_copy) and not any(s.get("int8") for s in build_summary(run_copy)["students"])


def test_teacher_and_students_are_timed_together_and_the_speedup_has_its_spread(tmp_path_factory) -> None:
    """The host measurement times teacher and students in turn over 5 rounds (one session);
    the headline gives the median speed-up over the rounds and their range."""
    run = reference_run(tmp_path_factory)
    summary = summary_of(run)
    names = ["teacher"] + [s["trial"] for s in summary["students"]]
    records = [read_json(run / "measurements" / f"host-{name}.json") for name in names]
    assert len({r["protocol"]["session"] for r in records}) == 1
    assert all(len(r["round_ms"]) == 5 and r["protocol"]["threads"] == 1 for r in records)
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    spread = winner["speedup_spread"]["host"]
    assert spread["rounds"] == 5 and spread["low"] <= winner["speedup"]["host"] <= spread["high"]
    md = (run / "report" / "report.md").read_text()
    assert (f"speed-up on this host: {winner['speedup']['host']:.2f}x "
            f"({spread['low']:.2f}-{spread['high']:.2f} over 5 rounds)") in md
    rule = summary["selection"]["rule"]  # the reference run has --baselines: the arms' rule
    assert "validation accuracy" in rule and f"Winner: {rule}" in " ".join(md.split())


def test_a_merged_measurement_on_a_host_cpu_run_changes_the_rows_and_says_how(run_copy, tmp_path) -> None:
    """The reference run's target is the host: a merged CPU figure replaces the host latency in
    the table, the speed-up and the Pareto flags, and the command prints old -> new."""
    summary = summary_of(run_copy)
    winner = summary["winner"]
    record = read_json(run_copy / "measurements" / f"host-{winner}.json")
    record["latency_ms"] = {k: v * 3 for k, v in record["latency_ms"].items()}
    path = tmp_path / "idle-cpu.json"
    path.write_text(json.dumps(record))
    result = CliRunner().invoke(cli, ["report", str(run_copy), "-m", str(path)])
    assert result.exit_code == 0, result.output + result.stderr
    student = next(s for s in summary_of(run_copy)["students"] if s["trial"] == winner)
    assert student["latency"]["host"]["ms"] == pytest.approx(record["latency_ms"]["median"], rel=1e-5)
    teacher_ms = summary["teacher"]["latency"]["host"]["ms"]
    assert student["speedup"]["host"] == pytest.approx(teacher_ms / student["latency"]["host"]["ms"], abs=0.0051)
    line = next(l for l in result.output.splitlines() if l.startswith(f"changed row '{winner}'"))
    assert "latency " in line and " -> " in line and "speed-up" in line
    from edgekd.core import fmt

    md = (run_copy / "report" / "report.md").read_text()
    assert f"| {fmt.ms(student['latency']['host']['ms'])} (measured) |" in md


def test_predict_takes_a_run_folder_and_uses_its_winner(run_copy, tmp_path) -> None:
    """`edgekd predict RUN images/` (as export takes a run folder): the winner's ONNX."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    from edgekd.inputs.loaders import load_dataset

    image = load_dataset(None).x_test[0].reshape(28, 28)
    Image.fromarray(image).save(folder / "digit.png")
    winner = summary_of(run_copy)["winner"]
    by_run = CliRunner().invoke(cli, ["predict", str(run_copy), str(folder), "--json"])
    by_file = CliRunner().invoke(cli, ["predict", str(run_copy / "export" / f"{winner}.onnx"),
                                       str(folder), "--json"])
    assert by_run.exit_code == 0, by_run.output
    assert by_run.output == by_file.output and "digit.png" in by_run.output
    empty = CliRunner().invoke(cli, ["predict", str(tmp_path), str(folder)])
    assert empty.exit_code == 2 and "finished run folder" in empty.stderr
