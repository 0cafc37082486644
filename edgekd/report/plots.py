"""The report's three plots, as data first (:func:`plot_data`) and PNG second (:func:`render`).

Keeping what is drawn (series with their method, colour, marker and legend label) apart from
how it is drawn lets a test check the plots' content, e.g. that a method has ONE colour and
marker in every plot of a report, without reading pixels.

* ``accuracy_vs_latency``: test accuracy against the target latency (log axis); the Pareto
  front (red steps), the winner (red ring), the teacher (black star), the latency budget.
* ``accuracy_vs_macs``: test accuracy against MACs per image (log axis), the MACs budget.
* ``training_curves``: validation accuracy per epoch of the finalists and the baselines.

Students are coloured and marked by training method (:func:`method_style`) in every plot;
red and black are kept for the Pareto front, the winner and the teacher.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from edgekd.distill.methods import METHODS, PlotStyle

PLOTS = ("accuracy_vs_latency", "accuracy_vs_macs", "training_curves")

#: What to read from each plot: the figure's caption in report.html and report.md (the plot
#: carries its own title, so the caption does not repeat it).
CAPTIONS = {
    "accuracy_vs_latency": "Up and to the left is better: more accurate and faster. The red step "
                           "line is the Pareto front (no other student is both faster and more "
                           "accurate), the red ring the winner, the black star the teacher, the "
                           "dashed line the latency budget. Filled markers are measured "
                           "latencies, hollow ones predicted or calibrated by the cost model.",
    "accuracy_vs_macs": "Up and to the left is better: more accurate for fewer multiply-accumulates "
                        "per image. Left of the dashed line is within the MACs budget; the black "
                        "star is the teacher.",
    "training_curves": "Validation accuracy after each epoch (the grey band: the hint stage, which "
                       "has no validation). A curve still rising at its last epoch would gain from a "
                       "larger --epochs; with --baselines the methods trained the same architecture, "
                       "so their curves compare the methods. The y axis is a logit scale, so the "
                       "last points near 100% are spread as far apart as the first ones.",
}


class _MethodStyles(Mapping[str, PlotStyle]):
    """Method name -> its colour and marker, for every registered method that declares one
    (:attr:`edgekd.distill.methods.Method.plot`; red and black are left out of them: they mark
    the Pareto front, the winner and the teacher). Read live, so a method registered at run
    time brings its own style."""

    def __getitem__(self, name: str) -> PlotStyle:
        method = METHODS.get(name)
        if method is None or method.plot is None:
            raise KeyError(name)
        return method.plot

    def __iter__(self) -> Iterator[str]:
        return (name for name, method in METHODS.items() if method.plot is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


METHOD_STYLES = _MethodStyles()
_SPARE_STYLES = (PlotStyle("tab:pink", "P"), PlotStyle("tab:olive", "X"), PlotStyle("tab:cyan", "h"),
                 PlotStyle("tab:gray", "p"))
_LINESTYLES = ("-", "--", ":", "-.")


def method_style(method: str) -> PlotStyle:
    """The style of ``method``; a method that declares none (or is not registered) gets a spare
    style chosen from its name, so it is the same in every plot and every report."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    return _SPARE_STYLES[sum(method.encode()) % len(_SPARE_STYLES)]


@dataclass
class Series:
    """One thing drawn: ``kind`` in {"scatter", "line", "step", "vline", "span", "ring", "star"};
    ``method`` is set for students (their colour and marker come from it)."""

    kind: str
    label: str
    x: list[float]
    y: list[float] = field(default_factory=list)
    method: str | None = None
    color: str = "black"
    family: str = ""  # a student's: its method's colour (``color`` may be a shade of it)
    marker: str = ""
    filled: bool = True
    linestyle: str = "-"


@dataclass
class PlotData:
    name: str
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    log_x: bool = False
    count_x: bool = False  # x ticks as counts (500K, 1M)
    integer_x: bool = False
    empty_text: str = ""
    ylim: tuple[float, float] | None = None  # None: matplotlib's
    logit_y: bool = False  # accuracies on a logit axis (stretches the region near 100%)
    xlim: tuple[float, float] | None = None

    @property
    def caption(self) -> str:
        return CAPTIONS[self.name]


def _student(kind: str, method: str, label: str, x: list[float], y: list[float], shade: int = 0,
             **kw: Any) -> Series:
    style = method_style(method)
    return Series(kind, label, x, y, method=method, color=style.shade(shade), marker=style.marker,
                  family=style.color, **kw)


def target_ms(student: dict) -> float | None:
    """A student's (or the teacher's) latency on the target, else on the host, in ms."""
    target = student["latency"].get("target") or student["latency"].get("host")
    return None if target is None else target["ms"]


def reference_series(students: list[dict], x_of: Any) -> list[Series]:
    """One grey diamond per reference student (a torchvision model), labelled with its name."""
    return [Series("scatter", f"{s.get('model')} (reference)", [x_of(s)], [s["test_acc"]],
                   color="tab:gray", marker="D")
            for s in students if s.get("role") == "reference" and x_of(s)]


def _latency_plot(summary: dict) -> PlotData:
    students, teacher, budget = summary["students"], summary["teacher"], summary["run"]["budget"]
    series: list[Series] = []
    groups: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for s in students:
        ms = target_ms(s)
        if ms and s.get("role") != "reference":
            label = ((s["latency"]["target"] or s["latency"]["host"]) or {}).get("label")
            groups.setdefault((s["method"], label == "measured"), []).append((ms, s["test_acc"]))
    for (method, measured), pts in sorted(groups.items()):
        how = "measured" if measured else "predicted"
        series.append(_student("scatter", method, f"{method} ({how})", *map(list, zip(*pts)),
                               filled=measured))
    series += reference_series(students, target_ms)
    front = sorted((target_ms(s), s["test_acc"]) for s in students if s["pareto"] and target_ms(s))
    if front:
        series.append(Series("step", "Pareto front", *map(list, zip(*front)), color="tab:red"))
    winner = next(s for s in students if s["trial"] == summary["winner"])
    if target_ms(winner):
        series.append(Series("ring", f"winner {winner['trial']}", [target_ms(winner)],
                             [winner["test_acc"]], color="tab:red"))
    t_lat = teacher["latency"]["target"] or teacher["latency"]["host"]
    if t_lat and teacher["test_acc"] is not None:
        series.append(Series("star", f"teacher ({t_lat['label']})", [t_lat["ms"]],
                             [teacher["test_acc"]], marker="*"))
    if budget.get("latency_ms"):
        series.append(Series("vline", f"budget {budget['latency_ms']} ms", [budget["latency_ms"]],
                             color="tab:gray", linestyle="--"))
    return PlotData("accuracy_vs_latency", "accuracy vs latency",
                    f"latency on {summary['run']['profile']} (ms, batch {budget.get('batch', 1)})",
                    "test accuracy", series, log_x=True)


def _macs_plot(summary: dict) -> PlotData:
    teacher, budget = summary["teacher"], summary["run"]["budget"]
    by_method: dict[str, list[tuple[float, float]]] = {}
    for s in summary["students"]:
        if s["macs"] and s.get("role") != "reference":
            by_method.setdefault(s["method"], []).append((s["macs"], s["test_acc"]))
    series = [_student("scatter", method, method, *map(list, zip(*pts)))
              for method, pts in sorted(by_method.items())]
    series += reference_series(summary["students"], lambda s: s["macs"])
    if teacher["macs"] and teacher["test_acc"] is not None:
        series.append(Series("star", "teacher", [teacher["macs"]], [teacher["test_acc"]], marker="*"))
    if budget.get("macs"):
        series.append(Series("vline", "MACs budget", [budget["macs"]], color="tab:gray",
                             linestyle="--"))
    return PlotData("accuracy_vs_macs", "accuracy vs MACs", "MACs per image", "test accuracy",
                    series, log_x=True, count_x=True)


def _curves_plot(summary: dict) -> PlotData:
    """Validation accuracy per epoch of the finalists and the baselines: one colour per line (a
    method's second trial a shade of its colour), the hint epochs as a grey band (they have no
    validation), every epoch on the x axis, a logit y axis fitted to the curves (their first
    epochs far below and the last ones near 100% both readable)."""
    shown = set(summary["search"].get("finalists") or []) | {
        a["trial"] for a in summary.get("ablation") or []}
    series, per_method, hint, last, accs_all = [], {}, 0, 0, []
    for s in summary["students"]:
        if s["trial"] in shown and s["curve"]:
            n = per_method[s["method"]] = per_method.get(s["method"], -1) + 1
            epochs, accs = [c["epoch"] for c in s["curve"]], [c["val_acc"] for c in s["curve"]]
            series.append(_student("line", s["method"], f"{s['method']}: {s['trial']}", epochs, accs,
                                   shade=n, linestyle=_LINESTYLES[n % len(_LINESTYLES)]))
            hint, last = max(hint, s.get("hint_epochs") or 0), max(last, epochs[-1])
            accs_all += accs
    if hint:
        series.insert(0, Series("span", f"hint stage ({hint} epoch{'s' if hint > 1 else ''}, no validation)",
                                [0.5, hint + 0.5], color="0.85"))
    return PlotData("training_curves", "training curves of the finalists", "epoch",
                    "validation accuracy (logit scale)", series, integer_x=True,
                    empty_text="no training curves recorded", ylim=_logit_limits(accs_all),
                    xlim=(0.5, last + 0.5) if last else None, logit_y=bool(accs_all))


def _logit_limits(values: list[float]) -> tuple[float, float] | None:
    """y limits for a logit axis around ``values`` (accuracies in (0, 1)), padded by a tenth of
    their span in logit units: every point shows, and 97-99% is as wide as 50-90%."""
    inside = [min(max(v, 1e-4), 1 - 1e-4) for v in values]
    if not inside:
        return None
    logit = [math.log(v / (1 - v)) for v in inside]
    pad = max(0.1, 0.1 * (max(logit) - min(logit)))
    expit = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    return expit(min(logit) - pad), expit(max(logit) + pad)


def plot_data(summary: dict) -> dict[str, PlotData]:
    """What each plot of the report draws (in :data:`PLOTS` order)."""
    plots = (_latency_plot(summary), _macs_plot(summary), _curves_plot(summary))
    return {plot.name: plot for plot in plots}


# ============================================================================ rendering
def plots(summary: dict) -> dict[str, bytes]:
    """PNG bytes of the three plots (matplotlib Figure objects, no pyplot state)."""
    return {name: render(plot) for name, plot in plot_data(summary).items()}


def render(plot: PlotData) -> bytes:
    """Draw ``plot`` and return its PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    ax = Figure(figsize=(7, 4.5), dpi=110).add_subplot()
    for s in plot.series:
        _draw(ax, s)
    if not plot.series and plot.empty_text:
        ax.text(0.5, 0.5, plot.empty_text, ha="center", transform=ax.transAxes)
    if plot.log_x:
        _plain_log_axis(ax, _count_text if plot.count_x else lambda v: f"{v:g}")
    if plot.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(20, int(plot.xlim[1]) if plot.xlim else 20)))
    if plot.xlim:
        ax.set_xlim(*plot.xlim)
    if plot.logit_y:
        _percent_logit_axis(ax)
    elif "accuracy" in plot.ylabel:
        from matplotlib.ticker import FuncFormatter

        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:.2f}%"))
    if plot.ylim:
        ax.set_ylim(*plot.ylim)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    ax.set_title(plot.title)
    ax.grid(alpha=0.3)
    if plot.series:
        ax.legend(fontsize=7, loc="best")
    buffer = io.BytesIO()
    ax.figure.tight_layout()
    ax.figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw(ax: Any, s: Series) -> None:
    if s.kind == "scatter":
        ax.scatter(s.x, s.y, marker=s.marker, label=s.label, alpha=0.8, edgecolors=s.color,
                   facecolors=s.color if s.filled else "none")
    elif s.kind == "line":
        ax.plot(s.x, s.y, color=s.color, marker=s.marker, markersize=4, ls=s.linestyle,
                label=s.label)
    elif s.kind == "step":
        ax.step(s.x, s.y, where="post", color=s.color, lw=1.2, label=s.label)
    elif s.kind == "ring":
        ax.scatter(s.x, s.y, s=160, facecolors="none", edgecolors=s.color, lw=1.5, label=s.label)
    elif s.kind == "star":
        ax.scatter(s.x, s.y, marker="*", s=220, color=s.color, label=s.label)
    elif s.kind == "span":
        ax.axvspan(s.x[0], s.x[1], color=s.color, alpha=0.6, lw=0, label=s.label)
    elif s.kind == "vline":
        ax.axvline(s.x[0], color=s.color, ls=s.linestyle, lw=1, label=s.label)
    else:
        raise ValueError(f"unknown series kind {s.kind!r}")


def _percent_logit_axis(ax: Any) -> None:
    """A logit y axis labelled in percent (50%, 90%, 99%, ...)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ax.set_yscale("logit")
    ticks = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:g}%"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _count_text(value: float) -> str:
    from edgekd.core.units import format_count

    return format_count(int(round(value))) if value >= 1 else f"{value:g}"


def _plain_log_axis(ax: Any, text: Callable[[float], str]) -> None:
    """Log-scaled x axis labelled with plain numbers (0.05, 0.1; 500K, 1M with ``text``)
    instead of powers of ten; minor ticks labelled at 2x and 5x."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: text(v)))

    def minor(v: float, _pos: int) -> str:
        low, high = ax.get_xlim()
        digits = "23456789" if high / max(low, 1e-12) < 3 else "25"  # a narrow range: all
        return text(v) if f"{v:e}"[0] in digits else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))
