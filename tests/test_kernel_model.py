"""The kernel-level latency model: fused kernels, recovery of known per-kernel costs, the
versioned table file, its refusal for another profile or precision, `edgekd calibrate`
(--export / --from) and its automatic use by search (calibrated vs predicted)."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.search.cost import Layer, spec_cost
from edgekd.core.errors import EdgekdError
from edgekd.search.kernel_model import KernelTable, default_table_path, find_table, fit_kernel_table
from edgekd.search.kernels import Kernel, kernels_of
from edgekd.inputs.profiles import load_profile
from edgekd.search.search import search_candidates
from edgekd.search.space import SpaceConfig, Stage, StudentSpec


@pytest.fixture(scope="module")
def host():
    return load_profile("host-cpu")


def _conv(name: str, cin: int, cout: int, k: int, s: int, hw: int, depthwise: bool = False) -> Layer:
    out_hw = hw // (s * s)
    macs = (cin if not depthwise else 1) * cout * k * k * out_hw
    return Layer(name, "depthwise" if depthwise else "conv", macs, cin * hw, cout * out_hw,
                 (1 if depthwise else cin) * cout * k * k, cin, cout, k, s)


POOL = [_conv("c0", 3, 16, 3, 1, 1024), _conv("c1", 16, 16, 3, 1, 1024), _conv("c2", 16, 32, 3, 2, 1024),
        _conv("c3", 32, 32, 3, 1, 256), _conv("c4", 32, 64, 1, 1, 256), _conv("c5", 8, 8, 5, 1, 784),
        _conv("d0", 16, 16, 3, 1, 1024, True), _conv("d1", 32, 32, 3, 1, 256, True),
        Layer("p", "pool", 0, 64 * 64, 64, 0), Layer("g", "linear", 640, 64, 10, 640, 64, 10)]


def test_kernels_fuse_bn_act_and_the_residual_add() -> None:
    spec = StudentSpec("mbconv", (3, 32, 32), 10, (Stage(16, 2, 1), Stage(24, 1, 2)), expansion=4)
    kernels = kernels_of(spec_cost(spec).layers, 1, "fp32")
    kinds = [k.kind for k in kernels]
    # stem, 3 blocks x (expand, dw, project), pool, head; the two residual adds (both
    # stride-1 16->16 blocks of the first stage) are fused into their projections
    assert kinds.count("dwconv") == 3 and kinds.count("add") == 0 and len(kernels) == 1 + 9 + 2
    assert [i for i, k in enumerate(kernels) if k.fused_add] == [3, 6]
    assert [k.kind for k in kernels_of(spec_cost(spec).layers, 1, "fp32", fuse_add=False)].count("add") == 2
    assert kernels[1].signature == "conv:16:64:k1:s1:hw1024:b1:fp32" and kernels[1].group == "conv-1x1"


def test_fit_recovers_known_per_kernel_costs_from_synthetic_measurements(host) -> None:
    rng = random.Random(0)
    truth = {}
    for batch in (1, 32):
        for layer in POOL:  # arbitrary costs: nothing a roofline or regression would give
            truth[kernels_of([layer], batch, "fp32")[0].signature] = rng.uniform(0.01, 0.3) * (1 + 7 * (batch > 1))
    constant = {1: 0.05, 32: 0.4}
    rows = []
    for _ in range(150):
        batch = rng.choice((1, 32))
        layers = rng.sample(POOL, rng.randint(3, 8))
        ms = constant[batch] + sum(truth[k.signature] for k in kernels_of(layers, batch, "fp32"))
        rows.append((layers, batch, ms))
    exact = fit_kernel_table(rows, host, ridge=1e-9)
    assert max(abs(exact.kernels[s] / v - 1) for s, v in truth.items()) < 1e-3
    assert exact.constants == pytest.approx({"1": 0.05, "32": 0.4}, rel=1e-3)
    # the default ridge (it keeps rarely seen kernels near the fallback) still predicts
    # unseen combinations of these kernels within 2%
    table = fit_kernel_table(rows, host)
    for _ in range(30):
        batch = rng.choice((1, 32))
        layers = rng.sample(POOL, rng.randint(3, 8))
        ms = constant[batch] + sum(truth[k.signature] for k in kernels_of(layers, batch, "fp32"))
        assert table.predict_ms(layers, batch) == pytest.approx(ms, rel=0.02)


def test_unseen_signatures_use_the_regression_fallback(host) -> None:
    def device_ms(k: Kernel) -> float:  # a plausible device: compute + memory + launch per kernel
        return 2e-9 * k.macs * k.batch + 1e-9 * k.elems * k.batch + 0.004

    specs = [StudentSpec("plain", (1, 28, 28), 10, (Stage(w, d, 1), Stage(2 * w, d, 2)))
             for w in (8, 16, 24, 32) for d in (1, 2, 3)]
    rows = [(s, 1, 0.01 + sum(map(device_ms, kernels_of(spec_cost(s).layers, 1, "fp32")))) for s in specs]
    table = fit_kernel_table(rows, host)
    unseen = StudentSpec("plain", (1, 28, 28), 10, (Stage(12, 2, 1), Stage(20, 2, 2)))
    kernels = kernels_of(spec_cost(unseen).layers, 1, "fp32")
    assert any(k.signature not in table.kernels for k in kernels)
    truth = 0.01 + sum(map(device_ms, kernels))
    assert table.predict_ms(unseen, 1) == pytest.approx(truth, rel=0.1)


def test_table_file_round_trip_and_refusals(host, tmp_path) -> None:
    rows = [(POOL[:4], 1, 0.5), (POOL[2:6], 1, 0.6), (POOL[4:], 1, 0.3), (POOL[::2], 1, 0.4)]
    table = fit_kernel_table(rows, host)
    path = table.save(tmp_path / "t.json")
    again = KernelTable.load(path)
    assert again.kernels == pytest.approx(table.kernels) and again.constants == table.constants
    assert again.predict(POOL[:5], 1).label == "calibrated"
    jetson = load_profile("jetson-orin-nano-8gb")
    with pytest.raises(EdgekdError, match=r"measured for profile 'host-cpu' \(fp32\), not "
                                          r"'jetson-orin-nano-8gb' \(fp16\)"):
        again.check_for(jetson)
    fp16_host = dataclasses.replace(host, runtime=dataclasses.replace(host.runtime, precision="fp16"))
    with pytest.raises(EdgekdError, match=r"\(fp32\), not 'host-cpu' \(fp16\)"):
        find_table(fp16_host, path)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "edgekd.calibration/1"}))
    for bad, words in ((tmp_path / "bad.json", "not an edgekd kernel table"),
                       (tmp_path / "none.json", "not found")):
        with pytest.raises(EdgekdError, match=words):
            KernelTable.load(bad)


def test_default_place_is_next_to_a_user_profile_else_the_config_dir(host, tmp_path) -> None:
    assert default_table_path(host).parts[-2:] == ("kernel-tables", "host-cpu.json")
    mine = tmp_path / "my-board.toml"
    mine.write_text(open(load_profile("jetson-orin-nano-8gb").source).read().replace(
        'name = "jetson-orin-nano-8gb"', 'name = "my-board"'))
    assert default_table_path(load_profile(str(mine))) == tmp_path / "my-board.kernels.json"


def test_search_uses_the_profile_table_and_labels_calibrated(host) -> None:
    space = SpaceConfig(families=("mbconv",), max_depth=7)
    before = search_candidates(host, (3, 32, 32), 10, max_macs=5_000_000, latency_ms=10.0,
                               families=("mbconv",), space=space)
    assert before.latency_label == "predicted" and find_table(host) is None
    rows = [(c.spec, 1, 0.02 + c.macs / 2e9 * 1e3) for c in before.feasible[:40]]
    fit_kernel_table(rows, host).save(default_table_path(host))
    try:
        after = search_candidates(host, (3, 32, 32), 10, max_macs=5_000_000, latency_ms=10.0,
                                  families=("mbconv",), space=space)
        assert after.latency_label == "calibrated"
        assert all(c.latency.label == "calibrated" for c in after.feasible)
        assert after.calibration == str(default_table_path(host))
    finally:
        default_table_path(host).unlink()


def test_calibrate_export_then_from_device_measurements(tmp_path) -> None:
    folder = tmp_path / "calib"
    runner = CliRunner()
    result = runner.invoke(cli, ["calibrate", "--profile", "jetson-orin-nano-8gb", "--students", "8",
                                 "--export", str(folder)])
    assert result.exit_code == 0, result.output
    commands = (folder / "commands.sh").read_text()
    assert "deploy build" in commands and "--fp16" in commands and "--min-seconds 0.5" in commands
    index = json.loads((folder / "index.json").read_text())["models"]
    from edgekd_deploy.onnxmeta import EXPORTER, read_onnx_header

    # the fast exporter for throw-away calibration students (same runtime kernels)
    assert read_onnx_header(folder / next(iter(index.values()))["file"]).metadata[EXPORTER] == "torchscript"
    assert len(index) == 8 and {e["spec"]["family"] for e in index.values()} == {
        "plain", "residual", "dwsep", "mbconv"}
    # what the device would bring back: one Measurement per model and batch (synthetic times)
    for sha, entry in index.items():
        spec = StudentSpec.from_dict(entry["spec"])
        ms1 = 0.05 + sum(2e-9 * k.macs + 0.01 for k in kernels_of(spec_cost(spec).layers, 1, "fp16"))
        for batch in (1, 32):
            ms = 0.05 * batch ** 0.5 + sum(2e-9 * k.macs * batch + 0.01
                                         for k in kernels_of(spec_cost(spec).layers, batch, "fp16"))
            (folder / f"{spec.id}.b{batch}.json").write_text(json.dumps({
                "format": "edgekd.measurement/1", "sha256": sha, "batch": batch,
                "latency_ms": {"median": ms, "p25": ms * 0.98}, "statistic": "median"}))
        # a 'python -m deploy profile' JSON (total latency_ms, per-layer times) counts too
        (folder / f"{spec.id}.profile.json").write_text(json.dumps({
            "format": "edgekd.layer-profile/1", "sha256": sha, "batch": 1, "latency_ms": ms1,
            "layers": [{"name": "conv", "op_type": "Conv", "ms": ms1 / 2}]}))
    table_path = tmp_path / "jetson.json"
    result = runner.invoke(cli, ["calibrate", "--profile", "jetson-orin-nano-8gb", "--from",
                                 str(folder), "--table", str(table_path)])
    assert result.exit_code == 0, result.output
    assert "from 24 measurements" in result.output  # 8 models x 2 batches + 8 layer profiles
    table = KernelTable.load(table_path)
    assert (table.profile, table.precision) == ("jetson-orin-nano-8gb", "fp16")
    spec = StudentSpec.from_dict(next(iter(index.values()))["spec"])
    truth = 0.05 + sum(2e-9 * k.macs + 0.01 for k in kernels_of(spec_cost(spec).layers, 1, "fp16"))
    assert table.predict_ms(spec, 1) == pytest.approx(truth, rel=0.05)
    refused = runner.invoke(cli, ["search", "--profile", "t4", "--calibration", str(table_path)])
    assert refused.exit_code == 2 and "measured for profile 'jetson-orin-nano-8gb'" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    host_only = runner.invoke(cli, ["calibrate", "--profile", "t4", "--students", "4"])
    assert host_only.exit_code == 2 and "--export DIR" in host_only.output


def test_interleaved_bench_protocol(tmp_path) -> None:
    import torch

    from edgekd_deploy.bench import bench_interleaved
    from edgekd.ship.export import export_onnx
    from edgekd.search.space import build

    paths = []
    for i, spec in enumerate([StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 2, 1),)),
                              StudentSpec("dwsep", (1, 28, 28), 10, (Stage(8, 2, 1),))]):
        paths.append(export_onnx(build(spec).eval(), spec.input, tmp_path / f"m{i}.onnx"))
    torch.set_num_threads(1)
    results = bench_interleaved(paths, batch=1, min_seconds=0.1, rounds=2, threads=1)
    for m in results:
        assert m["statistic"] == "median" and m["protocol"]["rounds"] == 2
        assert not m["protocol"]["spinning"] and m["protocol"]["threads"] == 1
        assert m["latency_ms"]["p25"] <= m["latency_ms"]["median"]
        # one ORT thread computes in the calling thread: its CPU time per run is the latency
        # without preemption, never (beyond timer noise) above the wall-clock time
        assert len(m["cpu_ms"]["rounds"]) == 2 and 0 < m["cpu_ms"]["min"] <= m["cpu_ms"]["median"]
        assert m["cpu_ms"]["min"] <= 1.05 * m["latency_ms"]["max"]
        # timed for at least min_seconds in total (not a fixed count), 3+ runs per round
        assert m["iterations"] * m["latency_ms"]["mean"] >= 0.1 * 1000 * 0.99 and m["iterations"] >= 6
    assert np.isfinite([m["throughput"] for m in results]).all()
    # with several intra-op threads the calling thread's CPU time is not the run's: not recorded
    assert "cpu_ms" not in bench_interleaved(paths[:1], batch=1, min_seconds=0.02, rounds=1, threads=2)[0]


def test_compress_search_on_jetson_is_calibrated_with_a_device_table_else_predicted() -> None:
    from types import SimpleNamespace

    from edgekd.run.config import CompressConfig
    from edgekd.run.pipeline import search_stage
    from edgekd.run.setup import Inputs

    jetson = load_profile("jetson-orin-nano-8gb")
    inputs = Inputs(profile=jetson, dataset=SimpleNamespace(input_shape=(1, 28, 28), num_classes=10),
                    teacher=None, teacher_fp="-")
    config = CompressConfig(candidates=3)
    rows, shortlist, _counts = search_stage(config, inputs)
    assert shortlist and {r["latency"]["label"] for r in rows} == {"predicted"}
    # a table brought back from the board (synthetic times here), in the default place
    specs = [StudentSpec.from_dict(r["spec"]) for r in rows[:60]]
    table = fit_kernel_table([(s, 1, 0.02 + 1e-9 * spec_cost(s).macs) for s in specs], jetson)
    table.save(default_table_path(jetson))
    try:
        rows, shortlist, _counts = search_stage(config, inputs)
        assert shortlist and {r["latency"]["label"] for r in rows} == {"calibrated"}
        assert all(r["latency"]["ms"] <= jetson.budget.latency_ms for r in rows)
    finally:
        default_table_path(jetson).unlink()


def test_fallback_learns_the_memory_cost_beyond_the_cache(host, monkeypatch) -> None:
    """Batch 32 on the host: kernels whose activations outgrow the cache cost more per element
    (the spill term); the fit finds the cache size and predicts unseen students with it."""
    import edgekd.search.kernel_model as km
    from edgekd.search.kernel_model import spilled

    cache = 2 ** 23  # bytes

    def device_ms(k: Kernel) -> float:
        return 2e-8 * k.macs * k.batch + 2e-8 * k.elems * k.batch + 1e-6 * spilled(k, cache) + 0.003

    def measured(spec: StudentSpec) -> float:
        return 0.05 + sum(map(device_ms, kernels_of(spec_cost(spec).layers, 32, "fp32")))

    grid = [StudentSpec("plain", (1, 28, 28), 10, (Stage(w, d, 1), Stage(g * w, d, 2)))
            for w in (8, 16, 24, 32, 48, 64) for d in (1, 2, 3, 4) for g in (1, 2)]
    train = grid
    test = [StudentSpec("plain", (1, 28, 28), 10, (Stage(w, d, 1), Stage(2 * w, d, 2)))
            for w in (12, 40, 56, 80) for d in (2, 3)]  # widths never measured
    assert any(spilled(k, cache) > 0 for s in test for k in kernels_of(spec_cost(s).layers, 32, "fp32"))
    rows = [(s, 32, measured(s)) for s in train]
    table = fit_kernel_table(rows, host)
    assert table.spill_bytes == cache
    unseen = [s for s in test if any(k.signature not in table.kernels
                                     for k in kernels_of(spec_cost(s).layers, 32, "fp32") if k.kind == "conv")]
    assert len(unseen) >= 6 and all(table.predict_ms(s, 32) == pytest.approx(measured(s), rel=0.03) for s in unseen)
    monkeypatch.setattr(km, "SPILL_BYTES", (0,))  # the fallback without the term misses
    flat = fit_kernel_table(rows, host)
    assert flat.spill_bytes == 0
    assert max(abs(flat.predict_ms(s, 32) / measured(s) - 1) for s in unseen) > 0.05
