"""The built-in teacher and the teacher-logit cache, measured.

1. Train the built-in teacher (edgekd.inputs.builtin_teacher.BuiltinCNN, default recipe, through
   the trainer: edgekd.distill.builtin_teacher) on the shipped
   MNIST subset's 10,000 training images, from an empty cache: wall time, test accuracy on
   the subset's 2,000 test images and on the full 10,000-image MNIST test set (when
   ``../shared/data/mnist.npz`` exists), parameters and MACs.
2. Load it again from the cache: wall time.
3. Teacher logits on the 10,000 training images: computed vs read from the on-disk cache
   (``edgekd.inputs.logits.teacher_logits``), median of repeats, ratio measured in the same run.

Usage:
    python benchmarks/builtin_teacher.py        # about 2 minutes on 2 CPU cores

Writes benchmarks/results/builtin_teacher.json and .md.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from edgekd.inputs.data import make_dataset
from edgekd.inputs.loaders import load_dataset
from edgekd.inputs.logits import teacher_logits
from edgekd.core.fileio import atomic_write_json, atomic_write_text
from edgekd.distill.builtin_teacher import (TeacherRecipe, builtin_teacher, builtin_teacher_path,
                                            model_accuracy as accuracy)

REPO = Path(__file__).resolve().parents[1]
MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist.npz"
RESULTS = REPO / "benchmarks/results"
REPEATS = 5


def machine() -> dict:
    return {"platform": platform.platform(), "python": sys.version.split()[0],
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "processor": platform.processor(),
            "load_average_at_start": os.getloadavg(),
            "note": "shared 2-core machine, other engineers' jobs running: timings are noisy"}


def timed(func) -> tuple[float, object]:
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def main() -> None:
    result: dict = {"machine": machine()}
    data = load_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        train_s, model = timed(lambda: builtin_teacher(data, cache_dir=cache, progress=True))
        path = builtin_teacher_path(data, TeacherRecipe(), cache_dir=cache)
        load_s, again = timed(lambda: builtin_teacher(data, cache_dir=cache, progress=False))
        recorded = torch.load(path, weights_only=True)["metrics"]
        params = sum(p.numel() for p in model.parameters())
        from edgekd.search.cost import macs_params

        macs, _ = macs_params(model, data.input_shape)
        teacher = {"train_seconds": round(train_s, 1), "cache_load_seconds": round(load_s, 3),
                   "params": params, "macs": macs, "recipe": asdict(TeacherRecipe()),
                   "subset_test_acc": accuracy(model, data.x_test, data.y_test, data.normalization),
                   "recorded_test_acc": recorded["test_acc"]}
        if MNIST.exists():
            with np.load(MNIST) as full:
                mnist = make_dataset(name="mnist", source=str(MNIST), x_train=full["x_train"][:1],
                                     y_train=full["y_train"][:1], x_test=full["x_test"],
                                     y_test=full["y_test"])
            teacher["mnist_10k_test_acc"] = accuracy(model, mnist.x_test, mnist.y_test,
                                                     data.normalization)
        result["teacher"] = teacher

        fp = "0" * 64
        compute, cached = [], []
        for repeat in range(REPEATS):
            logit_dir = cache / f"logits{repeat}"
            compute.append(timed(lambda: teacher_logits(again, data.x_train, data.normalization,
                                                        cache_dir=logit_dir, teacher_fp=fp))[0])
            cached.append(timed(lambda: teacher_logits(again, data.x_train, data.normalization,
                                                       cache_dir=logit_dir, teacher_fp=fp))[0])
        result["teacher_logits_10k"] = {
            "compute_median_s": round(statistics.median(compute), 4),
            "cached_median_s": round(statistics.median(cached), 4),
            "speedup": round(statistics.median(compute) / statistics.median(cached), 1),
            "repeats": REPEATS}
    result["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "builtin_teacher.json", result)
    t, lg = result["teacher"], result["teacher_logits_10k"]
    lines = [
        "# Built-in teacher (benchmarks/builtin_teacher.py)", "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs, torch "
        f"{result['machine']['torch']}; shared and noisy (load average "
        f"{result['machine']['load_average_at_start'][0]:.1f} at start).", "",
        "| quantity | value |", "|---|---|",
        f"| parameters | {t['params']:,} |", f"| MACs at 1x28x28 | {t['macs']:,} |",
        f"| training time (10k images, {TeacherRecipe().epochs} epochs) | {t['train_seconds']} s |",
        f"| test accuracy, subset (2,000) | {t['subset_test_acc']:.4f} |",
    ]
    if "mnist_10k_test_acc" in t:
        lines.append(f"| test accuracy, full MNIST test (10,000) | {t['mnist_10k_test_acc']:.4f} |")
    lines += [f"| load from cache | {t['cache_load_seconds']} s |",
              f"| teacher logits on 10k images: computed / cached (median of {REPEATS}) | "
              f"{lg['compute_median_s']} s / {lg['cached_median_s']} s ({lg['speedup']}x) |", ""]
    atomic_write_text(RESULTS / "builtin_teacher.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
