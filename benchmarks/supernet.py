"""Supernet against successive halving at the same budget, and front students against the
same architectures trained alone (``edgekd compress --strategy supernet|halving``).

For each data set and seed:

1. ``edgekd compress --strategy supernet`` and ``--strategy halving`` with the same data,
   teacher (edgekd's built-in CNN trained on the set, cached and shared), budget and epochs;
2. four students of the supernet's front (spread over its latency range) trained alone with
   ``edgekd train --method kd`` at the same epochs;
3. CPU seconds (user + system of the child processes) of each command, and the test accuracy of
   every student; the supernet's cost as a multiple of one standalone training.

Aims (issue text, kept here so the results can say met or missed): the whole front (>= 8
students) for at most 3x the cost of one standalone training; each front student within 1
point of the same architecture trained alone; the chosen student at or above halving's winner.

    python benchmarks/supernet.py --data-dir ../shared/data --sets cifar10,clothing96 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _subset(data_dir: Path, name: str, limit: int, work: Path) -> Path:
    """``name``.npz with at most ``limit`` training images (the test split whole)."""
    out = work / f"{name}-{limit}.npz"
    if not out.exists():
        data = np.load(data_dir / f"{name}.npz")
        np.savez(out, x_train=data["x_train"][:limit], y_train=data["y_train"][:limit],
                 x_test=data["x_test"], y_test=data["y_test"], classes=data["classes"])
    return out


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``python -m edgekd ARGS``; returns (CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgekd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"edgekd {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(cpu, 1), round(time.monotonic() - started, 1)


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


def one_cell(data: Path, name: str, seed: int, args: argparse.Namespace, work: Path,
             env: dict[str, str]) -> dict:
    common = ["--data", str(data), "--seed", str(seed), "--epochs", str(args.epochs),
              "--max-macs", args.max_macs, "--latency-ms", str(args.latency_ms),
              "--measure-iters", "50", "--no-bundle", "--no-progress"]
    cell: dict = {"set": name, "seed": seed}
    for strategy in ("supernet", "halving"):
        out = work / f"{name}-s{seed}-{strategy}"
        cpu, wall = _run(["compress", "--strategy", strategy, "--out", str(out), "--resume", *common]
                         if out.exists() else ["compress", "--strategy", strategy, "--out", str(out), *common],
                         env, work)
        summary = _summary(out)
        winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
        cell[strategy] = {"cpu_s": cpu, "wall_s": wall, "winner": winner["trial"],
                          "winner_test_acc": winner["test_acc"], "students": len(summary["students"]),
                          "teacher_test_acc": summary["teacher"]["test_acc"]}
    summary = _summary(work / f"{name}-s{seed}-supernet")
    alone = []
    for student in _four_of_the_front(summary):
        spec = work / f"{name}-s{seed}-{student['candidate']}.json"
        spec.write_text(json.dumps(student["spec"]))
        out = work / f"{name}-s{seed}-alone-{student['candidate']}"
        cpu, wall = _run(["train", "--student", str(spec), "--data", str(data), "--method", "kd", "--augment", "auto",
                          "--epochs", str(args.epochs), "--seed", str(seed), "--out", str(out)], env, work)
        result = json.loads((out / "result.json").read_text())
        alone.append({"candidate": student["candidate"], "inherited_test_acc": student["test_acc"],
                      "alone_test_acc": result["test_acc"], "cpu_s": cpu, "macs": student["macs"]})
    cell["front_vs_alone"] = alone
    cell["standalone_cpu_s"] = round(statistics.mean(a["cpu_s"] for a in alone), 1)
    cell["supernet_cost_x"] = round(cell["supernet"]["cpu_s"] / cell["standalone_cpu_s"], 2)
    cell["halving_cost_x"] = round(cell["halving"]["cpu_s"] / cell["standalone_cpu_s"], 2)
    return cell


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(cells: list[dict], command: str, meta: dict) -> str:
    lines = ["# Supernet vs successive halving (benchmarks/supernet.py)", "",
             f"Command: `{command}` ({meta['date']}; {meta['machine']}).", "",
             "Aims: the whole front (>= 8 students) for at most 3x one standalone training; each "
             "front student within 1 point of the same architecture trained alone; the chosen "
             "student at or above halving's winner.", "",
             "| set | seed | teacher | supernet winner | halving winner | front students | supernet cost | halving cost | front - alone (points) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        gaps = [100 * (a["inherited_test_acc"] - a["alone_test_acc"]) for a in c["front_vs_alone"]]
        lines.append(f"| {c['set']} | {c['seed']} | {100 * c['supernet']['teacher_test_acc']:.2f}% | "
                     f"{100 * c['supernet']['winner_test_acc']:.2f}% | {100 * c['halving']['winner_test_acc']:.2f}% | "
                     f"{c['supernet']['students'] - 1} | {c['supernet_cost_x']}x | {c['halving_cost_x']}x | "
                     + ", ".join(f"{g:+.2f}" for g in gaps) + " |")
    lines += ["", "Cost: CPU seconds of the whole command (user + system) over the mean CPU seconds of "
              "one front student trained alone with `edgekd train --method kd` at the same epochs.", ""]
    for name in sorted({c["set"] for c in cells}):
        mine = [c for c in cells if c["set"] == name]
        lines.append(f"- {name}: supernet winner {_mean_std([100 * c['supernet']['winner_test_acc'] for c in mine])}%, "
                     f"halving winner {_mean_std([100 * c['halving']['winner_test_acc'] for c in mine])}%, "
                     f"supernet cost {_mean_std([c['supernet_cost_x'] for c in mine])}x, "
                     f"halving cost {_mean_std([c['halving_cost_x'] for c in mine])}x.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", default="cifar10,clothing96")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-train", type=int, default=10000, help="training images per set")
    parser.add_argument("--max-macs", default="2M")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekd-supernet-bench"))
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EDGEKD_CACHE_DIR": str(args.work / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = "python benchmarks/supernet.py " + " ".join(
        "../shared/data" if a == str(args.data_dir) else a for a in sys.argv[1:])
    cells = []
    for name in args.sets.split(","):
        data = _subset(args.data_dir, name, args.max_train, args.work)
        for seed in (int(s) for s in args.seeds.split(",")):
            cells.append(one_cell(data, name, seed, args, args.work, env))
            print(json.dumps(cells[-1]), flush=True)
            _write(cells, command, args.tag)  # after every cell: a stopped run keeps what it has
    print(markdown(cells, command, _meta()))


def _meta() -> dict:
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} "
                       "when written"}


def _write(cells: list[dict], command: str, tag: str) -> None:
    meta = _meta()
    (RESULTS / f"supernet-{tag}.json").write_text(json.dumps({"meta": meta, "command": command,
                                                              "cells": cells}, indent=1))
    (RESULTS / f"supernet-{tag}.md").write_text(markdown(cells, command, meta))


if __name__ == "__main__":
    main()
