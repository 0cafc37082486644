"""Progress for the long steps: the teacher's outputs computed once (a minute and more with a
real teacher) say so while they run, --no-progress silences them, and the time left ignores
the first trial's one-time cost and counts the steps after training."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgekd.core.progress import set_notes  # noqa: E402
from edgekd.inputs.data import Normalization  # noqa: E402
from edgekd.inputs.logits import teacher_logits  # noqa: E402
from edgekd.run.halving import HalvingEvent, Rung, _Tally  # noqa: E402


def _teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


def test_computing_the_teacher_outputs_says_so_once(tmp_path, capsys) -> None:
    x = np.random.default_rng(0).integers(0, 255, (40, 1, 4, 4), dtype=np.uint8)
    norm = Normalization((0.5,), (0.25,))
    first = teacher_logits(_teacher(), x, norm, cache_dir=tmp_path, teacher_fp="f" * 32)
    said = capsys.readouterr().err
    assert "computing the teacher's outputs on 40 training images" in said and "computed in" in said
    again = teacher_logits(_teacher(), x, norm, cache_dir=tmp_path, teacher_fp="f" * 32)
    assert np.array_equal(first, again) and capsys.readouterr().err == ""  # cached: nothing to say
    previous = set_notes(False)
    try:
        teacher_logits(_teacher(), x, norm, cache_dir=None, teacher_fp="f" * 32)
    finally:
        set_notes(previous)
    assert capsys.readouterr().err == ""  # --no-progress


def test_time_left_ignores_the_first_trials_one_time_cost_and_counts_the_finish() -> None:
    from edgekd.run.progress import counting_the_finish

    rung = Rung(0, 4, 1)
    seen: list[HalvingEvent] = []
    tally = _Tally(counting_the_finish(seen.append, 30.0), [rung], total=4, remaining_epochs=4)
    tally.count("a", {"val_acc": 0.9}, 1, seconds=95.0)  # caching the teacher's outputs + 1 epoch
    tally.count("b", {"val_acc": 0.9}, 1, seconds=10.0)
    tally.count("c", {"val_acc": 0.9}, 1, seconds=11.0)
    tally.event("trial", rung)
    assert seen[-1].eta_s == pytest.approx(11.0 * 1 + 30.0)  # median epoch x epochs left + the finish
