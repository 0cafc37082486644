"""Supernet against successive halving at the same budget, and front students against the
same architectures trained alone (``edgekd compress --strategy supernet|halving``).

For each data set:

0. the built-in teacher trained once on the set (cached, shared by every command; its CPU
   seconds are reported apart and counted in neither strategy);

then for each seed:

1. ``edgekd compress --strategy supernet`` and ``--strategy halving`` with the same data,
   teacher, budget and epochs;
2. four students of the supernet's front (spread over its latency range) trained alone with
   ``edgekd train --method kd`` at the same epochs;
3. CPU seconds (user + system of the child processes) of each command, and the test accuracy of
   every student; the supernet's cost as a multiple of one standalone training, split into
   training and shipping (export + measurement of every reported student) by the wall-clock
   shares each run records in its outcome.json.

Aims (issue text, kept here so the results can say met or missed): the whole front (>= 8
students) for at most 3x the cost of one standalone training; each front student within 1
point of the same architecture trained alone; the chosen student at or above halving's winner.

Results (``benchmarks/results/supernet-TAG.{json,md}``) are written after every cell, and a
rerun with the same settings skips the cells they hold; within a cell every finished command's
cost is kept in the work folder, and a command that was cut short runs again from the start
(a resumed command's CPU seconds would be only the part after the cut).

    python benchmarks/supernet.py --data-dir ../shared/data --sets cifar10,clothing96 \\
        --seeds 0,1,2 --max-train cifar10=2000,clothing96=1500 --epochs 5 --work /tmp/sn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LEARNED = "## What was learned"
FRONT_AIM, COST_AIM, GAP_AIM = 8, 3.0, 1.0

#: trains (or reads from the cache) the built-in teacher exactly as compress and train load it
_TEACHER = ("import sys\n"
            "from edgekd.inputs.data import apply_normalize\n"
            "from edgekd.inputs.loaders import load_dataset\n"
            "from edgekd.distill.builtin_teacher import load_teacher\n"
            "ds = apply_normalize(load_dataset(sys.argv[1]), 'dataset')\n"
            "load_teacher(None, num_classes=ds.num_classes, dataset=ds)\n")


def _per_set(text: str, sets: list[str], what: str) -> dict[str, str]:
    """``2M`` for every set, or ``cifar10=2M,clothing96=4M`` (every set named)."""
    if "=" not in text:
        return {name: text for name in sets}
    values = dict(part.split("=", 1) for part in text.split(","))
    missing = [name for name in sets if name not in values]
    if missing:
        raise SystemExit(f"--{what} names no value for {', '.join(missing)}")
    return {name: values[name] for name in sets}


def _subset(data_dir: Path, name: str, limit: int, work: Path) -> Path:
    """``name``.npz with at most ``limit`` training images (the test split whole)."""
    out = work / f"{name}-{limit}.npz"
    if not out.exists():
        data = np.load(data_dir / f"{name}.npz")
        np.savez(out, x_train=data["x_train"][:limit], y_train=data["y_train"][:limit],
                 x_test=data["x_test"], y_test=data["y_test"], classes=data["classes"])
    return out


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``python ARGV``; returns (CPU seconds of the child and its children, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"python {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(cpu, 1), round(time.monotonic() - started, 1)


def _command(key: str, argv: list[str], env: dict[str, str], work: Path, out: Path | None,
             own_cache: bool = True) -> dict:
    """Run one command once: its cost is kept in ``work/key.cost.json``; a folder ``out`` left
    without that file (a cut-short command) is removed and the command runs again whole."""
    cost_file = work / f"{key}.cost.json"
    if cost_file.exists():
        return json.loads(cost_file.read_text())
    if out is not None and out.exists():
        shutil.rmtree(out)
    cpu, wall = _run(argv, _own_cache(env, work, key) if own_cache else env, work)
    record = {"cpu_s": cpu, "wall_s": wall}
    cost_file.write_text(json.dumps(record))
    return record


def _own_cache(env: dict[str, str], work: Path, key: str) -> dict[str, str]:
    """``env`` with a cache folder of the command's own, holding the shared cache's built-in
    teacher and nothing else: a command pays for its own teacher passes and cost tables (the
    supernet's fine-tuning and halving's trials would otherwise share one seed's cached
    teacher views, and the second command would get them free)."""
    shared, own = Path(env["EDGEKD_CACHE_DIR"]), work / "caches" / key
    if own.exists():
        shutil.rmtree(own)
    own.mkdir(parents=True)
    if (shared / "teachers").is_dir():
        shutil.copytree(shared / "teachers", own / "teachers", copy_function=os.link)
    return {**env, "EDGEKD_CACHE_DIR": str(own)}


def _summary(run: Path) -> dict:
    return json.loads((run / "report" / "summary.json").read_text())


def _four_of_the_front(summary: dict) -> list[dict]:
    """Four inherited students spread over the front's latency range."""
    front = sorted((s for s in summary["students"] if s["method"] == "supernet"),
                   key=lambda s: s["latency"]["target"]["ms"])
    if len(front) <= 4:
        return front
    picks = np.linspace(0, len(front) - 1, 4).round().astype(int)
    return [front[i] for i in dict.fromkeys(picks.tolist())]


def _strategy_record(out: Path, cost: dict) -> dict:
    summary, outcome = _summary(out), json.loads((out / "outcome.json").read_text())
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    timing = outcome.get("timing", {})
    ship = (timing.get("export_s", 0.0) + timing.get("measure_s", 0.0)) / max(cost["wall_s"], 1e-9)
    record = {**cost, "ship_share": round(min(ship, 1.0), 3), "timing": timing,
              "winner": winner["trial"], "winner_test_acc": winner["test_acc"],
              "winner_macs": winner["macs"], "students": len(summary["students"]),
              "teacher_test_acc": summary["teacher"]["test_acc"], "teacher_macs": summary["teacher"]["macs"]}
    if "supernet" in outcome:
        chosen = next((s for s in summary["students"] if s["trial"] == f"{outcome['supernet']['chosen']}-inherited"), None)
        record |= {"front": sum(s["method"] == "supernet" for s in summary["students"]),
                   "evaluated": outcome["supernet"]["evaluated"], "space_size": outcome["supernet"]["space_size"],
                   "chosen_inherited_test_acc": chosen["test_acc"] if chosen else None}
    return record


def one_cell(data: Path, name: str, seed: int, budget: dict, args: argparse.Namespace, work: Path,
             env: dict[str, str]) -> dict:
    common = ["--data", str(data), "--seed", str(seed), "--epochs", str(args.epochs),
              "--max-macs", budget["max_macs"], "--latency-ms", budget["latency_ms"],
              "--measure-iters", str(args.measure_iters), "--no-bundle", "--no-progress"]
    cell: dict = {"set": name, "seed": seed}
    started = time.monotonic()
    for strategy in ("supernet", "halving"):
        key = f"{name}-s{seed}-{strategy}"
        out = work / key
        cost = _command(key, ["-m", "edgekd", "compress", "--strategy", strategy, "--out", str(out), *common],
                        env, work, out)
        cell[strategy] = _strategy_record(out, cost)
    alone = []
    for student in _four_of_the_front(_summary(work / f"{name}-s{seed}-supernet")):
        key = f"{name}-s{seed}-alone-{student['candidate']}"
        spec = work / f"{key}.spec.json"
        spec.write_text(json.dumps(student["spec"]))
        out = work / key
        cost = _command(key, ["-m", "edgekd", "train", "--student", str(spec), "--data", str(data), "--method", "kd",
                              "--augment", "auto", "--epochs", str(args.epochs), "--seed", str(seed),
                              "--out", str(out)], env, work, out)
        result = json.loads((out / "result.json").read_text())
        alone.append({"candidate": student["candidate"], "inherited_test_acc": student["test_acc"],
                      "alone_test_acc": result["test_acc"], "macs": student["macs"], **cost})
    cell["front_vs_alone"] = alone
    cell["standalone_cpu_s"] = round(statistics.mean(a["cpu_s"] for a in alone), 1)
    for strategy in ("supernet", "halving"):
        cost_x = cell[strategy]["cpu_s"] / cell["standalone_cpu_s"]
        cell[f"{strategy}_cost_x"] = round(cost_x, 2)
        cell[f"{strategy}_ship_x"] = round(cost_x * cell[strategy]["ship_share"], 2)
    cell["wall_s"] = round(time.monotonic() - started, 1)  # this invocation's part of the cell
    return cell


def _mean_std(values: list[float], unit: str = "") -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}{unit} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}{unit}"


def _cell_wall(cell: dict) -> float:
    """Wall seconds of the cell's commands (a resumed cell's earlier commands included)."""
    return cell["supernet"]["wall_s"] + cell["halving"]["wall_s"] + sum(a["wall_s"] for a in cell["front_vs_alone"])


def _gaps(cell: dict) -> list[float]:
    return [100 * (a["inherited_test_acc"] - a["alone_test_acc"]) for a in cell["front_vs_alone"]]


def _aims(mine: list[dict]) -> list[str]:
    """Each aim, met or missed, over the cells of one set."""
    fronts = [c["supernet"]["front"] for c in mine]
    costs = [c["supernet_cost_x"] for c in mine]
    gaps = [g for c in mine for g in _gaps(c)]
    ahead = [100 * (c["supernet"]["winner_test_acc"] - c["halving"]["winner_test_acc"]) for c in mine]
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    return [
        f"front of >= {FRONT_AIM} students for <= {COST_AIM:g}x one standalone training: "
        f"{met(min(fronts) >= FRONT_AIM and max(costs) <= COST_AIM)} (front {min(fronts)}-{max(fronts)} "
        f"students, cost {_mean_std(costs, 'x')}; training part alone "
        f"{_mean_std([c['supernet_cost_x'] - c['supernet_ship_x'] for c in mine], 'x')})",
        f"each front student within {GAP_AIM:g} point of the same architecture trained alone: "
        f"{met(min(gaps) >= -GAP_AIM)} ({sum(g >= -GAP_AIM for g in gaps)} of {len(gaps)} within; "
        f"inherited - alone {_mean_std(gaps, ' points')}, worst {min(gaps):+.2f})",
        f"chosen student at or above halving's winner: {met(statistics.mean(ahead) >= 0)} "
        f"(supernet - halving {_mean_std(ahead, ' points')}; ahead in {sum(a >= 0 for a in ahead)} of {len(ahead)} seeds)",
    ]


def _set_section(name: str, mine: list[dict], setup: dict) -> list[str]:
    teacher = setup.get("teacher", {})
    first = mine[0]["supernet"]
    lines = [f"## {name}", "",
             f"Data `../shared/data/{name}.npz`, first {setup['max_train']} training images, the whole test split; "
             f"budget {setup['max_macs']} MACs and {setup['latency_ms']} ms (host-cpu profile). Teacher: edgekd's "
             f"built-in CNN, {first['teacher_macs'] / 1e6:.1f}M MACs, {100 * first['teacher_test_acc']:.2f}% test top-1, "
             f"trained once in {teacher.get('cpu_s', float('nan')):.0f} CPU-s (counted in neither strategy).", "",
             "| seed | supernet winner | halving winner | chosen, inherited | front | evaluated | supernet cost | of it ship | "
             "halving cost | of it ship | standalone CPU-s | front - alone (points) | cell wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in mine:
        s, h = c["supernet"], c["halving"]
        inherited = "-" if s.get("chosen_inherited_test_acc") is None else f"{100 * s['chosen_inherited_test_acc']:.2f}%"
        lines.append(f"| {c['seed']} | {100 * s['winner_test_acc']:.2f}% ({s['winner_macs'] / 1e6:.2f}M) | "
                     f"{100 * h['winner_test_acc']:.2f}% ({h['winner_macs'] / 1e6:.2f}M) | {inherited} | {s['front']} | "
                     f"{s['evaluated']} | {c['supernet_cost_x']}x | {c['supernet_ship_x']}x | {c['halving_cost_x']}x | "
                     f"{c['halving_ship_x']}x | {c['standalone_cpu_s']:.0f} | " + ", ".join(f"{g:+.2f}" for g in _gaps(c))
                     + f" | {_cell_wall(c) / 60:.1f} min |")
    lines += ["", f"Mean ± std over {len(mine)} seed(s): supernet winner "
              f"{_mean_std([100 * c['supernet']['winner_test_acc'] for c in mine], '%')}, halving winner "
              f"{_mean_std([100 * c['halving']['winner_test_acc'] for c in mine], '%')}; supernet cost "
              f"{_mean_std([c['supernet_cost_x'] for c in mine], 'x')} (ship {_mean_std([c['supernet_ship_x'] for c in mine], 'x')}), "
              f"halving cost {_mean_std([c['halving_cost_x'] for c in mine], 'x')} "
              f"(ship {_mean_std([c['halving_ship_x'] for c in mine], 'x')}).", "", "Aims:", ""]
    lines += [f"- {aim}" for aim in _aims(mine)]
    lines += ["", "Front students against the same architecture trained alone:", "",
              "| seed | student | MACs | inherited | alone | alone CPU-s |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['seed']} | {a['candidate']} | {a['macs'] / 1e6:.2f}M | {100 * a['inherited_test_acc']:.2f}% | "
              f"{100 * a['alone_test_acc']:.2f}% | {a['cpu_s']:.0f} |" for c in mine for a in c["front_vs_alone"]]
    return lines + [""]


def markdown(doc: dict, learned: str) -> str:
    settings, runs = doc["settings"], doc["runs"]
    wall = sum(r["wall_s"] for r in runs)
    lines = ["# Supernet vs successive halving (benchmarks/supernet.py)", "",
             "Commands (in order; a rerun skips the cells the results already hold):", "",
             *[f"    {command}" for command in doc["commands"]], "",
             f"Runs: " + "; ".join(f"{r['started']} to {r['ended']} ({r['wall_s'] / 60:.0f} min, load "
                                   f"{r['load_start']:.1f} at start, {r['load_end']:.1f} at end)" for r in runs)
             + f". Wall-clock in all: {wall / 60:.0f} min. Machine: {doc['machine']}.", "",
             f"Every cell: `edgekd compress --strategy supernet` and `--strategy halving` ({settings['epochs']} epochs, "
             f"--measure-iters {settings['measure_iters']}, --no-bundle, the defaults otherwise: halving trains "
             "6 candidates through its rungs with the default method, fitnet), then four of the supernet's front "
             f"students trained alone with `edgekd train --method kd --augment auto --epochs {settings['epochs']}` "
             "(the teacher on every batch, as the supernet runs it).", "",
             "Aims (issue 30): the whole front (>= 8 students) for at most 3x one standalone training; each "
             "front student within 1 point of the same architecture trained alone; the chosen "
             "student at or above halving's winner.", "",
             "Cost: CPU seconds of the whole command (user + system, children included) over the mean CPU "
             "seconds of the four front students trained alone. \"of it ship\" is the part spent exporting "
             "(ONNX, parity check) and measuring every reported student and the teacher, from the wall-clock "
             "shares in the run's outcome.json. \"chosen, inherited\": the supernet's choice before its "
             "fine-tuning. Winners are the runs' winners on the test split; MACs in brackets.", ""]
    for name in settings["sets"]:
        mine = [c for c in doc["cells"] if c["set"] == name]
        if mine:
            lines += _set_section(name, mine, {**settings["per_set"][name], "teacher": doc["teachers"].get(name, {})})
        else:
            lines += [f"## {name}", "", "Not run (the CPU budget ran out first).", ""]
    return "\n".join(lines) + ("\n" + learned if learned else "")


def _learned(path: Path) -> str:
    """The hand-written section of an earlier md, kept when the tables are rewritten."""
    if not path.exists():
        return ""
    text = path.read_text()
    return text[text.index(LEARNED):] if LEARNED in text else ""


def _command_line(args: argparse.Namespace) -> str:
    shown = []
    for a in sys.argv[1:]:
        if a in (str(args.data_dir),) or (os.path.isdir(a) and Path(a).resolve() == args.data_dir.resolve()):
            shown.append("../shared/data")
        elif a == str(args.work) or Path(a).resolve() == args.work.resolve():
            shown.append("<scratch>")
        else:
            shown.append(a)
    return "python benchmarks/supernet.py " + " ".join(shown)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="the folder of cifar10.npz, clothing96.npz")
    parser.add_argument("--sets", default="cifar10,clothing96")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-train", default="2000", help="training images: N, or SET=N,SET=N")
    parser.add_argument("--max-macs", default="2M", help="MACs budget: N, or SET=N,SET=N")
    parser.add_argument("--latency-ms", default="5", help="latency budget: MS, or SET=MS,SET=MS")
    parser.add_argument("--measure-iters", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekd-supernet-bench"), help="scratch folder (runs, caches)")
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--report-only", action="store_true", help="rewrite the md from the json, run nothing")
    args = parser.parse_args()
    if args.report_only:
        md_path = RESULTS / f"supernet-{args.tag}.md"
        md_path.write_text(markdown(json.loads((RESULTS / f"supernet-{args.tag}.json").read_text()), _learned(md_path)))
        return
    sets = args.sets.split(",")
    per_set = {name: {"max_train": int(t), "max_macs": m, "latency_ms": l} for name, t, m, l in zip(
        sets, _per_set(args.max_train, sets, "max-train").values(), _per_set(args.max_macs, sets, "max-macs").values(),
        _per_set(args.latency_ms, sets, "latency-ms").values())}
    settings = {"sets": sets, "epochs": args.epochs, "measure_iters": args.measure_iters, "per_set": per_set}
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EDGEKD_CACHE_DIR": str(args.work / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    json_path, md_path = RESULTS / f"supernet-{args.tag}.json", RESULTS / f"supernet-{args.tag}.md"
    doc = json.loads(json_path.read_text()) if json_path.exists() else {}
    old = doc.get("settings", settings)
    if (old["epochs"], old["measure_iters"]) != (args.epochs, args.measure_iters) or any(
            old["per_set"].get(name, per_set[name]) != per_set[name] for name in sets):
        raise SystemExit(f"{json_path.name} holds cells of other settings: give another --tag, or delete it")
    doc = {"commands": [], "settings": settings, "cells": [], "teachers": {}, "runs": [], **doc}
    doc["settings"]["sets"] = list(dict.fromkeys(doc["settings"]["sets"] + sets))
    doc["settings"]["per_set"] = {**doc["settings"]["per_set"], **per_set}
    doc["commands"] = list(dict.fromkeys(doc["commands"] + [_command_line(args)]))
    doc["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores shared with other agents, "
                      f"torch {_torch_version()}, one CPU thread per command (the project's CPU-slot wrapper)")
    run = {"started": _now(), "load_start": os.getloadavg()[0]}
    t0 = time.monotonic()
    learned = _learned(md_path)

    def write() -> None:
        doc["runs"] = [r for r in doc["runs"] if r["started"] != run["started"]] + [
            {**run, "ended": _now(), "wall_s": round(time.monotonic() - t0, 1), "load_end": os.getloadavg()[0]}]
        json_path.write_text(json.dumps(doc, indent=1) + "\n")
        md_path.write_text(markdown(doc, learned))

    done = {(c["set"], c["seed"]) for c in doc["cells"]}
    for name in sets:
        data = _subset(args.data_dir, name, per_set[name]["max_train"], args.work)
        doc["teachers"][name] = _command(f"{name}-teacher", ["-c", _TEACHER, str(data)], env, args.work, None,
                                         own_cache=False)
        for seed in (int(s) for s in args.seeds.split(",")):
            if (name, seed) in done:
                continue
            doc["cells"].append(one_cell(data, name, seed, per_set[name], args, args.work, env))
            print(json.dumps(doc["cells"][-1]), flush=True)
            write()  # after every cell: a stopped run keeps what it has
    write()
    print(md_path.read_text())


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
