"""The built-in teacher: its old private training loop against the one trainer (issue 10.7).

Until commit 181ed69 the built-in teacher had its own loop in edgekd/inputs/teachers.py (AdamW,
one-cycle learning rate, every batch including the last partial one, one shuffling generator for
all epochs). Now edgekd/distill/builtin_teacher.py trains it through
edgekd.distill.trainer.train_student (method scratch, AdamW, warm-up + cosine, the trainer's data
order). The weights cannot be bit-identical (another schedule and data order); this measures how
far the teacher's accuracy moved: full default recipe (3 epochs, the shipped subset's 10,000
training images), per seed, one torch thread, on the subset's 2,000 test images and (when
``../shared/data/mnist.npz`` exists) the full 10,000-image MNIST test set.

Usage (each run is one training, a few minutes on one core; rows are appended, then summarised):
    python benchmarks/teacher_trainer_vs_loop.py run old SEED
    python benchmarks/teacher_trainer_vs_loop.py run new SEED
    python benchmarks/teacher_trainer_vs_loop.py summarize

The old loop is read from git (``git show 181ed69:edgekd/inputs/teachers.py``), so this needs
the repository's history. Writes benchmarks/results/teacher_trainer_vs_loop.{jsonl,json,md}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.core.fileio import atomic_write_json, atomic_write_text
from edgekd.distill.builtin_teacher import TeacherRecipe, model_accuracy, train_builtin_teacher
from edgekd.inputs.loaders import load_dataset

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared/data/mnist.npz"
RESULTS = REPO / "benchmarks/results"
ROWS = RESULTS / "teacher_trainer_vs_loop.jsonl"
OLD_COMMIT = "181ed69"
NOTE = ("Training seconds are wall-clock on the shared machine (load average 11-12 during these "
        "runs, two trainings at a time), so they compare nothing. The 2026-11-30 rows were made "
        "with this script's `run` code from a scratch copy, before it was added here.")


def _old_module():
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:edgekd/inputs/teachers.py"],
                            check=True, capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="edgekd-old-loop-"))
    (folder / "old_teachers.py").write_text(source)
    spec = importlib.util.spec_from_file_location("old_teachers", folder / "old_teachers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_teachers"] = module
    spec.loader.exec_module(module)
    return module


def run(which: str, seed: int) -> dict:
    torch.set_num_threads(1)
    data = load_dataset()
    started = time.perf_counter()
    if which == "old":
        old = _old_module()
        model, metrics = old.train_builtin_teacher(data, old.TeacherRecipe(seed=seed), progress=True)
    else:
        model, metrics = train_builtin_teacher(data, TeacherRecipe(seed=seed), progress=True)
    row = {"loop": which, "seed": seed, "seconds": round(time.perf_counter() - started, 1),
           "subset_test_acc": model_accuracy(model, data.x_test, data.y_test, data.normalization),
           "load_average": os.getloadavg()[0]}
    if MNIST.exists():
        with np.load(MNIST) as full:
            x = full["x_test"][:, None] if full["x_test"].ndim == 3 else full["x_test"]
            row["mnist_10k_test_acc"] = model_accuracy(model, x, full["y_test"], data.normalization)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ROWS.open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return row


def summarize() -> None:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    result: dict = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                                "torch": torch.__version__, "cpu_count": os.cpu_count(),
                                "torch_threads": 1,
                                "note": "shared 2-core machine, other engineers' jobs running"},
                    "command": "python benchmarks/teacher_trainer_vs_loop.py run {old,new} SEED",
                    "recipe": {"epochs": 3, "batch_size": 128, "lr": 3e-3, "weight_decay": 5e-4},
                    "rows": rows, "summary": {}}
    lines = ["# Built-in teacher: old private loop vs the one trainer "
             "(benchmarks/teacher_trainer_vs_loop.py)", "",
             f"Machine: {result['machine']['platform']}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             "1 torch thread; shared and noisy. Command: `python benchmarks/teacher_trainer_vs_loop.py "
             "run {old,new} SEED`, then `summarize`.", "",
             "| loop | seeds | subset test acc (2,000), mean ± std | MNIST test acc (10,000), mean ± std "
             "| training s (mean) |", "|---|---|---|---|---|"]
    for loop in ("old", "new"):
        mine = sorted((r for r in rows if r["loop"] == loop), key=lambda r: r["seed"])
        if not mine:
            continue
        entry = {"seeds": [r["seed"] for r in mine]}
        cells = []
        for key in ("subset_test_acc", "mnist_10k_test_acc"):
            values = [100 * r[key] for r in mine if key in r]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                entry[key] = {"mean": round(statistics.mean(values), 3), "std": round(std, 3),
                              "values": [round(v, 2) for v in values]}
                cells.append(f"{statistics.mean(values):.2f}% ± {std:.2f}")
            else:
                cells.append("-")
        entry["seconds_mean"] = round(statistics.mean(r["seconds"] for r in mine), 1)
        result["summary"][loop] = entry
        name = "old loop (one-cycle, 181ed69)" if loop == "old" else "trainer (scratch, warm-up + cosine)"
        lines.append(f"| {name} | {', '.join(map(str, entry['seeds']))} | {cells[0]} | {cells[1]} | "
                     f"{entry['seconds_mean']} |")
    lines += ["", "Per seed (subset / MNIST 10k, %): " + "; ".join(
        f"{r['loop']} s{r['seed']}: {100 * r['subset_test_acc']:.2f} / "
        f"{100 * r.get('mnist_10k_test_acc', float('nan')):.2f}" for r in rows), ""]
    if {"old", "new"} <= set(result["summary"]):
        delta = {key: round(result["summary"]["new"][key]["mean"] - result["summary"]["old"][key]["mean"], 3)
                 for key in ("subset_test_acc", "mnist_10k_test_acc") if key in result["summary"]["old"]}
        result["summary"]["new_minus_old_points"] = delta
        lines += ["Not bit-identical (another learning-rate schedule and data order): the teacher "
                  "moved by " + ", ".join(f"{v:+.2f} points ({k})" for k, v in delta.items()) + ".", ""]
    lines += [NOTE, ""]
    atomic_write_json(RESULTS / "teacher_trainer_vs_loop.json", result)
    atomic_write_text(RESULTS / "teacher_trainer_vs_loop.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) == 4 and sys.argv[2] in ("old", "new"):
        run(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["summarize"]:
        summarize()
    else:
        sys.exit(__doc__)
