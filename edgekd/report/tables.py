"""The report's words and numbers for people: the students table (one row per trained
student, the teacher first), the headline (teacher against winner), the speed-up over the
teacher and the budget in words. :mod:`edgekd.report.report` builds the summary these read and
renders them to Markdown and HTML.

Speed-up over the teacher is the teacher's latency divided by the student's, both taken the
same way (same device and label kind)."""

from __future__ import annotations

import statistics
from typing import Any

from edgekd.core import fmt


def _speed(latency: dict[str, dict | None], teacher: dict[str, dict | None]) -> dict[str, Any]:
    """FPS, speed-up and its spread, on the host and on the target.

    FPS = 1000 x batch / ms. Speed-up = teacher ms / student ms, both taken the same way. When
    both were timed together in rounds (one interleaved session, see
    :func:`edgekd.run.ship_stages.measure_stage`), the speed-up is the median over the rounds
    of ``teacher_round_ms / student_round_ms`` and ``speedup_spread`` gives the lowest and
    highest round: how far the figure repeats on this machine."""
    fps, speedup, spread = {}, {}, {}
    for where in ("host", "target"):
        mine, theirs = latency.get(where), teacher.get(where)
        # 3 significant digits: the latency it comes from has about as many (edgekd.core.fmt)
        fps[where] = None if not mine else fmt.significant(1000.0 * mine.get("batch", 1) / mine["ms"])
        same_kind = mine and theirs and (mine["label"].startswith("measured")
                                         == theirs["label"].startswith("measured"))
        speedup[where] = round(theirs["ms"] / mine["ms"], 2) if same_kind and mine["ms"] > 0 else None
        spread[where] = _round_ratios(mine, theirs) if same_kind else None
        if spread[where]:
            speedup[where] = spread[where]["median"]
    return {"fps": fps, "speedup": speedup, "speedup_spread": spread}


def _round_ratios(mine: dict, theirs: dict) -> dict[str, Any] | None:
    """``{"median", "low", "high", "rounds"}`` of the per-round speed-ups of two latencies timed
    in the same interleaved session (None otherwise)."""
    ours, their = mine.get("rounds"), theirs.get("rounds")
    if not ours or not their or len(ours) != len(their) or mine.get("session") != theirs.get("session") \
            or min(ours) <= 0:
        return None
    ratios = sorted(t / m for t, m in zip(their, ours))
    return {"median": round(statistics.median(ratios), 2), "low": round(ratios[0], 2),
            "high": round(ratios[-1], 2), "rounds": len(ratios)}


def speedup_text(student: dict, where: str) -> str:
    """``3.40x (3.10-3.80 over 5 rounds)``, or ``3.40x`` without rounds."""
    spread = (student.get("speedup_spread") or {}).get(where)
    text = fmt.speedup(student["speedup"][where])
    if spread:
        text += f" ({spread['low']:.2f}-{spread['high']:.2f} over {spread['rounds']} rounds)"
    return text


def _latency(latency: dict | None, unit: str = "") -> str:
    if not latency:
        return fmt.MISSING
    return f"{fmt.ms(latency['ms'])}{unit} ({latency['label']})"


TABLE_HEADER = ("id", "family", "method", "depth", "MACs", "params", "size MB", "epochs", "val acc", "test acc", "Pareto",
                "host ms", "host FPS", "host speed-up", "target ms", "target FPS",
                "target speed-up")
#: Columns dropped when the target is this host (they would repeat the host columns).
TARGET_COLUMNS = 3
#: What the table's columns mean (under the table in report.md and report.html).
TABLE_NOTES = ("Latency labels: measured by the deploy kit, calibrated or predicted by the cost "
               "model. size MB: the exported ONNX file, in 10^6 bytes. val acc: top-1 on the "
               "validation split (what chose the winner); test acc: top-1 on the test split. "
               "Pareto: yes when no other student is both faster and more accurate on the test "
               "split ('off front' for a winner that another student beats). FPS = 1000 x batch / latency in ms, "
               "rounded to 3 significant digits (a predicted latency gives a predicted FPS). "
               "Speed-up = teacher latency / student latency, both taken the same way; measured "
               "on this host, teacher and students are timed in turn over several rounds and the "
               "speed-up is the median over the rounds (the headline gives its range). "
               "'measured, forced': merged with --force although its device, backend, precision or "
               "batch is not the profile's (summary.json says which). "
               "An 'ID int8' row is the Q/DQ INT8 copy from 'edgekd export RUN --int8': its top-1 is "
               "ONNX Runtime's on the host, next to the FP32 ONNX's on the same test images. "
               "* marks the winner.")


def family_of(student: dict) -> str:
    """The student family of a summary row (``-`` when its spec is unknown)."""
    return str((student.get("spec") or {}).get("family", "-"))


def table_header(summary: dict) -> tuple[str, ...]:
    if summary["search"].get("target_is_host"):
        return TABLE_HEADER[:-TARGET_COLUMNS]
    return TABLE_HEADER


def table_rows(summary: dict) -> list[list[str]]:
    """The benchmark table: the teacher first, then every trained student, best first."""
    teacher = summary["teacher"]
    host, target = teacher["latency"]["host"], teacher["latency"]["target"]
    rows = [["teacher", "-", "-", "-", fmt.count(teacher["macs"]), fmt.count(teacher["params"]),
             fmt.size_mb(teacher["size_mb"]), "-", "-", fmt.percent(teacher["test_acc"]), "-",
             _latency(host), fmt.fps(host and host["ms"], host and host.get("batch", 1)), "1.00x",
             _latency(target), fmt.fps(target and target["ms"], target and target.get("batch", 1)),
             "1.00x"]]
    students = sorted(summary["students"], key=lambda s: (-s["test_acc"], s["trial"]))
    for s in students:
        winner = s["trial"] == summary["winner"]
        front = "yes" if s["pareto"] else "off front" if winner else ""
        rows.append([f"{s['trial']}{' *' if winner else ''}", family_of(s), s["method"], str(s["depth"] or "-"),
                     fmt.count(s["macs"]), fmt.count(s["params"]), fmt.size_mb(s["size_mb"]),
                     str(s["epochs"]), fmt.percent(s.get("val_acc")), fmt.percent(s["test_acc"]), front,
                     _latency(s["latency"]["host"]), fmt.rate(s["fps"]["host"]),
                     fmt.speedup(s["speedup"]["host"]), _latency(s["latency"]["target"]),
                     fmt.rate(s["fps"]["target"]), fmt.speedup(s["speedup"]["target"])])
        if s.get("int8"):
            rows.append(int8_row(s))
    width = len(table_header(summary))
    return [row[:width] for row in rows]


def int8_row(s: dict) -> list[str]:
    """The INT8 row under its FP32 student's row (accuracy from ONNX Runtime on the host)."""
    q = s["int8"]
    delta = q.get("delta_points", round(100 * (q["accuracy"] - q["fp32_onnx_accuracy"]), 2))
    acc = (f"{fmt.percent(q['accuracy'])} (fp32 ONNX {fmt.percent(q['fp32_onnx_accuracy'])}, "
           f"{delta:+.2f} points, {q['samples']} images)")
    return [f"{s['trial']} int8", family_of(s), s["method"], str(s["depth"] or "-"), fmt.count(s["macs"]),
            fmt.count(s["params"]), fmt.size_mb(q["size_mb"]), str(s["epochs"]), "-", acc, "",
            _latency(q["latency"]["host"]), fmt.rate(q["fps"]["host"]),
            fmt.speedup(q["speedup"]["host"]), _latency(q["latency"]["target"]),
            fmt.rate(q["fps"]["target"]), fmt.speedup(q["speedup"]["target"])]


def headline(summary: dict) -> str:
    """One paragraph: teacher vs winner, accuracy and latency, speed-up."""
    teacher = summary["teacher"]
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    parts = [f"teacher: acc {fmt.percent(teacher['test_acc'])}, {fmt.count(teacher['macs'])} MACs, "
             f"host {_latency(teacher['latency']['host'], ' ms')}",
             f"student {winner['trial']} ({winner['method']}, depth {winner['depth']}): "
             f"acc {fmt.percent(winner['test_acc'])}{fmt.gap_points(teacher['test_acc'], winner['test_acc'])}, "
             + (f"val acc {fmt.percent(winner['val_acc'])}, " if winner.get("val_acc") is not None
                else "retrained on train + validation images, ") +
             f"{fmt.count(winner['macs'])} MACs, host {_latency(winner['latency']['host'], ' ms')}"]
    line = f"speed-up on this host: {speedup_text(winner, 'host')}"
    target = winner["latency"]["target"]
    if target and summary["run"]["profile"] and not summary["search"].get("target_is_host"):
        line += (f"; on {summary['run']['profile']}: {_latency(target, ' ms')}, "
                 f"speed-up {speedup_text(winner, 'target')}")
    parts.append(line)
    return "\n".join(parts)


def budget_text(budget: dict) -> str:
    """The run's budget in words, e.g. ``latency 0.05 ms at batch 1, MACs 1.5M``."""
    return (f"latency {budget.get('latency_ms')} ms at batch {budget.get('batch')}, "
            f"MACs {fmt.count(budget.get('macs'))}")


#: How the pipeline chose the winner (edgekd.run.halving.promote and edgekd.run.pipeline).
SELECTION_RULE = ("the finalist with the best validation accuracy; every student fits the "
                  "budget, and the test split is not used to choose")
SELECTION_RULE_BASELINES = ("the best validation accuracy among the methods trained on the "
                            "winning architecture (--baselines); every student fits the budget, "
                            "and the test split is not used to choose")


def selection(students: list[dict], winner: str, baselines: bool) -> dict[str, Any]:
    """Why the winner: the rule, and whether it is on the test-accuracy Pareto front (if not,
    the students that beat it on both test accuracy and latency)."""
    from edgekd.report.plots import target_ms

    me = next(s for s in students if s["trial"] == winner)
    mine = target_ms(me)
    beaten_by = [] if me["pareto"] or mine is None else [
        s["trial"] for s in students if s["trial"] != winner and target_ms(s) is not None
        and target_ms(s) <= mine and s["test_acc"] >= me["test_acc"]
        and (target_ms(s) < mine or s["test_acc"] > me["test_acc"])]
    return {"rule": SELECTION_RULE_BASELINES if baselines else SELECTION_RULE,
            "pareto": {"winner_on_front": bool(me["pareto"]), "beaten_by": beaten_by}}


def selection_text(summary: dict) -> str:
    """The selection rule in words, and what beats the winner on the test split if anything."""
    chosen = summary.get("selection") or {}
    text = f"Winner: {chosen.get('rule', SELECTION_RULE)}."
    beaten_by = (chosen.get("pareto") or {}).get("beaten_by") or []
    if beaten_by:
        from edgekd.report.plots import target_ms

        by_trial = {s["trial"]: s for s in summary["students"]}
        me = by_trial[summary["winner"]]
        other = max((by_trial[t] for t in beaten_by), key=lambda s: (s["test_acc"], -target_ms(s)))
        text += (f" It is off the test-accuracy Pareto front: {other['trial']} is faster and at "
                 f"least as accurate on the test split (test {fmt.percent(other['test_acc'])} "
                 f"at {fmt.ms(target_ms(other))} ms against {fmt.percent(me['test_acc'])} at "
                 f"{fmt.ms(target_ms(me))} ms) but scored lower on validation "
                 f"({fmt.percent(other.get('val_acc'))} against {fmt.percent(_selection_val(summary))}).")
    return text


def _selection_val(summary: dict) -> float | None:
    """The winner's validation accuracy; for a winner retrained on the validation images too,
    that of the arm it was selected as."""
    by_trial = {s["trial"]: s for s in summary["students"]}
    found = by_trial[summary["winner"]].get("val_acc")
    selected = by_trial.get(summary["search"].get("selected") or "")
    return found if found is not None or selected is None else selected.get("val_acc")


def _shown(summary: dict) -> dict[str, tuple[str, str, str]]:
    """Each table row's (latency, speed-up, Pareto) as the report shows them."""
    where = "target" if not summary["search"].get("target_is_host") else "host"
    teacher = summary["teacher"]["latency"][where]
    rows = {"teacher": (_latency(teacher), "1.00x", "")}
    for s in summary["students"]:
        rows[s["trial"]] = (_latency(s["latency"][where]), speedup_text(s, where),
                            "yes" if s["pareto"] else "no")
    return rows


def changes(before: dict, after: dict) -> list[str]:
    """What a rebuilt report shows differently, one line per changed row (``edgekd report
    --measurements`` prints them): latency, speed-up and Pareto flag, old -> new."""
    old, new = _shown(before), _shown(after)
    lines = []
    for row, now in new.items():
        was = old.get(row)
        if was is None or was == now:
            continue
        parts = [f"{name} {a} -> {b}" for name, a, b in zip(("latency", "speed-up", "Pareto"), was, now)
                 if a != b]
        lines.append(f"changed row '{row}': " + "; ".join(parts))
    if lines:
        lines.append("redrawn: accuracy_vs_latency.png (and the table, headline and summary.json)")
    return lines
