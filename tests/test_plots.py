"""The report's plots, checked from what they draw (edgekd.report.plots.plot_data), not from pixels:
one colour and marker per training method across every plot, legends that name the method,
and captions that say what to read rather than repeat the plot's title (issue 17)."""

from __future__ import annotations

import html
import re

import pytest

from compress_runs import reference_run, summary_of
from edgekd.report.plots import CAPTIONS, METHOD_STYLES, PLOTS, method_style, plot_data, render


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict:
    return summary_of(reference_run(tmp_path_factory))  # fitnet (default) search + scratch/kd baselines


def test_one_colour_and_marker_per_method_across_plots(summary) -> None:
    data = plot_data(summary)
    assert tuple(data) == PLOTS
    styles: dict[str, set] = {}
    plots_of: dict[str, set] = {}
    for name, plot in data.items():
        for series in plot.series:
            if series.method is None:
                continue
            # a method's second line in one plot is a shade of its colour (family)
            styles.setdefault(series.method, set()).add((series.family, series.marker))
            plots_of.setdefault(series.method, set()).add(name)
            assert series.method in series.label, "the legend must name the method"
    from edgekd.run.config import DEFAULT_METHOD

    assert set(styles) == {DEFAULT_METHOD, "kd", "scratch"}  # the default hint method is the fitnet arm
    for method, found in styles.items():
        assert found == {(method_style(method).color, method_style(method).marker)}, method
        assert plots_of[method] == set(PLOTS), f"{method} missing from a plot"
    colours = [next(iter(found))[0] for found in styles.values()]
    assert len(set(colours)) == len(colours), "two methods share a colour"
    # red and black mark the Pareto front, the winner and the teacher, never a method
    others = {s.color for plot in data.values() for s in plot.series if s.method is None}
    assert {"tab:red", "black"} <= others
    assert not others & {s.color for s in METHOD_STYLES.values()}


def test_unknown_method_gets_a_stable_style() -> None:
    assert method_style("newmethod") == method_style("newmethod")
    assert method_style("newmethod") not in METHOD_STYLES.values()


def test_captions_say_what_to_read_not_the_title(summary, tmp_path_factory) -> None:
    page = (reference_run(tmp_path_factory) / "report" / "report.html").read_text()
    captions = [html.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page)]
    assert captions == [CAPTIONS[name] for name in PLOTS]
    for plot, caption in zip(plot_data(summary).values(), captions):
        assert plot.title.lower() not in caption.lower()
    assert "up and to the left is better" in captions[0].lower()
    assert "pareto front" in captions[0].lower()
    md = (reference_run(tmp_path_factory) / "report" / "report.md").read_text()
    assert all(CAPTIONS[name] in md for name in PLOTS)


def test_render_draws_every_plot(summary) -> None:
    for plot in plot_data(summary).values():
        assert render(plot)[:8] == b"\x89PNG\r\n\x1a\n"


def _two_finalists() -> dict:
    """The default run's shape: two fitnet finalists (1 hint epoch + 30 KD epochs), the first
    validated epoch far below the rest."""
    def student(trial: str, start: float, end: float) -> dict:
        curve = [{"epoch": e, "val_acc": end - (end - start) * 0.6 ** (e - 2), "stage": "kd"}
                 for e in range(2, 32)]
        return {"trial": trial, "method": "fitnet", "curve": curve, "hint_epochs": 1}
    return {"search": {"finalists": ["a-final", "b-final"]}, "ablation": None,
            "students": [student("a-final", 0.42, 0.985), student("b-final", 0.55, 0.9855)]}


def test_training_curves_one_colour_per_line_every_epoch_and_a_fitted_axis(tmp_path) -> None:
    from edgekd.report.plots import _curves_plot

    plot = _curves_plot(_two_finalists())
    lines = [s for s in plot.series if s.kind == "line"]
    assert len(lines) == 2 and len({s.color for s in lines}) == 2  # both finalists were one colour
    assert {s.family for s in lines} == {method_style("fitnet").color}
    (band,) = [s for s in plot.series if s.kind == "span"]
    assert band.x == [0.5, 1.5] and "hint" in band.label  # the hint epoch is shown
    assert plot.xlim == (0.5, 31.5)  # every epoch, the hint epoch included
    low, high = plot.ylim  # every point shows, on a logit axis that spreads out 97-99%
    assert plot.logit_y and 0.3 < low < 0.42 and 0.9855 < high < 0.995
    png = render(plot)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "curves.png").write_bytes(png)
