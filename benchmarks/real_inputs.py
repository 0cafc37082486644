"""``edgekd compress`` on real photos with a torchvision teacher, against the torchvision small
models a user would otherwise distil into (``--reference``).

1. The teacher: torchvision resnet18 trained from scratch here (benchmarks/real_teacher.py: ImageNet
   mean/std, crop + flip, SGD one-cycle; no downloads), once per data set and reused by every seed.
2. Per seed: ``edgekd compress --data ../shared/data/SET.npz --teacher T --arch resnet18
   --normalize imagenet --max-macs TEACHER_MACS/10 --latency-ms 1000 --reference-models ...``
   (the MACs budget binds; the references are the models that fit it) as a subprocess.
3. From each run: teacher, edgekd's best final student per family, every reference student:
   top-1 and balanced (per-class mean) test accuracy, MACs, parameters, host latency measured by
   the run (ONNX Runtime, batch 1). Mean +- std over the seeds; the aims checked and stated.

Usage (CPU, one slot):
    /work/bin/heavy python benchmarks/real_inputs.py --work /tmp/real_inputs --tag cpu

Results: benchmarks/results/real_inputs-TAG.{json,md}; paths in them are relative
(``../shared/data``, ``<work>``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

#: per data set: teacher epochs and the reference models trained (those a user would reach for
#: that fit 1/10 of the teacher's MACs; fewer than all of them to fit the CPU budget)
SETS: dict[str, dict[str, Any]] = {
    "clothing96": {"teacher_epochs": 3, "references": ("mobilenet_v3_small", "shufflenet_v2_x1_0"), "extra": ()},
    "cifar10": {"teacher_epochs": 3, "references": ("mobilenet_v3_small_x0_5", "mobilenet_v3_small_x0_75"),
                "extra": ("--max-train-samples", "5000")},
}
AIM_POINTS = 2.0


def compress_command(name: str, teacher: Path, macs: int, seed: int, out: Path, args: argparse.Namespace) -> list[str]:
    refs = ",".join(SETS[name]["references"])
    cmd = ["edgekd", "compress", "--data", f"../shared/data/{name}.npz", "--teacher", str(teacher),
           "--arch", "resnet18", "--normalize", "imagenet", "--max-macs", str(macs), "--latency-ms", "1000",
           "--reference-models", refs, "--method", args.method, "--epochs", str(args.epochs),
           "--candidates", str(args.candidates), "--finalists", "1", "--eta", str(args.candidates),
           "--min-epochs", "1", "--augment", "none", "--teacher-views", "0", "--measure-iters", "200",
           "--threads-per-trial", "1", "--no-bundle", "--no-progress", "--seed", str(seed), "--out", str(out),
           *SETS[name]["extra"]]
    if args.families:
        cmd[cmd.index("--method"):cmd.index("--method")] = ["--family", args.families]
    return cmd


def balanced(run: Path, trial: str, x: np.ndarray, y: np.ndarray) -> float:
    """Balanced test accuracy of a trial's checkpoint (normalised as the run trained it)."""
    import torch

    from edgekd.core.checkpoint import load_student
    from edgekd.inputs.data import Normalization, to_tensor

    model, info = load_student(run / "trials" / trial / "checkpoint.pt")
    norm = Normalization.from_dict(info.normalization)
    with torch.inference_mode():
        pred = torch.cat([model(to_tensor(x[i:i + 256], norm)).argmax(1) for i in range(0, len(x), 256)]).numpy()
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def read_run(run: Path, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from edgekd.search.space import StudentSpec

    summary = json.loads((run / "report" / "summary.json").read_text())
    rows = []
    for s in summary["students"]:
        if s["role"] not in ("final", "reference"):
            continue
        host = s["latency"]["host"]
        rows.append({"trial": s["trial"], "role": s["role"], "model": s.get("model"),
                     "family": s["spec"]["family"], "describe": StudentSpec.from_dict(s["spec"]).describe(),
                     "macs": s["macs"], "params": s["params"], "val_acc": s["val_acc"], "test_acc": s["test_acc"],
                     "test_balanced_acc": balanced(run, s["trial"], x, y), "host_ms": host and host["ms"],
                     "winner": s["trial"] == summary["winner"]})
    teacher = summary["teacher"]
    return {"teacher": {"test_acc": teacher["test_acc"], "macs": teacher["macs"], "params": teacher["params"],
                        "host_ms": teacher["latency"]["host"] and teacher["latency"]["host"]["ms"]},
            "students": rows, "timing": summary.get("timing")}


def _stat(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def aggregate(name: str, runs: list[dict[str, Any]], teacher_record: dict[str, Any]) -> dict[str, Any]:
    """Rows: teacher, edgekd's winner, edgekd's best final per family, each reference (mean +- std)."""
    def row(label: str, picks: list[dict]) -> dict[str, Any]:
        return {"label": label, "test_acc": _stat([p["test_acc"] for p in picks]),
                "test_balanced_acc": _stat([p["test_balanced_acc"] for p in picks]),
                "macs": statistics.median(p["macs"] for p in picks), "params": statistics.median(p["params"] for p in picks),
                "host_ms": statistics.median(p["host_ms"] for p in picks if p["host_ms"]),
                "picked": [p.get("describe") or p["trial"] for p in picks]}

    t = [r["teacher"] for r in runs]
    rows = [{"label": "teacher (torchvision resnet18)", "test_acc": _stat([v["test_acc"] for v in t]),
             "test_balanced_acc": _stat([teacher_record["test_balanced_acc"]] * len(t)),
             "macs": t[0]["macs"], "params": t[0]["params"], "host_ms": statistics.median(v["host_ms"] for v in t)}]
    rows.append(row("edgekd winner", [next(s for s in r["students"] if s["winner"]) for r in runs]))
    families = sorted({s["family"] for r in runs for s in r["students"] if s["role"] == "final"})
    for family in families:
        picks = [max((s for s in r["students"] if s["role"] == "final" and s["family"] == family),
                     key=lambda s: s["val_acc"], default=None) for r in runs]
        if all(picks):
            rows.append(row(f"edgekd {family}", picks))
    for model in SETS[name]["references"]:
        picks = [next((s for s in r["students"] if s["model"] == model), None) for r in runs]
        if all(picks):
            rows.append(row(f"reference {model}", picks))
    return {"rows": rows, "aims": aims(rows)}


def aims(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's two aims, each ``met`` or ``MISSED`` with its numbers: (1) at equal or lower
    measured latency, edgekd's winner at or above the best reference student (stated against the
    most accurate reference as well, whatever its latency); (2) within AIM_POINTS of the teacher
    at 1/10 of its MACs or fewer."""
    teacher, winner = rows[0], rows[1]
    refs = [r for r in rows if r["label"].startswith("reference")]
    lines = []
    if refs:
        w_acc, w_ms = winner["test_acc"]["mean"], winner["host_ms"]
        faster = [r for r in refs if r["host_ms"] <= w_ms]
        best_faster = max(faster, key=lambda r: r["test_acc"]["mean"], default=None)
        if best_faster is None:
            lines.append(f"no reference runs at or below edgekd's winner's {w_ms:.3f} ms (aim 1 not tested)")
        else:
            met = w_acc >= best_faster["test_acc"]["mean"]
            lines.append(f"{'met' if met else 'MISSED'}: at <= {w_ms:.3f} ms, edgekd's winner {w_acc:.2%} vs "
                         f"{best_faster['label'][10:]} {best_faster['test_acc']['mean']:.2%}")
        best = max(refs, key=lambda r: r["test_acc"]["mean"])
        if best["test_acc"]["mean"] <= w_acc:
            lines.append(f"every reference is less accurate than edgekd's winner (the best, {best['label'][10:]}, "
                         f"{best['test_acc']['mean']:.2%} at {best['host_ms']:.3f} ms)")
        else:
            lines.append(f"the most accurate reference, {best['label'][10:]}, beat edgekd's winner by "
                         f"{100 * (best['test_acc']['mean'] - w_acc):.2f} points at {best['host_ms']:.3f} ms "
                         f"({best['host_ms'] / w_ms:.1f}x the winner's latency)")
    gap = 100 * (teacher["test_acc"]["mean"] - winner["test_acc"]["mean"])
    ratio = teacher["macs"] / winner["macs"]
    lines.append(f"{'met' if gap <= AIM_POINTS and ratio >= 10 else 'MISSED'}: gap to the teacher "
                 f"{gap:.2f} points (aim <= {AIM_POINTS}) at {ratio:.1f}x fewer MACs (aim >= 10x)")
    return lines


def run_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from real_teacher import train_teacher

    started = time.monotonic()
    teacher = train_teacher(DATA_DIR / f"{name}.npz", "resnet18", SETS[name]["teacher_epochs"], args.work)
    macs = int(teacher["macs"]) // 10
    d = np.load(DATA_DIR / f"{name}.npz")
    x, y = d["x_test"].transpose(0, 3, 1, 2), d["y_test"]
    runs, commands = [], []
    for seed in args.seeds:
        out = args.work / f"{name}-s{seed}"
        cmd = compress_command(name, args.work / f"teacher-{name}-resnet18.pt", macs, seed, out, args)
        commands.append(" ".join(cmd).replace(str(args.work), "<work>"))
        if not (out / "report" / "summary.json").exists():
            mark = time.monotonic()
            subprocess.run([sys.executable, "-m", "edgekd", *cmd[1:]], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
            print(f"[real_inputs] {name} seed {seed}: {time.monotonic() - mark:.0f} s", flush=True)
        runs.append(read_run(out, x, y))
    return {"teacher": {k: teacher[k] for k in ("recipe", "test_acc", "test_balanced_acc", "macs", "params",
                                                 "wall_clock_s", "epoch_s")},
            "max_macs": macs, "commands": commands, "runs": runs, **aggregate(name, runs, teacher),
            "wall_clock_s": round(time.monotonic() - started, 1)}


def markdown(result: dict[str, Any]) -> str:
    from edgekd.core import fmt

    lines = [f"# Real inputs: edgekd vs torchvision reference students ({result['tag']})", "",
             f"Date {result['date']}; machine: {result['machine']}; wall-clock {result['wall_clock_s']:.0f} s "
             f"(teachers included; one CPU thread, machine shared: {result['load']}).", "",
             result["budget_note"], ""]
    for name, res in result["sets"].items():
        t = res["teacher"]
        lines += [f"## {name}", "",
                  f"Teacher: torchvision resnet18 from scratch, {t['recipe']['epochs']} epochs "
                  f"({t['wall_clock_s']:.0f} s): {t['test_acc']:.2%} top-1, {t['test_balanced_acc']:.2%} balanced. "
                  f"Budget: {res['max_macs'] / 1e6:.1f}M MACs (1/10 of the teacher's).", "",
                  "| model | top-1 (mean ± std) | balanced | MACs | params | host latency (median) |",
                  "|---|---|---|---|---|---|"]
        for r in res["rows"]:
            a, b = r["test_acc"], r["test_balanced_acc"]
            lines.append(f"| {r['label']} | {a['mean']:.2%} ± {100 * a['std']:.2f} | {b['mean']:.2%} ± "
                         f"{100 * b['std']:.2f} | {fmt.count(r['macs'])} | {fmt.count(r['params'])} | "
                         f"{r['host_ms']:.3f} ms |")
        picked = next((r["picked"] for r in res["rows"] if r["label"] == "edgekd winner"), [])
        lines += ["", "edgekd's winners (seeds in order): " + "; ".join(picked) + ".", "",
                  "Aims: " + "; ".join(aims(res["rows"])) + ".", "", "Commands (one per seed):", ""]
        lines += [f"    {c}" for c in res["commands"]]
        lines += ["", f"Wall-clock for {name}: {res['wall_clock_s']:.0f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sets", default="clothing96,cifar10")
    parser.add_argument("--seeds", type=lambda v: [int(s) for s in v.split(",")], default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--method", default="kd")
    parser.add_argument("--families", default=None, help="--family of compress (when it has one)")
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--budget-note", default="")
    parser.add_argument("--rewrite", type=Path, default=None, help="only rewrite the .md of this results .json")
    args = parser.parse_args()
    if args.rewrite:
        result = json.loads(args.rewrite.read_text())
        for res in result["sets"].values():
            res["aims"] = aims(res["rows"])
        args.rewrite.write_text(json.dumps(result, indent=2))
        args.rewrite.with_suffix(".md").write_text(markdown(result))
        return
    args.work = args.work.resolve()
    started, load = time.monotonic(), os.getloadavg()
    sets = {name: run_set(name, args) for name in args.sets.split(",")}
    import torch

    result = {"tag": args.tag, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "load": f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end",
              "budget_note": args.budget_note, "args": {k: str(v) for k, v in vars(args).items() if k != "work"},
              "wall_clock_s": round(time.monotonic() - started, 1), "sets": sets}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"real_inputs-{args.tag}.json").write_text(json.dumps(result, indent=2).replace(str(args.work), "<work>"))
    (RESULTS / f"real_inputs-{args.tag}.md").write_text(markdown(result).replace(str(args.work), "<work>"))
    print(markdown(result))


if __name__ == "__main__":
    main()
