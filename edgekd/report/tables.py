"""The report's words and numbers for people: the students table (one row per trained
student, the teacher first), the headline (teacher against winner), the speed-up over the
teacher and the budget in words. :mod:`edgekd.report.report` builds the summary these read and
renders them to Markdown and HTML.

Speed-up over the teacher is the teacher's latency divided by the student's, both taken the
same way (same device and label kind)."""

from __future__ import annotations

from typing import Any

from edgekd.core import fmt
from edgekd.report.int8_rows import int8_row


def _speed(latency: dict[str, dict | None], teacher: dict[str, dict | None]) -> dict[str, Any]:
    fps, speedup = {}, {}
    for where in ("host", "target"):
        mine, theirs = latency.get(where), teacher.get(where)
        # 3 significant digits: the latency it comes from has about as many (edgekd.core.fmt)
        fps[where] = None if not mine else fmt.significant(1000.0 * mine.get("batch", 1) / mine["ms"])
        same_kind = mine and theirs and (mine["label"].startswith("measured")
                                         == theirs["label"].startswith("measured"))
        speedup[where] = round(theirs["ms"] / mine["ms"], 2) if same_kind and mine["ms"] > 0 else None
    return {"fps": fps, "speedup": speedup}


def _latency(latency: dict | None, unit: str = "") -> str:
    if not latency:
        return fmt.MISSING
    return f"{fmt.ms(latency['ms'])}{unit} ({latency['label']})"


TABLE_HEADER = ("id", "method", "depth", "MACs", "params", "size MB", "epochs", "top-1 acc", "Pareto",
                "host ms", "host FPS", "host speed-up", "target ms", "target FPS",
                "target speed-up")
#: Columns dropped when the target is this host (they would repeat the host columns).
TARGET_COLUMNS = 3
#: What the table's columns mean (under the table in report.md and report.html).
TABLE_NOTES = ("Latency labels: measured by the deploy kit, calibrated or predicted by the cost "
               "model. size MB: the exported ONNX file, in 10^6 bytes. Pareto: yes when no other "
               "student is both faster and more accurate. FPS = 1000 x batch / latency in ms, "
               "rounded to 3 significant digits (a predicted latency gives a predicted FPS). "
               "Speed-up = teacher latency / student latency, both taken the same way. "
               "'measured, forced': merged with --force although its device, backend, precision or "
               "batch is not the profile's (summary.json says which). "
               "An 'ID int8' row is the Q/DQ INT8 copy from 'edgekd export RUN --int8': its top-1 is "
               "ONNX Runtime's on the host, next to the FP32 ONNX's on the same test images. "
               "* marks the winner.")


def table_header(summary: dict) -> tuple[str, ...]:
    if summary["search"].get("target_is_host"):
        return TABLE_HEADER[:-TARGET_COLUMNS]
    return TABLE_HEADER


def table_rows(summary: dict) -> list[list[str]]:
    """The benchmark table: the teacher first, then every trained student, best first."""
    teacher = summary["teacher"]
    host, target = teacher["latency"]["host"], teacher["latency"]["target"]
    rows = [["teacher", "-", "-", fmt.count(teacher["macs"]), fmt.count(teacher["params"]),
             fmt.size_mb(teacher["size_mb"]), "-", fmt.percent(teacher["test_acc"]), "-",
             _latency(host), fmt.fps(host and host["ms"], host and host.get("batch", 1)), "1.00x",
             _latency(target), fmt.fps(target and target["ms"], target and target.get("batch", 1)),
             "1.00x"]]
    students = sorted(summary["students"], key=lambda s: (-s["test_acc"], s["trial"]))
    for s in students:
        mark = " *" if s["trial"] == summary["winner"] else ""
        rows.append([f"{s['trial']}{mark}", s["method"], str(s["depth"] or "-"),
                     fmt.count(s["macs"]), fmt.count(s["params"]), fmt.size_mb(s["size_mb"]),
                     str(s["epochs"]), fmt.percent(s["test_acc"]), "yes" if s["pareto"] else "",
                     _latency(s["latency"]["host"]), fmt.rate(s["fps"]["host"]),
                     fmt.speedup(s["speedup"]["host"]), _latency(s["latency"]["target"]),
                     fmt.rate(s["fps"]["target"]), fmt.speedup(s["speedup"]["target"])])
        if s.get("int8"):
            rows.append(int8_row(s))
    width = len(table_header(summary))
    return [row[:width] for row in rows]


def headline(summary: dict) -> str:
    """One paragraph: teacher vs winner, accuracy and latency, speed-up."""
    teacher = summary["teacher"]
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    parts = [f"teacher: acc {fmt.percent(teacher['test_acc'])}, {fmt.count(teacher['macs'])} MACs, "
             f"host {_latency(teacher['latency']['host'], ' ms')}",
             f"student {winner['trial']} ({winner['method']}, depth {winner['depth']}): "
             f"acc {fmt.percent(winner['test_acc'])}{fmt.gap_points(teacher['test_acc'], winner['test_acc'])}, "
             f"{fmt.count(winner['macs'])} MACs, host {_latency(winner['latency']['host'], ' ms')}"]
    line = f"speed-up on this host: {fmt.speedup(winner['speedup']['host'])}"
    target = winner["latency"]["target"]
    if target and summary["run"]["profile"] and not summary["search"].get("target_is_host"):
        line += (f"; on {summary['run']['profile']}: {_latency(target, ' ms')}, "
                 f"speed-up {fmt.speedup(winner['speedup']['target'])}")
    parts.append(line)
    return "\n".join(parts)


def budget_text(budget: dict) -> str:
    """The run's budget in words, e.g. ``latency 0.05 ms at batch 1, MACs 1.5M``."""
    return (f"latency {budget.get('latency_ms')} ms at batch {budget.get('batch')}, "
            f"MACs {fmt.count(budget.get('macs'))}")
