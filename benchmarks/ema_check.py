"""Does ``--ema`` help? The same student trained with and without an EMA of its weights.

CIFAR-10 (../shared/data/cifar10.npz), a plain 3-stage student, labels only (``scratch``: EMA
acts on the student's weights whatever the loss), crop + flip, SGD with warm-up and cosine,
``--seeds`` seeds per setting, one torch thread. Prints and writes
benchmarks/results/ema_check[-TAG].json and .md (mean +- std of the test accuracy per decay).

    nice -n 10 python benchmarks/ema_check.py --epochs 4 --tag cpu
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10.npz"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--decays", default="0,0.99,0.998")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    import torch

    from edgekd.core.fileio import atomic_write_json, atomic_write_text
    from edgekd.distill import TrainConfig, train_student
    from edgekd.inputs.loaders import load_dataset
    from edgekd.search.space import Stage, StudentSpec

    torch.set_num_threads(1)
    data = load_dataset(args.data)
    spec = StudentSpec("plain", tuple(data.input_shape), data.num_classes,
                       (Stage(16, 1, 1), Stage(32, 2, 2), Stage(64, 2, 2)))
    started, load_start = time.monotonic(), os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for decay in [float(d) for d in args.decays.split(",")]:
            for seed in range(args.seeds):
                config = TrainConfig(method="scratch", epochs=args.epochs, seed=seed, augment="crop-flip",
                                     ema=decay, device="cpu")
                result = train_student(spec, [], data, config, Path(tmp) / f"{decay}-{seed}", progress=False)
                rows.append({"ema": decay, "seed": seed, "val_acc": result.val_acc, "test_acc": result.test_acc,
                             "best_epoch": result.best_epoch, "seconds": result.seconds})
                print(rows[-1], flush=True)
    summary = []
    for decay in sorted({r["ema"] for r in rows}):
        accs = [r["test_acc"] for r in rows if r["ema"] == decay]
        summary.append({"ema": decay, "test_mean": statistics.mean(accs),
                        "test_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "n": len(accs)})
    result = {"command": " ".join(["python", "benchmarks/ema_check.py", *sys.argv[1:]]),
              "data": "../shared/data/cifar10.npz" if args.data.endswith("shared/data/cifar10.npz") else args.data,
              "student": spec.to_dict(), "epochs": args.epochs,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "threads": 1, "load_average_start": [round(v, 2) for v in load_start],
                          "load_average_end": [round(v, 2) for v in os.getloadavg()]},
              "wall_clock_s": round(time.monotonic() - started, 1), "runs": rows, "summary": summary}
    tag = f"-{args.tag}" if args.tag else ""
    atomic_write_json(RESULTS / f"ema_check{tag}.json", result)
    base = next(s for s in summary if s["ema"] == 0.0) if any(s["ema"] == 0.0 for s in summary) else None
    lines = ["# --ema: the same student with and without an EMA of its weights", "",
             f"Command: `{result['command']}` ({args.epochs} epochs, scratch, crop + flip, "
             f"{data.num_classes} classes, {len(data.y_train)} training images). Machine: "
             f"{result['machine']['platform']}, {os.cpu_count()} CPUs, 1 torch thread, load average "
             f"{result['machine']['load_average_start']} -> {result['machine']['load_average_end']}; "
             f"wall-clock {result['wall_clock_s']} s.", "",
             "| EMA decay | test acc (mean ± std) | vs no EMA | seeds |", "|---|---|---|---|"]
    for s in summary:
        delta = "" if base is None or s is base else f"{100 * (s['test_mean'] - base['test_mean']):+.2f} points"
        lines.append(f"| {s['ema'] or 'off'} | {100 * s['test_mean']:.2f}% ± {100 * s['test_std']:.2f} | "
                     f"{delta} | {s['n']} |")
    atomic_write_text(RESULTS / f"ema_check{tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
