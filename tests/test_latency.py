"""The latency model: the roofline prediction and the least-squares calibration (per kind,
from whole-model times or from deploy's per-layer profiles)."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

import edgekd.search.latency as cost
from edgekd.search.cost import KINDS, Layer, spec_cost
from edgekd.core.errors import EdgekdError
from edgekd.search.latency import Calibration, feature_names, fit_calibration, predict_latency
from edgekd.inputs.profiles import load_profile
from edgekd.search.space import Stage, StudentSpec


STUDENTS = [
    StudentSpec("plain", (1, 28, 28), 10, (Stage(8, 3, 1), Stage(16, 3, 2))),
    StudentSpec("residual", (3, 32, 32), 100, (Stage(16, 2, 1), Stage(32, 1, 2), Stage(64, 1, 2))),
    StudentSpec("plain", (3, 32, 32), 10, (Stage(12, 2, 1), Stage(24, 5, 2)), kernel=5, bottleneck=6),
]


@pytest.fixture(scope="module")
def host():
    return load_profile("host-cpu")


def test_roofline_prediction(host) -> None:
    roof = cost.Roofline.of(host.hardware, "fp32")
    heavy = Layer("fc", "linear", macs=10**9, in_elems=1000, out_elems=1000, weights=1000)
    light = Layer("pool", "pool", macs=0, in_elems=10**7, out_elems=10, weights=0)
    peak_macs = host.hardware.fp32_tflops * 1e12 / 2
    overhead = host.hardware.layer_overhead_us / 1e3
    # compute-bound: 1 GMAC at the peak MAC rate; memory-bound: 40 MB at the bandwidth
    assert predict_latency([heavy], host, 1).ms == pytest.approx(1e3 * 1e9 / peak_macs + overhead)
    expected = 1e3 * (10**7 + 10) * 4 / (host.hardware.memory_bandwidth_gbs * 1e9) + overhead
    assert predict_latency([light], host, 1).ms == pytest.approx(expected)
    assert roof.memory_ms(light, 2) == pytest.approx(2 * roof.memory_ms(light, 1), rel=1e-5)
    estimate = predict_latency(STUDENTS[0], host)
    assert estimate.label == "predicted" and estimate.batch == host.budget.batch
    assert predict_latency(STUDENTS[0], host, 32).ms > estimate.ms
    fp16 = dataclasses.replace(host, runtime=dataclasses.replace(host.runtime, precision="fp16"))
    assert predict_latency([light], fp16, 1).ms < predict_latency([light], host, 1).ms


def _synthetic_table(rng: random.Random, n: int) -> list[list[Layer]]:
    """Random layer tables in which every kind's count, MACs and bytes vary independently."""
    tables = []
    for _ in range(n):
        layers = []
        for kind in KINDS:
            for j in range(rng.randint(0, 6)):
                macs = 0 if kind in ("pool", "add", "elementwise") else rng.randint(10**4, 10**7)
                layers.append(Layer(f"{kind}{j}", kind, macs, rng.randint(10**3, 10**6),
                                    rng.randint(10**3, 10**6), rng.randint(0, 10**5)))
        tables.append(layers)
    return tables


def _efficiencies(calibration: Calibration, batch: int | str = "all") -> dict[str, float]:
    """Compute efficiency per kind (1 / a_k; inf when the fit found no compute cost)."""
    coef = calibration.fits.get(str(batch)) or calibration.fits["all"]
    return {k: (1.0 / coef[f"{k}.compute"] if coef.get(f"{k}.compute") else float("inf"))
            for k in KINDS}


def test_calibration_recovers_known_coefficients(host, tmp_path) -> None:
    rng = random.Random(0)
    truth = {name: 0.0 for name in feature_names()}
    for kind in KINDS:
        truth[f"{kind}.compute"] = 0.0 if kind in ("pool", "add", "elementwise") else rng.uniform(1.5, 6)
        truth[f"{kind}.memory"] = rng.uniform(0.5, 3)
        truth[f"{kind}.count"] = rng.uniform(0.001, 0.02)  # 1-20 us per layer
    truth["intercept"] = 0.03
    roof = cost.Roofline.of(host.hardware, host.runtime.precision)
    tables = _synthetic_table(rng, 160)

    def true_ms(layers: list[Layer], batch: int) -> float:
        row = cost.latency_features(layers, roof, batch)
        return sum(truth[n] * x for n, x in zip(feature_names(), row))

    rows = [(layers, batch, true_ms(layers, batch)) for layers in tables for batch in (1, 8)]
    calibration = fit_calibration(rows, host)
    assert set(calibration.fits) == {"all", "1", "8"}
    for name, value in truth.items():
        assert calibration.fits["all"][name] == pytest.approx(value, rel=1e-4, abs=1e-9), name
    # with 3% multiplicative noise, the fit still predicts held-out tables within a few percent
    noisy = [(layers, batch, ms * rng.uniform(0.97, 1.03)) for layers, batch, ms in rows]
    noisy_fit = fit_calibration(noisy, host)
    for layers in _synthetic_table(rng, 20):
        assert noisy_fit.predict_ms(layers, 1) == pytest.approx(true_ms(layers, 1), rel=0.05)
    # saved and reloaded, it predicts the same, labelled "calibrated"
    path = calibration.save(tmp_path / "calibration-host-cpu.json")
    again = Calibration.load(path)
    estimate = again.predict(tables[0], 8)
    assert estimate.label == "calibrated"
    assert estimate.ms == pytest.approx(calibration.predict_ms(tables[0], 8))
    assert _efficiencies(again)["conv"] == pytest.approx(1 / truth["conv.compute"], rel=1e-4)


def test_calibration_errors(host, tmp_path) -> None:
    with pytest.raises(EdgekdError, match="not found"):
        Calibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EdgekdError, match="not valid JSON"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EdgekdError, match="not an edgekd calibration"):
        Calibration.load(tmp_path / "other.json")
    with pytest.raises(EdgekdError, match="empty"):
        fit_calibration([], host)
    with pytest.raises(EdgekdError, match="not positive"):
        fit_calibration([(STUDENTS[0], 1, 0.0)], host)


def test_calibration_from_layer_profiles_recovers_per_kind_coefficients(host) -> None:
    """Synthetic `deploy profile` JSONs (per-op times made from known coefficients, plus a
    layout reorder and a per-inference overhead) give back those coefficients."""
    from layer_profile_fit import fit_calibration_from_layer_profiles

    rng = random.Random(1)
    truth = {"conv": (3.0, 1.5, 0.004), "linear": (1.2, 2.0, 0.003), "pool": (0.0, 1.1, 0.002),
             "add": (0.0, 2.5, 0.001)}
    op_types = {"conv": "FusedConv", "linear": "Gemm", "pool": "GlobalAveragePool", "add": "Add"}
    roof = cost.Roofline.of(host.hardware, host.runtime.precision)
    items = []
    for layers in _synthetic_table(rng, 60):
        layers = [layer for layer in layers if layer.kind != "elementwise"]
        for batch in (1, 4):
            ops = []
            for layer in layers:
                kind = "conv" if layer.kind == "depthwise" else layer.kind
                a, m, o = truth[kind]
                ms = a * roof.compute_ms(layer, batch) + m * roof.memory_ms(layer, batch) + o
                ops.append({"name": layer.name, "op_type": op_types[kind], "ms": ms})
            ops.append({"name": "reorder", "op_type": "ReorderOutput", "ms": 0.005})
            items.append((layers, {"format": "edgekd.layer-profile/1", "batch": batch, "layers": ops,
                                   "latency_ms": sum(op["ms"] for op in ops) + 0.02}))
    calibration = fit_calibration_from_layer_profiles(items, host)
    assert set(calibration.fits) == {"all", "1", "4"}
    for kind, (a, m, o) in truth.items():
        fitted = calibration.fits["all"]
        assert fitted[f"{kind}.compute"] == pytest.approx(a, rel=1e-3, abs=1e-6), kind
        assert fitted[f"{kind}.memory"] == pytest.approx(m, rel=1e-3), kind
        assert fitted[f"{kind}.count"] == pytest.approx(o, rel=1e-3), kind
    assert calibration.fits["all"]["intercept"] == pytest.approx(0.025)
    layers, result = items[0]
    assert calibration.predict_ms(layers, 1) == pytest.approx(result["latency_ms"], rel=1e-3)
    with pytest.raises(EdgekdError, match="not a layer profile"):
        fit_calibration_from_layer_profiles([(layers, {"format": "edgekd.measurement/1"})], host)


def test_channel_blocks_pad_conv_compute_and_are_found_by_the_fit(host) -> None:
    from edgekd.search.latency import blocked_compute_ms

    roof = cost.Roofline.of(host.hardware, "fp32")
    stem = Layer("c0", "conv", 10**6, 784, 20 * 784, 180, in_channels=1, out_channels=20)
    wide = Layer("c1", "conv", 10**6, 24 * 196, 20 * 196, 4320, in_channels=24, out_channels=20)
    plain = roof.compute_ms(stem, 1)
    assert blocked_compute_ms(stem, roof, 1, 1) == plain
    assert blocked_compute_ms(stem, roof, 1, 16) == pytest.approx(plain * 32 / 20)  # input < block
    assert blocked_compute_ms(wide, roof, 1, 16) == pytest.approx(plain * 32 / 20 * 32 / 24)
    # latencies made with 16-channel blocks: the cross-validated fit picks block 16
    specs = [StudentSpec("plain", (1, 28, 28), 10, (Stage(w, d, 1), Stage(2 * w, d, 2)))
             for w in (4, 6, 8, 12, 16, 20, 24) for d in (1, 2, 3)]
    rows = []
    for spec in specs:
        row = cost.latency_features(spec_cost(spec).layers, roof, 1, 16)
        rows.append((spec, 1, 0.01 + 2.0 * row[0] + 0.004 * row[2]))  # conv compute, count
    calibration = fit_calibration(rows, host)
    assert calibration.fits["all"]["channel_block"] == 16
    assert calibration.fits["all"]["conv.compute"] == pytest.approx(2.0, rel=1e-3)
    assert calibration.predict_ms(specs[4], 1) == pytest.approx(rows[4][2], rel=1e-4)
