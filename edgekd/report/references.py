"""The report's section on the reference students (``compress --reference`` / ``--baselines``):
the torchvision models a user would otherwise have distilled into, trained like the finalists,
in one table beside the winner, and one plain sentence on whether one of them beat the search.

"Beat" means: on or past the winner's side of the Pareto front, i.e. at least as accurate on the
test split at an equal or lower latency, and better in one of the two (latency on the target when
measured there, else on this host, :func:`edgekd.report.plots.target_ms`). A reference that is
more accurate but slower is named too, with both latencies, so the trade is visible.
"""

from __future__ import annotations

from edgekd.core import fmt
from edgekd.report.plots import target_ms

__all__ = ["reference_blocks", "reference_verdict"]


def _ms(student: dict) -> str:
    ms = target_ms(student)
    return "-" if ms is None else f"{ms:.3f} ms"


def reference_verdict(winner: dict, references: list[dict]) -> str:
    """One sentence: did a reference student beat the search's winner (see the module docstring)?"""
    if not references:
        return "No reference model fits the budget, so none was trained."
    w_ms, w_acc = target_ms(winner), winner["test_acc"]
    better = sorted((r for r in references if r["test_acc"] > w_acc), key=lambda r: -r["test_acc"])
    timed = [r for r in references if w_ms is not None and target_ms(r) is not None]
    beat = sorted((r for r in timed if target_ms(r) <= w_ms and r["test_acc"] >= w_acc
                   and (r["test_acc"] > w_acc or target_ms(r) < w_ms)), key=lambda r: -r["test_acc"])
    own = f"edgekd's winner {winner['trial']} ({fmt.percent(winner['test_acc'])}, {_ms(winner)})"
    if beat:
        r = beat[0]
        return (f"A reference model beat edgekd's search: {r['model']} reaches "
                f"{fmt.percent(r['test_acc'])} at {_ms(r)}, against {own}.")
    if better:
        r = better[0]
        return (f"No reference model beat edgekd's search at its latency; {r['model']} is more accurate "
                f"({fmt.percent(r['test_acc'])}) but slower ({_ms(r)}) than {own}.")
    return f"{own} is at least as accurate as every reference model within the budget."


def reference_blocks(summary: dict) -> list[tuple]:
    """The section's document blocks (see :func:`edgekd.report.report.document`); none when the
    run trained no reference students."""
    if summary["search"].get("references") is None:
        return []
    refs = [s for s in summary["students"] if s.get("role") == "reference"]
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    rows = [[f"{s['model'] or s['trial']}{' *' if s is winner else ''}", s["method"], fmt.count(s["macs"]),
             fmt.count(s["params"]), str(s["epochs"]), fmt.percent(s["val_acc"]), fmt.percent(s["test_acc"]),
             _ms(s)] for s in [winner, *sorted(refs, key=lambda r: -r["test_acc"])]]
    rows[0][0] = f"{winner['trial']} (edgekd's winner)"
    return [("h2", "Reference students"),
            ("p", "The torchvision models a user would reach for, built for these classes (stride-1 stem "
                  "and no max-pool under 64 px), costed by the same latency model; those within the budget "
                  "were trained with the finalists' method and schedule. " + reference_verdict(winner, refs)),
            ("table", ("model", "method", "MACs", "params", "epochs", "val acc", "test acc", "latency"), rows)]
