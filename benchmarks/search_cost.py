"""Successive halving vs training every shortlisted student fully, on MNIST.

Both arms train the SAME shortlist (edgekd.search.search on the host-cpu profile, with a MACs budget
well below the teacher's) with the same method, seed and data, from the same teacher:

* ``halving``: edgekd.run.halving.SuccessiveHalving with the local executor (rungs of
  ``min_epochs * eta**i`` epochs, the best 1/eta promoted, continuing from checkpoints; the
  finalist is then trained from scratch for ``--epochs``, as edgekd compress does);
* ``full``: every shortlisted student trained for ``--epochs`` epochs.

Reported: epochs spent by each arm (and their ratio), wall time, the best validation and test
accuracy each arm found, and whether both picked the same architecture. The aim is
``halving epochs <= 1/3 of full`` with the best test accuracy within 0.3 points.

    python benchmarks/search_cost.py                 # ../shared/data/mnist.npz, ~15-20 min on 2 cores
    python benchmarks/search_cost.py --quick         # a smoke run on the shipped subset

Writes benchmarks/results/search_cost.json and search_cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist.npz"


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MNIST) if MNIST.exists() else None)
    parser.add_argument("--candidates", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--method", default="kd")
    parser.add_argument("--max-macs", default="400K", help="student MACs budget (teacher: ~7.7M)")
    parser.add_argument("--max-train-samples", type=int, default=10000)
    parser.add_argument("--teacher-samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run on the shipped subset")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    if args.quick:
        args.data, args.candidates, args.epochs, args.max_train_samples = None, 3, 3, 1000
        args.teacher_samples = 2000

    from edgekd.inputs.loaders import load_dataset
    from edgekd.run.executors import LocalExecutor, TrialContext, train_trial, trial_payload
    from edgekd.run.halving import HalvingConfig, SuccessiveHalving, TrialJob, epochs_spent
    from edgekd.inputs.profiles import load_profile
    from edgekd.run.rundir import RunDir
    from edgekd.search.search import default_cost_cache, search_candidates
    from edgekd.distill.builtin_teacher import builtin_teacher, model_accuracy as accuracy
    from edgekd.inputs.teachers import model_fingerprint
    from edgekd.core.units import parse_count

    info = {"machine": machine(), "args": vars(args),
            "note": "shared 2-core machine, other jobs running: wall times are noisy; epochs are exact"}
    started = time.perf_counter()
    dataset = load_dataset(args.data)
    teacher = builtin_teacher(dataset, max_train_samples=args.teacher_samples, progress=False)
    teacher_acc = accuracy(teacher, dataset.x_test, dataset.y_test, dataset.normalization)
    info["teacher"] = {"test_acc": teacher_acc, "train_samples": args.teacher_samples,
                       "seconds_incl_training": round(time.perf_counter() - started, 1)}
    print(f"data {dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_test)} test; "
          f"teacher test acc {teacher_acc:.4f}", flush=True)

    profile = load_profile("host-cpu").with_budget(macs=parse_count(args.max_macs), latency_ms=10.0)
    found = search_candidates(profile, dataset.input_shape, dataset.num_classes,
                              shortlist=args.candidates, cost_cache=default_cost_cache())
    shortlist = {c.id: c.spec.to_dict() for c in found.shortlist}
    order = list(shortlist)
    info["shortlist"] = [{"id": c.id, "depth": c.depth, "macs": c.macs, "params": c.params}
                         for c in found.shortlist]
    print(f"shortlist: {len(order)} of {len(found.feasible)} feasible students "
          f"(MACs <= {args.max_macs})", flush=True)

    context = TrialContext([teacher], dataset, [model_fingerprint(teacher)])

    def config(epochs: int) -> dict:
        return {"method": args.method, "epochs": epochs, "seed": args.seed,
                "max_train_samples": args.max_train_samples, "hint_epochs": 1}

    work = Path(tempfile.mkdtemp(prefix="edgekd-search-cost-"))
    try:
        # ---- arm 1: successive halving
        halving = HalvingConfig(eta=args.eta, min_epochs=args.min_epochs, max_epochs=args.epochs)
        run = RunDir(work / "halving")
        scheduler = SuccessiveHalving(
            halving, lambda tid, rung: TrialJob(tid, rung.index, rung.epochs,
                                                trial_payload(shortlist[tid], config(rung.epochs)),
                                                folder=rung.folder(tid)),
            run, lambda e: print("  " + _line(e), flush=True) if e.kind == "trial" else None)
        tick = time.perf_counter()
        outcome = scheduler.run(order, LocalExecutor(run, context))
        halving_s = time.perf_counter() - tick
        winner = outcome.finalists[0]
        sh = {"rungs": [(r.keep, r.epochs) + (("fresh",) if r.fresh else ()) for r in outcome.rungs],
              "epochs": outcome.epochs_spent, "planned_epochs": epochs_spent(outcome.rungs),
              "seconds": round(halving_s, 1), "winner": winner,
              "val_acc": outcome.results[winner]["val_acc"],
              "test_acc": outcome.results[winner]["test_acc"]}
        print(f"halving: {sh['epochs']} epochs, {halving_s:.0f} s, winner {winner} "
              f"test {sh['test_acc']:.4f}", flush=True)

        # ---- arm 2: every shortlisted student trained fully
        tick = time.perf_counter()
        full_results = {}
        for tid in order:
            result = train_trial(trial_payload(shortlist[tid], config(args.epochs)), context,
                                 work / "full" / tid)
            full_results[tid] = result
            print(f"  full {tid}: val {result['val_acc']:.4f} test {result['test_acc']:.4f} "
                  f"({result['job_seconds']:.0f} s)", flush=True)
        full_s = time.perf_counter() - tick
        best_val = max(order, key=lambda t: (full_results[t]["val_acc"], -order.index(t)))
        best_test = max(full_results[t]["test_acc"] for t in order)
        full = {"epochs": sum(r["epochs_done"] for r in full_results.values()),
                "seconds": round(full_s, 1), "winner_by_val": best_val,
                "val_acc": full_results[best_val]["val_acc"],
                "test_acc": full_results[best_val]["test_acc"], "best_test_acc_any": best_test,
                "per_candidate": {t: {k: full_results[t][k] for k in ("val_acc", "test_acc")}
                                  for t in order}}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    info.update(halving=sh, full=full, comparison={
        "epoch_ratio": round(sh["epochs"] / full["epochs"], 3),
        "time_ratio": round(sh["seconds"] / max(full["seconds"], 1e-9), 3),
        "test_acc_gap_points": round(100 * (full["test_acc"] - sh["test_acc"]), 2),
        "same_winner": sh["winner"] == full["winner_by_val"],
        "aim_epochs_at_most_one_third": sh["epochs"] <= full["epochs"] / 3,
        "aim_within_0_3_points": 100 * (full["test_acc"] - sh["test_acc"]) <= 0.3,
    }, total_seconds=round(time.perf_counter() - started, 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "search_cost_quick" if args.quick else "search_cost"
    (out / f"{stem}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (out / f"{stem}.md").write_text(_markdown(info))
    print(_markdown(info))


def _line(event) -> str:
    from edgekd.run.progress import describe

    return describe(event)


def _markdown(info: dict) -> str:
    sh, full, cmp = info["halving"], info["full"], info["comparison"]
    a = info["args"]
    return "\n".join([
        "# Successive halving vs full training (benchmarks/search_cost.py)", "",
        f"Data `{a['data'] or 'shipped MNIST subset'}` ({a['max_train_samples']} training images), "
        f"teacher test acc {info['teacher']['test_acc']:.4f}, {len(info['shortlist'])} shortlisted "
        f"students (MACs <= {a['max_macs']}), method {a['method']}, eta {a['eta']}, "
        f"epochs {a['min_epochs']}..{a['epochs']}, seed {a['seed']}.", "",
        "| arm | epochs | wall s | winner | val acc | test acc |", "|---|---|---|---|---|---|",
        f"| successive halving {sh['rungs']} | {sh['epochs']} | {sh['seconds']} | {sh['winner']} | "
        f"{sh['val_acc']:.4f} | {sh['test_acc']:.4f} |",
        f"| train all fully | {full['epochs']} | {full['seconds']} | {full['winner_by_val']} | "
        f"{full['val_acc']:.4f} | {full['test_acc']:.4f} |", "",
        f"Epoch ratio {cmp['epoch_ratio']} (aim <= 0.333: {cmp['aim_epochs_at_most_one_third']}), "
        f"test accuracy gap {cmp['test_acc_gap_points']} points (aim <= 0.3: "
        f"{cmp['aim_within_0_3_points']}), same winner: {cmp['same_winner']}. "
        f"Best test accuracy of any fully trained student: {full['best_test_acc_any']:.4f}.", "",
        f"Machine: {info['machine']['processor']}, {info['machine']['cpus']} CPUs, torch "
        f"{info['machine']['torch']}; load average at start {info['machine']['load_average_at_start']}. "
        f"{info['note']}.", ""])


if __name__ == "__main__":
    sys.exit(main())
