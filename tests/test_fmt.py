"""One formatting of numbers across CLI, report and deploy output (issue 15, item 7): the
rules of edgekd.core.fmt, whose shared functions are the deploy kit's (deploy/fmt.py, torch-free)."""

from __future__ import annotations

import pytest

import edgekd_deploy.fmt as kit
from edgekd.core import fmt

VALUES = [0.0, 0.5, 0.971, 0.97200001, 0.39899998903274536, 1.0, 0.0321, 0.0325, 9.9996,
          99.99, 123.456, 13028.8, 30913.83, 95.44, 1e6 / 3]


def test_rules() -> None:
    assert fmt.percent(0.972) == "97.20%" and fmt.percent(None) == "-"
    assert fmt.ms(0.03214) == "0.032" and fmt.ms(123.456) == "123.5"
    assert fmt.rate(13028.8) == "13,000" and fmt.rate(95.44) == "95.4" and fmt.rate(0.5) == "0.5"
    assert fmt.fps(0.092) == "10,900" and fmt.fps(0.5, batch=8) == "16,000"
    assert fmt.speedup(2.857) == "2.86x" and fmt.count(462_300) == "462.3K"
    assert fmt.significant(13028.8) == 13000.0 and fmt.significant(0.0012345) == 0.00123
    assert fmt.clean({"a": [0.39899998903274536, 1, "x"], "b": 0.1 + 0.2}) == \
        {"a": [0.399, 1, "x"], "b": 0.3}
    # the gap in points, from float32-noisy accuracies (0.788 - 0.7745 is 0.013500000000000068)
    assert fmt.gap_points(0.788, 0.7745) == " (1.35 points below the teacher)"
    assert fmt.gap_points(0.9840000033, 0.986) == " (0.20 points above the teacher)"
    assert fmt.gap_points(0.5, 0.5) == " (the teacher's accuracy)" and fmt.gap_points(None, 0.5) == ""


def test_edgekd_reuses_the_kits_functions() -> None:
    """One implementation (issue 10.7): edgekd imports the kit's, it does not keep a copy."""
    for name in ("MISSING", "percent", "ms", "significant", "rate"):
        assert getattr(fmt, name) is getattr(kit, name), name


@pytest.mark.parametrize("value", VALUES)
def test_deploy_prints_the_same(value: float) -> None:
    assert kit.percent(value) == fmt.percent(value)
    assert kit.ms(value) == fmt.ms(value)
    assert kit.rate(value) == fmt.rate(value)
