"""``edgekd compress --config FILE``: every option as a key (TOML or an earlier run.json),
command-line flags win, bad keys and values are one line (issue 15). The pipeline itself is
replaced here by a recorder of the CompressConfig it is given; feeding a real run.json back
through a real run is tested in test_resume.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgekd.run.pipeline as pipeline
from edgekd.cli.cli import cli


@pytest.fixture
def seen(monkeypatch) -> list:
    configs: list = []

    def record(config):
        configs.append(config)
        raise SystemExit(0)  # stop before any work: only the parsed options matter here

    monkeypatch.setattr(pipeline, "compress", record)
    return configs


def test_file_options_and_flags_override(tmp_path: Path, seen: list) -> None:
    job = tmp_path / "job.toml"
    job.write_text('profile = "t4"\nepochs = 12\n"latency-ms" = 0.5\nmax_macs = "1.5M"\n'
                   'baselines = true\nno-bundle = true\nmethod = "kd"\n')
    result = CliRunner().invoke(cli, ["compress", "--config", str(job), "--epochs", "3",
                                      "--method", "fitnet"])
    assert result.exit_code == 0, result.output
    config = seen[0]
    assert (config.profile, config.epochs, config.latency_ms, config.max_macs) == ("t4", 3, 0.5, 1_500_000)
    assert config.baselines and not config.bundle and config.method == "fitnet"
    assert config.options["epochs"] == 3 and config.options["profile"] == "t4"
    assert "out" not in config.options and "resume" not in config.options


def test_a_compress_table_and_a_run_json(tmp_path: Path, seen: list) -> None:
    job = tmp_path / "job.toml"
    job.write_text("[compress]\ncandidates = 9\neta = 2\n")
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"format": "edgekd.run/1", "options": {
        "candidates": 4, "epochs": 5, "max_macs": None, "seed": 3, "no_progress": True}}))
    # epochs None: not in the file, so compress picks them from the data size (issue 11)
    for path, expected in ((job, (9, 2, None, 0)), (run_json, (4, 3, 5, 3))):
        result = CliRunner().invoke(cli, ["compress", "--config", str(path)])
        assert result.exit_code == 0, result.output
        config = seen[-1]
        assert (config.candidates, config.eta, config.epochs, config.seed) == expected


@pytest.mark.parametrize("text, needle", [
    ("bogus = 1\n", "unknown key 'bogus'"),
    ('epochs = "many"\n', "key 'epochs' = 'many'"),
    ('method = "magic"\n', "key 'method'"),
    ("epochs = \n", "invalid TOML"),
])
def test_bad_file_is_one_line(tmp_path: Path, seen: list, text: str, needle: str) -> None:
    job = tmp_path / "job.toml"
    job.write_text(text)
    result = CliRunner().invoke(cli, ["compress", "--config", str(job)])
    assert result.exit_code == 2 and not seen
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --config") and needle in lines[0], lines


def test_method_options_round_trip_through_a_run_json(tmp_path: Path, seen: list) -> None:
    """--method-opt is recorded as its NAME=VALUE texts, so a run.json fed back sets the same options."""
    result = CliRunner().invoke(cli, ["compress", "--method", "fitnet-dkd", "--method-opt", "dkd.beta=4",
                                      "--method-opt", "dkd.warmup=0.25", "--label-smoothing", "0.1"])
    assert result.exit_code == 0, result.output
    first = seen[-1]
    assert first.method_options == {"dkd.beta": 4.0, "dkd.warmup": 0.25} and first.label_smoothing == 0.1
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"format": "edgekd.run/1", "options": first.options}))
    result = CliRunner().invoke(cli, ["compress", "--config", str(run_json)])
    assert result.exit_code == 0, result.output
    assert seen[-1].method_options == first.method_options and seen[-1].label_smoothing == 0.1
