"""The Ray executor on a local Ray instance with 2 CPUs finds the same winner as the local
executor, and the driver (not the workers) writes every trial file into the run folder."""

from __future__ import annotations

import pytest

from compress_runs import compress_args, reference_run, run_cli, shared_base, summary_of, tiny_inputs
from edgekd.core.fileio import read_json, read_jsonl

pytest.importorskip("ray", reason="Ray is not installed: pip install 'edgekd[ray]'")


def test_ray_executor_matches_local(tmp_path_factory) -> None:
    reference = reference_run(tmp_path_factory)
    base = shared_base(tmp_path_factory)
    data, teacher = tiny_inputs(base)
    out = base / "runs" / "ray"
    proc = run_cli(compress_args(data, teacher, out, "--executor", "ray", "--ray-cpus", "2",
                                 "--no-bundle"), base, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    local, remote = read_json(reference / "outcome.json"), read_json(out / "outcome.json")
    assert remote["shortlist"] == local["shortlist"]
    # the reference also trains --baselines, whose best-by-validation method may win there:
    # compare the search's own finalist
    assert remote["selected"] == remote["finalists"][0] == local["finalists"][0]
    assert remote["winner"] == remote["selected"] + "-all"  # retrained on train + validation, then shipped
    assert remote["survivors"] == local["survivors"]
    for trial in remote["shortlist"]:
        folder = out / "trials" / trial
        for name in ("spec.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
            assert (folder / name).is_file(), f"{trial}/{name} was not written by the driver"
        # the driver-written metrics hold every epoch, including the ones of earlier rungs
        epochs = [r["epoch"] for r in read_jsonl(folder / "metrics.jsonl")]
        assert epochs == list(range(1, read_json(folder / "result.json")["epochs_done"] + 1))
    assert summary_of(out)["winner"] == local["finalists"][0] + "-all"


def test_unreachable_ray_address_is_one_line(tmp_path) -> None:
    """A --ray-address nobody listens on fails at once (ray.init alone retries for minutes)."""
    import socket

    from edgekd.core.errors import EdgekdError
    from edgekd.run.executors import RayExecutor, TrialContext
    from edgekd.run.rundir import RunDir

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EdgekdError, match=f"no Ray cluster answers at --ray-address 127.0.0.1:{port}"):
        RayExecutor(RunDir(tmp_path), TrialContext([], None), address=f"127.0.0.1:{port}")
