"""Per-kernel times from a real ``python -m deploy profile`` (ONNX Runtime, on this host)
build and update the kernel table through ``edgekd calibrate --from PROFILE.json``; search then
labels its latencies calibrated (issue 13 / issue 10 deliverable 5)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.inputs.profiles import load_profile
from edgekd.search.cost import spec_cost
from edgekd.search.kernel_model import KernelTable, default_table_path
from edgekd.search.kernels import kernels_of
from edgekd.search.op_times import match_profile
from edgekd.search.space import Stage, StudentSpec

# stride-2 stage with a projection shortcut: ONNX Runtime runs the shortcut convolution
# before the main path's second one, edgekd lists it after (matched by kernel key, not order)
SPEC = StudentSpec("residual", (3, 16, 16), 10, (Stage(8, 1, 1), Stage(16, 1, 2)), kernel=3)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """The student exported by edgekd and profiled by the deploy kit at batch 1 and 4."""
    from edgekd.search.space import build
    from edgekd.ship.export import export_onnx
    from edgekd.ship.measure import run_deploy

    folder = tmp_path_factory.mktemp("profiled")
    onnx = export_onnx(build(SPEC).eval(), SPEC.input, folder / f"{SPEC.id}.onnx", batch=1,
                       dynamic_batch=(1, 1, 4), metadata={"edgekd.spec": SPEC.to_json()},
                       exporter="torchscript")
    for batch in (1, 4):
        run_deploy(["profile", str(onnx), "--threads", "1", "--batch", str(batch), "--iters", "30",
                    "--out", str(folder / f"b{batch}.profile.json")])
    return folder


def test_layer_profile_matches_every_kernel(profiled) -> None:
    data = json.loads((profiled / "b1.profile.json").read_text())
    assert all("inputs" in layer and "outputs" in layer for layer in data["layers"])
    matched = match_profile(SPEC, data, "fp32")
    kernels = kernels_of(spec_cost(SPEC).layers, 1, "fp32")
    assert matched is not None and not matched.unmatched
    assert sorted(k.signature for k, _ in matched.kernel_ms) == sorted(k.signature for k in kernels)
    # the 1x1 shortcut got the runtime's 1x1 layer, not its neighbour's 3x3 time
    conv_layers = [l for l in data["layers"] if "conv" in l["op_type"].lower()]
    one_by_one = [l for l in conv_layers if l["inputs"][1][-1] == 1]
    shortcut = next(ms for k, ms in matched.kernel_ms if k.k == 1)
    scale = min(1.0, data["latency_ms"] / data["total_ms"])
    assert len(one_by_one) == 1 and shortcut == pytest.approx(one_by_one[0]["ms"] * scale)
    # matched kernels + the per-graph constant give back the end-to-end latency
    assert sum(ms for _, ms in matched.kernel_ms) + matched.constant_ms == pytest.approx(
        data["latency_ms"], rel=1e-6)


def test_calibrate_from_a_profile_builds_then_updates_the_table(profiled, tmp_path) -> None:
    runner = CliRunner()
    table_path = tmp_path / "host.json"
    first = runner.invoke(cli, ["calibrate", "--profile", "host-cpu", "--from",
                                str(profiled / "b1.profile.json"), "--table", str(table_path)])
    assert first.exit_code == 0, first.output
    assert "built from the per-kernel times" in first.output
    table = KernelTable.load(table_path)
    latency_b1 = json.loads((profiled / "b1.profile.json").read_text())["latency_ms"]
    assert all(k.signature in table.kernels for k in kernels_of(spec_cost(SPEC).layers, 1, "fp32"))
    assert table.predict(SPEC, 1).label == "calibrated"
    assert table.predict_ms(SPEC, 1) == pytest.approx(latency_b1, rel=1e-6)
    second = runner.invoke(cli, ["calibrate", "--profile", "host-cpu", "--from",
                                 str(profiled / "b4.profile.json"), "--table", str(table_path)])
    assert second.exit_code == 0 and "updated from the per-kernel times" in second.output
    table = KernelTable.load(table_path)
    assert set(table.constants) == {"1", "4"}  # batch 1 kept, batch 4 added
    assert table.predict_ms(SPEC, 1) == pytest.approx(latency_b1, rel=1e-6)
    latency_b4 = json.loads((profiled / "b4.profile.json").read_text())["latency_ms"]
    assert table.predict_ms(SPEC, 4) == pytest.approx(latency_b4, rel=1e-6)
    # refused in one line: a table of another profile, a profile of another precision
    for args, words in (
            (["--profile", "jetson-orin-nano-8gb", "--table", str(table_path)],
             "measured for profile 'host-cpu' (fp32), not 'jetson-orin-nano-8gb' (fp16)"),
            (["--profile", "jetson-orin-nano-8gb", "--table", str(tmp_path / "new.json")],
             "measured at fp32, not fp16")):
        refused = runner.invoke(cli, ["calibrate", *args, "--from", str(profiled / "b1.profile.json")])
        assert refused.exit_code == 2 and words in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1
    alone = tmp_path / "alone.profile.json"  # no ONNX beside it, no index.json: which student?
    alone.write_text((profiled / "b1.profile.json").read_text())
    lost = runner.invoke(cli, ["calibrate", "--from", str(alone), "--table", str(tmp_path / "x.json")])
    assert lost.exit_code == 2 and "cannot tell which student" in lost.output
    # another model's ONNX under the profiled file's name: its kernels were never measured
    from edgekd.search.space import build
    from edgekd.ship.export import export_onnx

    other_spec = StudentSpec("plain", (3, 16, 16), 10, (Stage(4, 1, 1),))
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    data = json.loads((profiled / "b1.profile.json").read_text())
    export_onnx(build(other_spec).eval(), other_spec.input, swapped / data["model"], batch=1,
                metadata={"edgekd.spec": other_spec.to_json()}, exporter="torchscript")
    (swapped / "b1.profile.json").write_text(json.dumps(data))
    mismatch = runner.invoke(cli, ["calibrate", "--from", str(swapped / "b1.profile.json"),
                                   "--table", str(tmp_path / "y.json")])
    assert mismatch.exit_code == 2 and "not " + data["model"] + " beside it" in mismatch.output, \
        mismatch.output
    assert len(mismatch.output.strip().splitlines()) == 1 and not (tmp_path / "y.json").exists()


def test_search_cli_says_predicted_then_calibrated_once_a_table_exists(profiled) -> None:
    """The done-when command of issue 13, before and after the host's table exists."""
    runner = CliRunner()
    command = ["search", "--profile", "host-cpu", "--input", "3x32x32", "--classes", "10",
               "--family", "mbconv", "--max-macs", "5M", "--latency-ms", "10"]
    host = load_profile("host-cpu")
    assert not default_table_path(host).exists()
    before = runner.invoke(cli, [*command, "--out", str(profiled / "s1")])
    assert before.exit_code == 0, before.output
    assert "mbconv" in before.output and "predicted" in before.output and "calibrated" not in before.output
    made = runner.invoke(cli, ["calibrate", "--profile", "host-cpu", "--from",
                               str(profiled / "b1.profile.json")])  # the default place
    assert made.exit_code == 0 and str(default_table_path(host)) in made.output
    try:
        after = runner.invoke(cli, [*command, "--out", str(profiled / "s2")])
        assert after.exit_code == 0, after.output
        rows = [line for line in after.output.splitlines() if " mbconv " in line]
        assert rows and all("calibrated" in line for line in rows) and "predicted" not in after.output
    finally:
        default_table_path(host).unlink()
