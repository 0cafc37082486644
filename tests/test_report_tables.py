"""The report's words and numbers, on small summaries: the speed-up over interleaved rounds
with its spread, the validation-accuracy column, and the winner's selection rule with a mark
when another student beats it on the test split."""

from __future__ import annotations

import pytest

from edgekd.report.report import markdown
from edgekd.report.tables import _speed, headline, selection, selection_text, table_rows


def _lat(ms: float, rounds: list[float] | None = None, session: str = "s1") -> dict:
    found = {"ms": ms, "label": "measured", "batch": 1, "device": "cpu", "backend": "ort"}
    return {**found, "rounds": rounds, "session": session} if rounds else found


def test_speedup_is_the_median_over_interleaved_rounds_with_its_range() -> None:
    teacher = {"host": _lat(0.17, [0.17, 0.20, 0.16, 0.30, 0.18]), "target": None}
    student = {"host": _lat(0.05, [0.05, 0.06, 0.05, 0.10, 0.05]), "target": None}
    found = _speed(student, teacher)
    # per-round ratios 3.4, 3.33, 3.2, 3.0, 3.6: median 3.33, range 3.0-3.6
    assert found["speedup"]["host"] == 3.33
    assert found["speedup_spread"]["host"] == {"median": 3.33, "low": 3.0, "high": 3.6, "rounds": 5}


def test_rounds_of_different_sessions_give_the_plain_ratio() -> None:
    teacher = {"host": _lat(0.17, [0.17] * 5, session="a"), "target": None}
    student = {"host": _lat(0.05, [0.05] * 5, session="b"), "target": None}
    found = _speed(student, teacher)
    assert found["speedup"]["host"] == 3.4 and found["speedup_spread"]["host"] is None


def _summary(winner_acc: tuple[float, float], other_acc: tuple[float, float], other_ms: float) -> dict:
    """A host-cpu run with two students; the winner (``w``) at 0.026 ms."""
    def student(trial, val, test, ms):
        latency = {"host": _lat(ms, [ms] * 5), "target": _lat(ms, [ms] * 5)}
        return {"trial": trial, "id": trial, "method": "fitnet", "depth": 6, "macs": 1000, "params": 10,
                "size_mb": 0.01, "epochs": 3, "val_acc": val, "test_acc": test, "latency": latency,
                "curve": [], **_speed(latency, teacher["latency"])}
    teacher = {"macs": 100000, "params": 1000, "test_acc": 0.99, "size_mb": 1.0,
               "latency": {"host": _lat(0.17, [0.17] * 5), "target": _lat(0.17, [0.17] * 5)}}
    students = [student("w", *winner_acc, 0.026), student("o", *other_acc, other_ms)]
    from edgekd.report.report import pareto_front
    from edgekd.report.plots import target_ms
    front = pareto_front([(s["trial"], target_ms(s), s["test_acc"]) for s in students])
    for s in students:
        s["pareto"] = s["trial"] in front
    return {"run": {"folder": "r", "profile": "host-cpu", "profile_kind": "cpu",
                    "budget": {"latency_ms": 0.05, "batch": 1, "macs": None},
                    "data": {}, "teacher": {}, "seed": 0},
            "search": {"target_is_host": True, "rungs": [], "survivors": []},
            "teacher": teacher, "students": students, "winner": "w", "ablation": None,
            "selection": selection(students, "w", baselines=False)}


def test_a_winner_beaten_on_the_test_split_is_marked_with_the_reason() -> None:
    # the case: the winner 98.55% at 0.026 ms, another 98.60% at 0.023 ms
    summary = _summary((0.990, 0.9855), (0.985, 0.9860), 0.023)
    assert summary["selection"]["pareto"] == {"winner_on_front": False, "beaten_by": ["o"]}
    text = selection_text(summary)
    assert "best validation accuracy" in text and "off the test-accuracy Pareto front" in text
    assert "o is faster and at least as accurate" in text and "98.50% against 99.00%" in text
    rows = {row[0]: row for row in table_rows(summary)}
    assert rows["w *"][8:11] == ["99.00%", "98.55%", "off front"]  # val acc, test acc, Pareto (after family)
    assert rows["o"][8:11] == ["98.50%", "98.60%", "yes"]
    md = markdown(summary)
    assert "| val acc | test acc | Pareto |" in md and "off the test-accuracy Pareto front" in md
    assert "val acc 99.00%" in headline(summary)


def test_a_winner_on_the_front_gets_the_rule_only() -> None:
    summary = _summary((0.99, 0.9860), (0.98, 0.9855), 0.030)
    assert summary["selection"]["pareto"]["winner_on_front"]
    assert "off the" not in selection_text(summary)
    assert "speed-up on this host: 6.54x (6.54-6.54 over 5 rounds)" in headline(summary)


@pytest.mark.parametrize("baselines", [False, True])
def test_the_rule_names_the_baselines_when_they_chose(baselines: bool) -> None:
    summary = _summary((0.99, 0.9860), (0.98, 0.9855), 0.030)
    rule = selection(summary["students"], "w", baselines=baselines)["rule"]
    assert ("--baselines" in rule) == baselines and "validation accuracy" in rule


def test_changes_name_each_row_whose_figures_moved() -> None:
    from edgekd.report.tables import changes

    before = _summary((0.99, 0.9860), (0.98, 0.9855), 0.030)
    after = _summary((0.99, 0.9860), (0.98, 0.9855), 0.030)
    assert changes(before, after) == []
    slow = _lat(0.078, [0.078] * 5)
    w = after["students"][0]
    w["latency"] = {"host": slow, "target": slow}
    w.update(_speed(w["latency"], after["teacher"]["latency"]))
    lines = changes(before, after)
    assert lines[0] == ("changed row 'w': latency 0.026 (measured) -> 0.078 (measured); speed-up "
                        "6.54x (6.54-6.54 over 5 rounds) -> 2.18x (2.18-2.18 over 5 rounds)")
    assert "accuracy_vs_latency.png" in lines[-1]
