"""Shared parts of the distillation study (benchmarks/distill_cifar.py): students sized to a
MAC budget, the job a worker process runs, and the summary tables (mean +- std over seeds)."""

from __future__ import annotations

import statistics
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["student_spec", "fit_width", "run_job", "summarize", "markdown_tables"]


def _split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def student_spec(family: str, depth: int, width: int, input_shape: tuple[int, int, int]) -> Any:
    """A student of ``depth`` conv layers on the main path: up to 3 stages (strides 1, 2, 2)
    of widths ``w, 2w, 4w``; plain: ``depth`` conv-BN-ReLU blocks, residual: ``(depth-1)/2``
    basic blocks after the stem (``depth`` odd)."""
    from edgekd.search.space import Stage, StudentSpec

    units = depth if family == "plain" else (depth - 1) // 2
    k = min(3, units)
    parts = _split(units, k)
    strides = [1, 2, 2][:k]
    return StudentSpec(family, input_shape, 10,
                       tuple(Stage(width * 2 ** i, parts[i], strides[i]) for i in range(k)))


def fit_width(family: str, depth: int, budget: float, input_shape: tuple[int, int, int]) -> tuple[Any, int]:
    """The widest :func:`student_spec` within ``budget`` MACs and its MACs."""
    from edgekd.search.cost import spec_totals

    best = None
    for width in range(1, 256):
        spec = student_spec(family, depth, width, input_shape)
        macs = spec_totals(spec)[0]
        if macs > budget:
            break
        best = (spec, macs)
    if best is None:
        raise SystemExit(f"error: no {family} student of depth {depth} fits {budget:.0f} MACs")
    return best


@lru_cache(maxsize=4)
def _dataset(name: str, data_dir: str, quick: bool, train_size: int | None) -> Any:
    from cifar_teacher import load_data
    from edgekd.inputs.data import make_dataset

    ds = load_data(name, Path(data_dir), quick)
    if train_size is None or train_size >= len(ds.y_train):
        return ds
    import numpy as np

    idx = np.sort(np.random.default_rng(0).permutation(len(ds.y_train))[:train_size])
    return make_dataset(name=f"{ds.name}-{train_size}", source=ds.source, x_train=ds.x_train[idx],
                        y_train=ds.y_train[idx], x_test=ds.x_test, y_test=ds.y_test, classes=list(ds.classes))


@lru_cache(maxsize=4)
def _teacher(path: str) -> Any:
    from edgekd.core.checkpoint import load_student

    return load_student(path)[0].eval()


def init_worker(threads: int, repo: str) -> None:
    """Process initializer: one torch thread budget per worker; benchmarks/ importable."""
    import sys

    import torch

    torch.set_num_threads(max(1, threads))
    sys.path.insert(0, str(Path(repo) / "benchmarks"))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one student (in a worker process) and return what the tables need."""
    import time

    from edgekd.distill import TrainConfig, train_student
    from edgekd.search.space import StudentSpec

    started = time.monotonic()
    ds = _dataset(job["data"], job["data_dir"], job["quick"], job.get("train_size"))
    teachers = [] if job["config"]["method"] == "scratch" else [_teacher(job["teacher"])]
    config = TrainConfig(**job["config"])
    result = train_student(StudentSpec.from_dict(job["spec"]), teachers, ds, config, Path(job["folder"]),
                           progress=False)
    return {"key": job["key"], "test_acc": result.test_acc, "val_acc": result.val_acc,
            "seconds": result.seconds, "epochs_done": result.epochs_done,
            "hint_epochs_done": getattr(result, "hint_epochs_done", None),
            "hint_r2": getattr(result, "hint_r2", None),
            "hint": result.hint, "macs": job["macs"], "wall": round(time.monotonic() - started, 2)}


def prefetch_views(job: dict[str, Any]) -> None:
    """Compute the K cached teacher views of ``job``'s seed once, before the runs that share them
    (the trainer would compute them too, but two workers reaching the same seed together would
    each pay the K teacher passes). Same files as the trainer's: edgekd.distill.targets.teacher_views."""
    from edgekd.distill import TrainConfig, augment
    from edgekd.distill.evaluate import resolve_device
    from edgekd.distill.fast_infer import logit_teachers
    from edgekd.distill.targets import teacher_fingerprints, teacher_views
    from edgekd.distill.trainset import prepare_data

    config = TrainConfig(**job["config"])
    ds = _dataset(job["data"], job["data_dir"], job["quick"], job.get("train_size"))
    device = resolve_device(config.device)  # the trainer's rule, so the views land where it looks
    teacher = _teacher(job["teacher"]).to(device)
    data = prepare_data(ds, config)
    aug = augment.resolve(config.augment, tuple(ds.input_shape))
    fast = logit_teachers([teacher], device, data.x_train[:8], aug.active)
    teacher_views(fast, teacher_fingerprints([teacher], None), ds, data, aug, config, device, config.teacher_views)


# ------------------------------------------------------------------------------ tables
def _mean_std(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _fmt(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "-"
    return f"{cell['mean']:.2f} ± {cell['std']:.2f} (n={cell['n']})"


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Group ``runs`` by key without the seed: ``PART/.../SEED`` -> test accuracy % and seconds."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for key, run in runs.items():
        groups.setdefault(key.rsplit("/", 1)[0], []).append(run)
    return {group: {"acc": _mean_std([100 * r["test_acc"] for r in rs]),
                    "seconds": _mean_std([r["seconds"] for r in rs]),
                    "r2": _mean_std([r["hint_r2"][-1] for r in rs if r.get("hint_r2")]) if any(
                        r.get("hint_r2") for r in rs) else None,
                    "macs": rs[0]["macs"]} for group, rs in sorted(groups.items())}


def markdown_tables(summary: dict[str, Any], teachers: dict[str, Any]) -> list[str]:
    """The main tables (equal KD epochs / equal total epochs) and the depth tables."""
    lines: list[str] = []
    for data in ("cifar10", "mnist"):
        parts = sorted({k.split("/")[1] for k in summary if k.startswith(f"{data}/main")})
        teacher = teachers.get(data, {})
        for part in parts:
            main = {k: v for k, v in summary.items() if k.split("/")[:2] == [data, part]}
            where = f" at 1/{part.split('1of')[1]} of the teacher's MACs" if "1of" in part else ""
            lines += [f"## {data}: main table{where} (test accuracy %, mean ± std over seeds)", "",
                      f"Teacher: {teacher.get('describe', '?')}, {100 * teacher.get('test_acc', float('nan')):.2f}% "
                      f"({teacher.get('macs', 0) / 1e6:.1f}M MACs).", "",
                      "| method | budget | student MACs | test acc % | seconds | hint R² |", "|---|---|---|---|---|---|"]
            for key, cell in main.items():
                _, _, method, budget = key.split("/")
                lines.append(f"| {method} | {budget} | {cell['macs'] / 1e6:.2f}M | {_fmt(cell['acc'])} | "
                             f"{cell['seconds']['mean']:.0f} | {_fmt(cell['r2']) if cell['r2'] else '-'} |")
            lines.append("")
        depth = {k: v for k, v in summary.items() if k.startswith(f"{data}/depth/")}
        if depth:
            methods = sorted({k.split("/")[4] for k in depth})
            lines += [f"## {data}: depth study (test accuracy %, equal MACs)", "",
                      "| family | depth | MACs | " + " | ".join(methods) + " |",
                      "|---|---|---|" + "---|" * len(methods)]
            rows = sorted({(k.split("/")[2], int(k.split("/")[3])) for k in depth})
            for family, d in rows:
                cells = [depth.get(f"{data}/depth/{family}/{d}/{m}") for m in methods]
                macs = next(c["macs"] for c in cells if c)
                lines.append(f"| {family} | {d} | {macs / 1e6:.2f}M | " +
                             " | ".join(_fmt(c["acc"]) if c else "-" for c in cells) + " |")
            lines.append("")
    return lines
