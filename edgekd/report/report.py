"""The trade-off report of a run: summary.json, report.md, report.html and the plots.

Everything is rebuilt from the run folder's files (see :mod:`edgekd.core.runfolder`, which also
checks each document as it is read), so
``edgekd report RUN --measurements FILE...`` can merge latencies measured on the device
later:

* ``outcome.json``     the halving outcome the pipeline wrote (rungs, finalists, winner, baselines)
* ``teacher.json``     the teacher's MACs, params, test accuracy, predicted target latency
* ``candidates.jsonl`` each student's spec, MACs, params and predicted target latency
* ``trials/ID/``       result.json (accuracy, epochs) and metrics.jsonl (training curves)
* ``export/ID.onnx``   the exported models (size; sha256 to match measurements)
* ``measurements/``    ``host-*.json`` measured on this host; ``target-*.json`` brought back
  from the device (Measurement JSON from ``python -m deploy bench``)

Every latency carries a label: ``measured`` (from a Measurement file), ``calibrated`` or
``predicted`` (from the cost model, :mod:`edgekd.search.cost`). Speed-up over the teacher divides
the teacher's latency by the student's, both taken the same way (same device and label kind).

The table follows Ultralytics' benchmark table: one row per trained student with id, depth,
MACs, params, size MB, accuracy, latency ms + label, FPS (= 1000 * batch / latency_ms) and
speed-up, plus the method. The Pareto front keeps the students that no other student beats
on both accuracy (higher) and latency (lower).
"""

from __future__ import annotations

import base64
import contextlib
import html
from pathlib import Path
from typing import Any, Iterable

from edgekd.core import fmt
from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import atomic_write_bytes, atomic_write_text
from edgekd.core.runfolder import (CANDIDATE, FINISHED_RESULT, MEASUREMENT, METRIC, METRICS_JSONL, OUTCOME,
                                   RESULT_JSON, SUMMARY, TEACHER, RunDir, read_doc, read_records, safe_id,
                                   write_doc)
from edgekd.report.int8_rows import int8_entry
from edgekd.report.measured import model_latency, model_size_mb
from edgekd.report.merge import merge_measurements
from edgekd.report.search_section import search_section
from edgekd.report.plots import CAPTIONS, PLOTS, plots, target_ms
from edgekd.report.tables import (TABLE_NOTES, _speed, budget_text, headline,  # noqa: F401 (re-exported)
                                  selection, selection_text, table_header, table_rows)
from edgekd.report.references import reference_blocks

SUMMARY_FORMAT = SUMMARY.format


# ============================================================================ summary
def _measurements(run: RunDir) -> dict[str, dict[str, dict]]:
    """``{"host"|"target": {sha256: measurement}}`` from measurements/*.json."""
    found: dict[str, dict[str, dict]] = {"host": {}, "target": {}}
    for path in run.measurement_files():
        where = "host" if path.name.startswith("host-") else "target"
        record = _measurement(path, "remove it or measure again")
        found[where][record["sha256"]] = record
    return found


def _measurement(path: Path, fix: str) -> dict:
    """A deploy-kit Measurement JSON (one line naming ``path`` when it is not one)."""
    try:
        record = read_doc(MEASUREMENT, path)
        float(record["latency_ms"]["median"])
    except (EdgekdError, KeyError, TypeError, ValueError):
        raise EdgekdError(f"{path} is not a deploy-kit Measurement JSON (needs sha256 and "
                          f"latency_ms.median): {fix}") from None
    return record


def _curve(run: RunDir, trial_id: str) -> list[dict]:
    """A trial's validation curve from its metrics.jsonl."""
    rows = []
    for record in read_records(METRIC, run.trial_file(trial_id, METRICS_JSONL))[0]:
        # a student trained without a validation split (retrained on it) logs nan: no curve point
        if isinstance(record.get("val_acc"), (int, float)) and record["val_acc"] == record["val_acc"]:
            rows.append({"epoch": int(record["epoch"]), "val_acc": float(record["val_acc"]),
                         "stage": record.get("stage", "train")})
    return rows


def build_summary(run_root: str | Path) -> dict[str, Any]:
    """Read the run folder and return the summary (also what summary.json holds)."""
    run = RunDir(Path(run_root))
    manifest = run.manifest()
    search_path = run.outcome_path()
    if not search_path.exists():
        raise EdgekdError(f"{run.root} has no outcome.json yet: finish the run with "
                          f"'edgekd compress --out {run.root} --resume' first")
    search = run.read(OUTCOME, search_path)
    candidates = {c["id"]: c for c in read_records(CANDIDATE, run.candidates)[0]}
    measured = _measurements(run)
    identity = manifest["identity"]
    target_is_host = bool(search.get("target_is_host"))
    teacher = _teacher(run, measured, target_is_host)
    students = [_student(run, entry, candidates, measured, target_is_host, teacher["latency"])
                for entry in search["trials"]]
    if not students:
        raise EdgekdError(f"{run.root} has no finished trial: resume the run first")
    pareto = pareto_front([(s["trial"], target_ms(s), s["test_acc"]) for s in students])
    for student in students:
        student["pareto"] = student["trial"] in pareto
    chosen = selection(students, search["winner"], bool(search.get("baselines")))
    return fmt.clean({  # no float32 noise digits in summary.json
        "format": SUMMARY_FORMAT,
        "run": {"folder": run.root.name, "profile": identity["profile"].get("name"),
                "profile_kind": identity["profile"].get("kind"), "budget": identity["budget"],
                "data": identity["data"], "teacher": identity["teacher"],
                "seed": identity["seed"], "config": identity["config"],
                "command": manifest.get("command"), "versions": manifest.get("versions")},
        "search": {key: search.get(key) for key in
                   ("rungs", "survivors", "finalists", "epochs_spent", "epochs_full", "winner",
                    "winner_method", "rung_depths", "candidates_enumerated", "candidates_in_budget",
                    "shortlist", "target_is_host", "supernet", "references",
                    "teacher_bias", "arm_scores", "selected")},
        "teacher": teacher,
        "students": students,
        "winner": search["winner"],
        "selection": chosen,
        "ablation": _ablation(search, students),
        "final_retrain": final_retrain(search.get("final_retrain")),
        "measurement_files": [p.name for p in run.measurement_files()],
        "timing": search.get("timing", {}),
    })


def _teacher(run: RunDir, measured: dict[str, dict[str, dict]], target_is_host: bool) -> dict[str, Any]:
    """The teacher's row: MACs, parameters, accuracy, source, ONNX size and latency."""
    teacher_info = run.read(TEACHER, run.teacher_json)
    teacher_onnx = run.export_onnx("teacher")
    teacher = {key: teacher_info.get(key) for key in ("macs", "params", "test_acc", "source")}
    teacher.update(size_mb=model_size_mb(teacher_onnx, teacher_info.get("params")),
                   latency=model_latency(teacher_onnx, measured, teacher_info.get("predicted_latency"),
                                          target_is_host))
    return teacher


def _student(run: RunDir, entry: Any, candidates: dict[str, dict], measured: dict[str, dict[str, dict]],
             target_is_host: bool, teacher_latency: dict) -> dict[str, Any]:
    """One student's row from its outcome.json trial entry, result.json, candidate and files."""
    search_path = run.outcome_path()
    if not isinstance(entry, dict) or "candidate" not in entry or "method" not in entry:
        raise EdgekdError(f"{search_path} has a bad trial entry ({str(entry)[:40]}): rebuild "
                          f"it with 'edgekd compress --out {run.root} --resume'")
    trial_id, cid = safe_id(entry.get("trial"), search_path), entry["candidate"]
    result = run.read(FINISHED_RESULT, run.trial_file(trial_id, RESULT_JSON))
    candidate = candidates.get(cid, {})
    onnx = run.export_onnx(trial_id)
    latency = model_latency(onnx, measured, candidate.get("latency"), target_is_host)
    return {
        # "id" is unique per student (the trial); "candidate" is the architecture, shared
        # by a search trial, its fresh final training and its baselines
        "trial": trial_id, "id": trial_id, "candidate": cid,
        "role": entry.get("role", "search"), "model": entry.get("model"),
        "method": entry["method"], "rung": entry.get("rung"),
        "depth": candidate.get("depth"), "macs": candidate.get("macs"),
        "params": candidate.get("params"), "spec": candidate.get("spec"),
        "size_mb": model_size_mb(onnx, candidate.get("params")),
        "epochs": int(result.get("epochs_done", 0)),
        "hint_epochs": int(result.get("hint_epochs_done", 0) or 0),
        # no validation accuracy: a student retrained on the validation images too
        "val_acc": None if result["val_acc"] is None else float(result["val_acc"]),
        "test_acc": float(result["test_acc"]),
        "latency": latency, **_speed(latency, teacher_latency),
        "curve": _curve(run, trial_id),
        "exported": onnx.exists(),
        "int8": int8_entry(onnx, measured, target_is_host, teacher_latency),
    }


def _ablation(search: dict, students: list[dict]) -> list[dict] | None:
    """The ``--baselines`` rows (method, trial, accuracies, epochs), None without baselines."""
    if not search.get("baselines"):
        return None
    by_trial = {s["trial"]: s for s in students}
    rows = [{"method": method, "trial": trial, "test_acc": by_trial[trial]["test_acc"],
             "val_acc": by_trial[trial]["val_acc"], "epochs": by_trial[trial]["epochs"]}
            for method, trial in search["baselines"].items() if trial in by_trial]
    retrained = (search.get("final_retrain") or {}).get("trial")
    if retrained in by_trial:  # the chosen arm retrained on train + validation: the shipped one
        s = by_trial[retrained]
        rows.append({"method": s["method"], "trial": retrained, "test_acc": s["test_acc"], "val_acc": None,
                     "epochs": s["epochs"], "retrained": True})
    return rows


def final_retrain(record: dict | None) -> dict | None:
    """outcome.json's ``final_retrain`` (edgekd.run.final_retrain) with the report's one line on
    it; None when the shipped student is the selected arm as trained."""
    if not record:
        return None
    line = (f"The shipped student was retrained on train + validation images ({record['images']:,} images) "
            f"after selection; its test accuracy is {fmt.percent(record['test_acc'])} (the selected arm "
            f"{record['from']}, trained on {record['arm_images']:,} images: {fmt.percent(record['arm_test_acc'])}).")
    return {**record, "line": line}


def pareto_front(points: Iterable[tuple[str, float | None, float]]) -> list[str]:
    """Names of the points not dominated by another (lower-or-equal latency and
    higher-or-equal accuracy, one strictly). Points without a latency are left out. The
    dominance test is the search's (:func:`edgekd.search.search.pareto_mask`), the one
    implementation of a Pareto front."""
    from edgekd.search.search import pareto_mask

    valid = [(name, ms, acc) for name, ms, acc in points if ms is not None]
    keep = pareto_mask([(ms, acc) for _, ms, acc in valid], ("min", "max"))
    return [name for (name, _, _), kept in zip(valid, keep) if kept]


# ============================================================================ the document
def document(summary: dict) -> list[tuple]:
    """The report as blocks, rendered by :func:`markdown` and :func:`to_html` alike (so the
    two never differ in content): ``("h1"|"h2"|"p"|"pre", text)``,
    ``("table", header, rows)`` and ``("figure", plot name, caption)``."""
    run, search = summary["run"], summary["search"]
    data, teacher = run["data"], run["teacher"]
    depths = search.get("rung_depths") or []
    blocks: list[tuple] = [
        ("h1", f"edgekd report: {run['folder']}"),
        ("p", f"Profile {run['profile']} ({run['profile_kind']}), budget: "
              f"{budget_text(run['budget'])}. Data: {data.get('name')} "
              f"({str(data.get('fingerprint'))[:12]}), teacher: "
              f"{teacher.get('name') or teacher.get('source')} "
              f"({str(teacher.get('fingerprint'))[:12]}), seed {run['seed']}."),
        ("pre", headline(summary)),
        *([("p", summary["final_retrain"]["line"])] if summary.get("final_retrain") else []),
        *([("p", carved_text(search["teacher_bias"]))] if (search.get("teacher_bias") or {}).get("carved") else []),
        ("p", selection_text(summary)),
        ("h2", "Students"), ("p", TABLE_NOTES),
        ("table", table_header(summary), table_rows(summary)),
        ("h2", "Search"),
    ]
    blocks += search_section(search, depths)
    if summary.get("ablation"):
        blocks += [("h2", "Ablation (the winner's architecture, other training methods)")]
        if search.get("winner_method"):
            selected = search.get("selected") or summary["winner"]
            shipped = "" if selected == summary["winner"] else f"; retrained on train + validation as {summary['winner']}"
            blocks.append(("p", f"Winner by validation accuracy among these: {search['winner_method']} "
                                f"({selected}{shipped}, the exported and bundled student)."))
        if (bias := search.get("teacher_bias") or {}).get("biased") and not bias.get("carved"):  # run.selection
            blocks.append(("p", f"The teacher scores {fmt.percent(bias['val'])} on validation, {fmt.percent(bias['test'])} "
                                f"on test: it has seen the validation images, so arms that learn from it were scored "
                                f"by validation minus that {100 * bias['gap']:.2f}-point gap (--val-data avoids it)."))
        blocks += [("table", ("method", "trial", "epochs", "val acc", "test acc"),
                    [[a["method"] + (", retrained on train + val" if a.get("retrained") else ""), a["trial"], str(a["epochs"]), fmt.percent(a["val_acc"]),
                      fmt.percent(a["test_acc"])] for a in summary["ablation"]])]
    blocks += reference_blocks(summary)
    blocks.append(("h2", "Plots"))
    blocks += [("figure", name, CAPTIONS[name]) for name in PLOTS]
    return blocks


def carved_text(bias: dict) -> str:
    """Where selection and the test figures come from when the test images were halved
    (edgekd.run.selection.carve_selection_split)."""
    carved = bias["carved"]
    return (f"The teacher scores {fmt.percent(bias['val'])} on the validation images held out of its training "
            f"images and {fmt.percent(bias['test'])} on the test images: it has seen the former. So every "
            f"student was selected on {carved['selection']} of the test images (a seeded half the teacher never "
            f"saw), with no training image held out for validation; every test figure in this report is on the other "
            f"{carved['report']}.")


def markdown(summary: dict) -> str:
    lines: list[str] = []
    for block in document(summary):
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += [("# " if kind == "h1" else "## ") + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "pre":
            lines += ["```", block[1], "```", ""]
        elif kind == "table":
            lines += _md_table(block[1], block[2]) + [""]
        elif kind == "figure":
            lines += [f"![{block[1].replace('_', ' ')}]({block[1]}.png)", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


def _md_table(header: Iterable[str], rows: list[list[str]]) -> list[str]:
    header = list(header)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


# ============================================================================ HTML
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;
padding:3px 7px;text-align:right}th{background:#f2f2f2}td:first-child,td:nth-child(2){text-align:left}
pre{background:#f7f7f7;padding:.8em}img{max-width:100%;margin:.5em 0;border:1px solid #eee}"""


def to_html(summary: dict, images: dict[str, bytes]) -> str:
    """A self-contained page: inline CSS, tables, plots as base64 PNG; no script, no URL."""
    esc = html.escape
    title = esc(f"edgekd report: {summary['run']['folder']}")
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{title}</title><style>{_CSS}</style></head><body>"]
    for block in document(summary):
        kind = block[0]
        if kind in ("h1", "h2", "p", "pre"):
            parts.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "figure":
            data = base64.b64encode(images[block[1]]).decode("ascii")
            parts.append(f"<figure><img alt=\"{esc(block[1].replace('_', ' '))}\" "
                         f"src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{esc(block[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ============================================================================ entry points
def shown_summary(run_root: str | Path) -> dict | None:
    """The summary the run's report shows now (report/summary.json, as the last report wrote
    it), or None when there is none or it is not a sound summary."""
    run = RunDir(Path(run_root))
    try:
        return run.read(SUMMARY, run.summary) if run.summary.is_file() else None
    except EdgekdError:
        return None


def write_report(run_root: str | Path, measurements: Iterable[str | Path] = (), *,
                 force: bool = False, merged: list | None = None, lock: bool = True) -> dict:
    """Rebuild summary.json, report.md, report.html and the PNGs of a run from its files, after
    merging ``measurements`` (checked against the run's profile, see edgekd.report.merge;
    ``force`` merges mismatches labelled as such; ``merged`` receives what was merged). The
    run's lock is taken for the writes (``lock=False``: the caller, compress, holds it)."""
    run = RunDir(Path(run_root))
    if not run.root.is_dir():
        raise EdgekdError(f"run folder {run.root} does not exist: pass runs/NAME of a compress run")
    # a folder that is not a (finished) run is refused before anything is written into it
    run.manifest()
    if not run.outcome_path().exists():
        raise EdgekdError(f"{run.root} has no outcome.json yet: finish the run with "
                          f"'edgekd compress --out {run.root} --resume' first")
    with run.locked() if lock else contextlib.nullcontext():
        return _write_report(run, measurements, force, merged)


def _write_report(run: RunDir, measurements: Iterable[str | Path], force: bool,
                  merged: list | None) -> dict:
    done = merge_measurements(run.root, measurements, force=force)
    if merged is not None:
        merged.extend(done)
    summary = build_summary(run.root)
    images = plots(summary)
    run.report.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        atomic_write_bytes(run.report / f"{name}.png", data)
    text = markdown(summary)
    write_doc(SUMMARY, run.summary, summary)
    atomic_write_text(run.report_md, text)
    atomic_write_text(run.report_html, to_html(summary, images))
    return summary

