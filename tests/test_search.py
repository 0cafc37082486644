"""Budgeted search: the filter against brute force, the Pareto front, the shortlist, the
infeasible-budget error, calibrated and measured latencies, and the `edgekd search` command."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from edgekd.cli.cli import cli
from edgekd.search.cost import module_cost
from edgekd.core.errors import EdgekdError
from edgekd.search.latency import Calibration, LatencyEstimate, feature_names, predict_latency
from edgekd.inputs.profiles import load_profile
from edgekd.search.search import Candidate, pareto_front, pareto_mask, search_candidates, select_shortlist
from edgekd.search.grid import enumerate_specs
from edgekd.search.space import SpaceConfig, Stage, StudentSpec, build
from edgekd.ship.measure import measured_latency

SMALL = SpaceConfig(min_depth=3, max_depth=7, base_widths=(4, 8), growths=(2.0,))


@pytest.fixture(scope="module")
def host():
    return load_profile("host-cpu")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))


def test_filter_matches_brute_force(host) -> None:
    """Every feasible candidate is within budget and none is missed: compare with building
    every model of a small grid and counting it whole (not through the block cache)."""
    max_macs, latency_ms = 400_000, 0.04
    result = search_candidates(host, (1, 28, 28), 10, max_macs=max_macs, latency_ms=latency_ms,
                               shortlist=4, space=SMALL)
    brute = set()
    for spec in enumerate_specs((1, 28, 28), 10, SMALL):
        with torch.device("meta"):  # shapes only: counting needs no real weights
            model = build(spec)
        whole = module_cost(model, spec.input)
        if whole.macs <= max_macs and predict_latency(whole, host, 1).ms <= latency_ms:
            brute.add(spec.id)
    assert brute and len(brute) < len(result.candidates)  # the budget is binding
    assert {c.id for c in result.feasible} == brute
    assert all(c.macs <= max_macs and c.latency.ms <= latency_ms and c.latency.label == "predicted"
               for c in result.feasible)


def _cand(name: str, ms: float, params: int, depth: int) -> Candidate:
    spec = StudentSpec("plain", (1, 8, 8), 2, (Stage(int(name), depth, 1),))
    return Candidate(spec, macs=int(ms * 1000), params=params, latency=LatencyEstimate(ms, "predicted", 1))


def test_pareto_front_hand_made() -> None:
    # (latency: min, params: max, depth: max)
    a = _cand("1", 1.0, 100, 3)   # fastest
    b = _cand("2", 2.0, 300, 5)   # slower but more params and depth
    c = _cand("3", 2.0, 200, 5)   # dominated by b (same latency and depth, fewer params)
    d = _cand("4", 3.0, 300, 4)   # dominated by b (slower, same params, shallower)
    e = _cand("5", 3.0, 250, 9)   # deepest: on the front
    f = _cand("6", 1.0, 100, 3)   # a tie with a: neither dominates the other
    assert pareto_front([a, b, c, d, e, f]) == [a, b, e, f]
    assert pareto_mask([(1, 1), (2, 2), (2, 1)], ("min", "max")) == [True, True, False]
    assert pareto_mask([], ("min",)) == []


def test_shortlist_spans_depths() -> None:
    pool = [_cand(str(w), ms=0.1 * d, params=w * 10, depth=d) for d in range(3, 12) for w in (4, 8)]
    chosen = select_shortlist(pool, 4)
    depths = [c.depth for c in chosen]
    assert len(chosen) == 4 and len(set(depths)) == 4
    assert min(depths) == 3 and max(depths) == 11  # spans the whole depth range
    assert all(c.spec.widths == (8,) for c in chosen)  # the most capable of each depth
    assert len(select_shortlist(pool, 100)) == len(pool)


def test_infeasible_budget_is_one_clear_error(host) -> None:
    with pytest.raises(EdgekdError) as info:
        search_candidates(host, (1, 28, 28), 10, max_macs=1000, space=SMALL)
    text = str(info.value)
    assert text.startswith("no student fits MACs <= 1.0K and latency <= 0.1 ms")
    assert "the smallest candidate needs" in text and "(predicted)" in text and "\n" not in text


def test_calibration_is_used_and_reused(host, tmp_path) -> None:
    coefficients = {name: 0.0 for name in feature_names()}
    coefficients.update({"conv.compute": 2.0, "conv.count": 0.002, "intercept": 0.01})
    calibration = Calibration(profile=host.name, precision="fp32",
                              hardware=dataclasses.asdict(host.hardware), fits={"all": coefficients})
    out = tmp_path / "run"
    calibration.save(out / f"calibration-{host.name}.json")
    result = search_candidates(host, (1, 28, 28), 10, max_macs=300_000, latency_ms=1.0,
                               space=SMALL, out_dir=out)  # found in the run folder
    assert result.latency_label == "calibrated" and result.calibration.endswith(".json")
    c = result.feasible[0]
    assert c.latency.label == "calibrated"
    assert c.latency.ms == pytest.approx(calibration.predict_ms(c.spec, 1))


def test_measure_refuses_other_devices() -> None:
    with pytest.raises(EdgekdError, match="another device"):
        search_candidates(load_profile("jetson-orin-nano-8gb"), (1, 28, 28), 10, measure=True,
                          space=SMALL)


def test_measure_times_the_shortlist_on_the_host(host, tmp_path) -> None:
    space = SpaceConfig(families=("plain",), min_depth=3, max_depth=4, base_widths=(4,),
                        growths=(1.0,))
    result = search_candidates(host, (1, 28, 28), 10, max_macs=200_000, latency_ms=50.0,
                               shortlist=2, measure=True, space=space, out_dir=tmp_path,
                               measurer=lambda spec, folder, batch: measured_latency(spec, folder, batch=batch))
    assert result.measured >= 2 and len(result.shortlist) == 2
    for c in result.shortlist:
        assert c.latency.label == "measured" and 0 < c.latency.ms <= 50.0
        assert c.estimate is not None and c.estimate.label == "predicted"
        assert (tmp_path / "search" / f"{c.id}-b1.json").is_file()
    lines = [json.loads(x) for x in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines if r["shortlisted"]) == sorted(c.id for c in result.shortlist)


def test_cli_search_writes_candidates_within_budget(tmp_path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", "--profile", "host-cpu", "--input", "1x28x28",
                                      "--classes", "10", "--max-macs", "2M", "--out", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    assert "MACs" in result.output and "predicted" in result.output
    records = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert len(records) > 100
    budget = load_profile("host-cpu").budget
    for r in records:
        assert {"id", "spec", "macs", "params", "depth", "widths", "latency", "shortlisted"} <= set(r)
        assert StudentSpec.from_dict(r["spec"]).id == r["id"]
        assert r["macs"] <= 2_000_000
        assert r["latency"]["label"] in ("predicted", "calibrated", "measured")
        assert r["latency"]["ms"] <= budget.latency_ms and r["latency"]["batch"] == budget.batch
    assert sum(r["shortlisted"] for r in records) == 8
    summary = json.loads((out / "search.json").read_text())
    assert summary["feasible"] == len(records) and summary["max_macs"] == 2_000_000


def test_cli_search_infeasible_exits_2(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["search", "--profile", "host-cpu", "--input", "1x28x28",
                                      "--classes", "10", "--max-macs", "1K", "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no student fits MACs <= 1.0K" in errors[0]
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "run" / "candidates.jsonl").exists()


def test_calibration_for_another_device_is_refused(host, tmp_path) -> None:
    calibration = Calibration(profile=host.name, precision="fp32",
                              hardware=dataclasses.asdict(host.hardware),
                              fits={"all": {name: 0.0 for name in feature_names()}})
    path = calibration.save(tmp_path / "calibration-host-cpu.json")
    with pytest.raises(EdgekdError, match="fitted for profile 'host-cpu'"):
        search_candidates(load_profile("jetson-orin-nano-8gb"), (1, 28, 28), 10,
                          calibration=path, space=SMALL)
