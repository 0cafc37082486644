"""Successive halving: the schedule, the promotion rule, and resume through the run folder.

Training is replaced by a deterministic learning-curve function here so that the scheduler's
own logic (what is trained, what is promoted, what is skipped on resume) is tested in
milliseconds; the real trainer runs in test_compress.py / test_resume.py.
"""

from __future__ import annotations

import io

import pytest

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_json
from edgekd.run.halving import (HalvingConfig, SuccessiveHalving, TrialJob, describe_plan,
                                epochs_spent, plan_record, plan_rungs, promote)
from edgekd.run.rundir import RunDir


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9, 10, 27, 40])
@pytest.mark.parametrize("eta", [2, 3, 4])
def test_plan_shape(n: int, eta: int) -> None:
    config = HalvingConfig(eta=eta, min_epochs=1, max_epochs=8, finalists=1)
    rungs = plan_rungs(n, config)
    assert rungs[0].keep == n and rungs[0].epochs == (1 if len(rungs) > 1 else 8)
    assert rungs[-1].epochs == 8
    for before, after in zip(rungs, rungs[1:]):
        assert after.keep < before.keep and after.epochs > before.epochs
    assert [r.index for r in rungs] == list(range(len(rungs)))
    # continuing from checkpoints never costs more than training everybody fully
    assert epochs_spent(rungs) <= n * 8


def test_plan_nine_candidates_eta_three() -> None:
    rungs = plan_rungs(9, HalvingConfig(eta=3, min_epochs=1, max_epochs=9))
    assert [(r.keep, r.epochs, r.fresh) for r in rungs] == [(9, 1, False), (3, 3, False), (1, 9, True)]
    assert epochs_spent(rungs) == 9 * 1 + 3 * 2 + 1 * 9  # the final training starts from scratch
    continued = plan_rungs(9, HalvingConfig(eta=3, min_epochs=1, max_epochs=9, fresh_final=False))
    assert [(r.keep, r.epochs, r.fresh) for r in continued] == [(9, 1, False), (3, 3, False), (1, 9, False)]
    assert epochs_spent(continued) == 9 * 1 + 3 * 2 + 1 * 6


def test_bad_config_is_one_line_error() -> None:
    with pytest.raises(EdgekdError, match="eta"):
        HalvingConfig(eta=1)
    with pytest.raises(EdgekdError, match="epochs"):
        HalvingConfig(min_epochs=5, max_epochs=2)


def test_promote_ties_follow_search_order() -> None:
    results = {"a": {"val_acc": 0.9}, "b": {"val_acc": 0.95}, "c": {"val_acc": 0.9}}
    assert promote(results, ["c", "b", "a"], 2) == ["b", "c"]
    assert promote(results, ["a", "b", "c"], 2) == ["b", "a"]


# ----------------------------------------------------------------------------- scheduler
QUALITY = {f"c{i}": q for i, q in enumerate([0.50, 0.80, 0.65, 0.95, 0.70, 0.60, 0.75, 0.55, 0.90])}


def learning_curve(trial_id: str, epochs: int) -> float:
    """A saturating curve whose ranking is stable from 1 epoch on."""
    return QUALITY[trial_id] * (1 - 0.5 ** epochs)


class CurveExecutor:
    """Trains on the learning curve and writes result.json like the real trainer does."""

    def __init__(self, run: RunDir, fail_after: int | None = None) -> None:
        self.folder, self.fail_after, self.jobs = run, fail_after, []

    def run(self, jobs, on_done) -> None:
        for job in jobs:
            if self.fail_after is not None and len(self.jobs) >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.jobs.append((job.rung, job.trial_id))
            result = {"val_acc": learning_curve(job.trial_id, job.epochs),
                      "epochs_done": job.epochs, "job_seconds": 0.01}
            atomic_write_json(self.folder.trial(job.folder) / "result.json", result)
            on_done(job, result)


def _scheduler(run: RunDir, events: list, on_event=None) -> SuccessiveHalving:
    def make_job(tid, rung):
        return TrialJob(tid, rung.index, rung.epochs, folder=rung.folder(tid))
    return SuccessiveHalving(HalvingConfig(eta=3, min_epochs=1, max_epochs=9), make_job, run,
                             on_event or events.append)


def test_scheduler_finds_the_best_and_spends_the_planned_epochs(tmp_path) -> None:
    run, events = RunDir(tmp_path), []
    executor = CurveExecutor(run)
    result = _scheduler(run, events).run(list(QUALITY), executor)
    assert result.finalists == ["c3"]
    assert result.survivors[1] == ["c3", "c8", "c1"]
    assert result.epochs_spent == epochs_spent(result.rungs) == 24
    assert (tmp_path / "trials" / "c3-final" / "result.json").is_file()
    assert len(executor.jobs) == sum(r.keep for r in result.rungs)
    assert events[-1].kind == "done" and events[-1].done == events[-1].total
    assert events[-1].best == ("c3", learning_curve("c3", 9))


def test_killed_scheduler_resumes_without_retraining(tmp_path) -> None:
    ref_run = RunDir(tmp_path / "ref")
    reference = _scheduler(ref_run, []).run(list(QUALITY), CurveExecutor(ref_run))

    for kill_at in (4, 9, 11, 12):  # inside rung 0, at its end, inside rung 1, at the last rung
        folder = tmp_path / f"kill{kill_at}"
        first = CurveExecutor(RunDir(folder), fail_after=kill_at)
        with pytest.raises(KeyboardInterrupt):
            _scheduler(RunDir(folder), []).run(list(QUALITY), first)
        second = CurveExecutor(RunDir(folder))
        resumed = _scheduler(RunDir(folder), []).run(list(QUALITY), second)
        assert not set(first.jobs) & set(second.jobs), "a finished trial was trained again"
        assert len(first.jobs) + len(second.jobs) == len(reference.trained)
        assert resumed.finalists == reference.finalists
        assert resumed.survivors == reference.survivors
        assert resumed.results == reference.results


def test_result_json_without_log_line_counts_as_done(tmp_path) -> None:
    """Killed after the trial wrote result.json but before halving.jsonl got its line."""
    run = RunDir(tmp_path)
    atomic_write_json(run.trial("c0") / "result.json", {"val_acc": 0.3, "epochs_done": 1})
    assert run.rung_result(0, "c0", 1) == {"val_acc": 0.3, "epochs_done": 1}
    assert run.rung_result(1, "c0", 3) is None
    assert RunDir(tmp_path).rung_records()[0]["trial"] == "c0"


# ----------------------------------------------------------------------------- issue 17
def test_no_room_to_select_trains_every_candidate(tmp_path) -> None:
    """``compress --candidates 3 --epochs 2`` with fitnet: the first rung already needs 2
    epochs, so nothing can be selected before the last rung. Every shortlisted candidate must
    be trained to --epochs (the plan used to be one rung of ONE trial: two were dropped)."""
    from edgekd.run.config import CompressConfig

    config = CompressConfig(candidates=3, epochs=2, method="fitnet", rung_method="fitnet",
                            finalists=1).halving()
    rungs = plan_rungs(3, config)
    assert [(r.keep, r.epochs) for r in rungs] == [(3, 2)]
    run, events = RunDir(tmp_path), []

    def make_job(tid, rung):
        return TrialJob(tid, rung.index, rung.epochs, folder=rung.folder(tid))

    executor = CurveExecutor(run)
    ids = ["c0", "c3", "c1"]
    result = SuccessiveHalving(config, make_job, run, events.append).run(ids, executor)
    assert sorted(executor.jobs) == [(0, "c0"), (0, "c1"), (0, "c3")]
    assert result.finalists == ["c3"]  # the best of the three, not the first in search order
    assert result.epochs_spent == 3 * 2
    assert "no room to select" in describe_plan(rungs)


def test_explicit_single_rung_trains_every_candidate() -> None:
    rungs = plan_rungs(5, HalvingConfig(rungs=1, max_epochs=4))
    assert [(r.keep, r.epochs, r.fresh) for r in rungs] == [(5, 4, True)]


def test_plan_is_announced_before_training(tmp_path) -> None:
    from edgekd.run.progress import SearchProgress

    run, stream = RunDir(tmp_path), io.StringIO()
    executor = CurveExecutor(run)
    with SearchProgress(stream=stream) as progress:
        _scheduler(run, [], progress.update).run(list(QUALITY), executor)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("plan: 3 rungs: 9 trials x 1 ep -> 3 x 3 ep -> 1 x 9 ep (from scratch); "
                        "24 epochs in all (81 to train all 9 fully)")
    assert lines[1].startswith("rung 1/3")
    record = plan_record(plan_rungs(9, HalvingConfig(eta=3, min_epochs=1, max_epochs=9)))
    assert record["epochs"] == 24 and [r["keep"] for r in record["rungs"]] == [9, 3, 1]


# ----------------------------------------------------------------------------- depth
#: three shallow students that learn fast and saturate low, three deep ones that start slow
#: and overtake them only after 7 epochs (the FitNets picture of a deep, thin student)
DEPTHS = {"s0": 3, "s1": 4, "s2": 5, "d0": 13, "d1": 16, "d2": 19}


def slow_deep_curve(trial_id: str, epochs: int) -> float:
    if trial_id.startswith("s"):
        return 0.60 + 0.01 * epochs + 0.001 * DEPTHS[trial_id]
    return 0.30 + 0.06 * epochs + 0.001 * DEPTHS[trial_id]


class DepthExecutor(CurveExecutor):
    def run(self, jobs, on_done) -> None:
        for job in jobs:
            self.jobs.append((job.rung, job.trial_id))
            result = {"val_acc": slow_deep_curve(job.trial_id, job.epochs), "epochs_done": job.epochs}
            atomic_write_json(self.folder.trial(job.folder) / "result.json", result)
            on_done(job, result)


@pytest.mark.parametrize("grouped", [False, True])
def test_halving_keeps_a_deep_student_that_wins_only_after_more_epochs(tmp_path, grouped) -> None:
    from edgekd.run.halving import depth_groups

    run = RunDir(tmp_path)
    config = HalvingConfig(eta=3, min_epochs=1, max_epochs=9, finalists=2)
    groups = depth_groups(DEPTHS) if grouped else None
    scheduler = SuccessiveHalving(config, lambda tid, rung: TrialJob(tid, rung.index, rung.epochs,
                                                                      folder=rung.folder(tid)),
                                  run, groups=groups)
    result = scheduler.run(list(DEPTHS), DepthExecutor(run))
    final_depths = sorted(DEPTHS[t] for t in result.survivors[-1])
    if grouped:  # the best deep student reaches the final rung and wins there
        assert final_depths == [5, 19]
        assert result.finalists[0] == "d2"
        assert slow_deep_curve("d2", 9) > slow_deep_curve("s2", 9)
    else:  # plain accuracy ranking after 1 epoch: every deep student is gone
        assert final_depths == [4, 5]
        assert result.finalists[0] == "s2"


def test_depth_groups_split_at_the_median() -> None:
    from edgekd.run.halving import depth_groups

    assert depth_groups(DEPTHS) == {"s0": "shallow", "s1": "shallow", "s2": "shallow",
                                    "d0": "deep", "d1": "deep", "d2": "deep"}
    assert promote({"a": {"val_acc": 0.9}, "b": {"val_acc": 0.8}, "c": {"val_acc": 0.1}},
                   ["a", "b", "c"], 2, {"a": "shallow", "b": "shallow", "c": "deep"}) == ["a", "c"]


def test_embedded_default_gets_the_data_size_schedule_and_stride_2_stems() -> None:
    """The README's first command (no profile, teacher or data) runs the data-size schedule
    with augmentation like any other run (30 epochs of the 10k subset, shifts, 8 cached views,
    one thread per CPU trial), and its search also tries stride-2 stems; a given input keeps
    stride-1 stems only. Explicit settings always win."""
    from edgekd.run.config import EMBEDDED_STEM_STRIDES, CompressConfig, default_epochs

    demo = CompressConfig(device="cpu").resolved(10_000)
    assert (demo.epochs, demo.augment, demo.teacher_views, demo.threads_per_trial) == (30, "auto", 8, 1)
    assert demo.stem_strides == EMBEDDED_STEM_STRIDES == (1, 2)
    assert "stem_strides" in demo.identity_config()
    own = CompressConfig(data="mine.npz", device="cpu").resolved(10_000)
    assert (own.epochs, own.augment, own.stem_strides) == (default_epochs(10_000), "auto", (1,))
    assert "stem_strides" not in own.identity_config()  # runs of before keep their identity
    flags = CompressConfig(epochs=9, augment="shift", stem_strides=(1,)).resolved(10_000)
    assert (flags.epochs, flags.augment, flags.stem_strides) == (9, "shift", (1,))


def test_default_epochs_follow_the_data_size_and_the_device() -> None:
    """About 300k training images per trial on CPU and 1.5M on a GPU, clamped to 4..60 epochs:
    a 50k-image set gets 6 epochs on CPU and 30 on CUDA; an explicit --epochs wins on both."""
    from edgekd.run.config import CompressConfig

    assert CompressConfig(data="c.npz", device="cpu").resolved(50_000).epochs == 6
    assert CompressConfig(data="c.npz", device="cpu").resolved(200_000).epochs == 4
    assert CompressConfig(data="c.npz", device="cuda").resolved(50_000).epochs == 30
    assert CompressConfig(data="c.npz", device="cuda").resolved(10_000).epochs == 60
    assert CompressConfig(data="c.npz", device="cuda").resolved(1_000_000).epochs == 4
    assert CompressConfig(data="c.npz", device="cuda", epochs=12).resolved(50_000).epochs == 12


def test_embedded_search_shortlists_stride_2_stems_and_a_given_config_does_not() -> None:
    """search_stage searches the config's stem strides: the embedded default's budget is then
    met by students that halve the image in their first conv (much faster to run on the host)."""
    from edgekd.inputs.loaders import load_dataset
    from edgekd.inputs.profiles import load_profile
    from edgekd.run.config import EMBEDDED_LATENCY_MS, CompressConfig
    from edgekd.run.pipeline import search_stage
    from edgekd.run.setup import Inputs
    from edgekd.search.space import StudentSpec

    dataset = load_dataset(None)
    profile = load_profile("host-cpu").with_budget(latency_ms=EMBEDDED_LATENCY_MS)
    inputs = Inputs(profile, dataset, None, "")

    def stems(config: CompressConfig) -> set[int]:
        _, shortlist, _ = search_stage(config.resolved(len(dataset.y_train)), inputs)
        return {StudentSpec.from_dict(row["spec"]).stem_stride for row in shortlist}

    assert 2 in stems(CompressConfig(device="cpu"))
    assert stems(CompressConfig(device="cpu", stem_strides=(1,))) == {1}
