"""Training throughput: ``edgekd train --method kd`` against a minimal hand-written PyTorch loop.

Same student, data, batch size, optimiser and torch threads; the trainer is called through
``edgekd.distill.train_student`` (what ``edgekd train`` runs), its epoch time read from its
metrics.jsonl (training + validation + checkpoint, i.e. everything an epoch costs). The minimal
loop is: shuffle, slice, forward, KD loss, backward, SGD step; nothing else. Three cases:

1. ``cached``: no augmentation, teacher logits computed once (edgekd: its on-disk cache;
   minimal: one pass before the loop). Aim: trainer epoch <= 1.05x minimal.
2. ``aug-per-batch``: augmentation (``--augment auto``), teacher on every batch in both.
   Aim: <= 1.1x.
3. ``aug-views``: the trainer with ``--teacher-views K`` (teacher outputs cached on K augmented
   views per image, drawn once) against case 2's trainer: which is faster over a whole run.

Rounds alternate the order (edgekd first, then minimal first, ...), and the ratio is the
median trainer epoch over the median minimal epoch of the same run, in wall-clock and in CPU
time of the process (``time.process_time``; the trainer logs it per epoch as ``cpu_seconds``).
On a shared machine the CPU-time ratio is the steadier one: wall-clock also counts the time
the process waited for a core. The load average is recorded before and after.

Usage:
    nice -n 10 python benchmarks/train_throughput.py                # MNIST subset, ~10 min, 1 thread
    python benchmarks/train_throughput.py --data ../shared/data/cifar10.npz --device cuda

Writes benchmarks/results/train_throughput[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgekd.core.fileio import atomic_write_json, atomic_write_text, read_jsonl
from edgekd.distill import TrainConfig, train_student
from edgekd.distill import augment as aug_module
from edgekd.inputs.data import split_train_val, to_tensor
from edgekd.inputs.loaders import load_dataset
from edgekd.distill.builtin_teacher import builtin_teacher
from edgekd.search.space import Stage, StudentSpec, build

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks/results"


def student_spec(shape: tuple[int, ...], classes: int) -> StudentSpec:
    """A thin plain student of 6 convs (about 1/10 of the built-in teacher's MACs on MNIST)."""
    return StudentSpec("plain", tuple(shape), classes, (Stage(8, 2, 1), Stage(16, 2, 2), Stage(32, 2, 2)))


def kd_loss(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor, T: float, alpha: float) -> torch.Tensor:
    soft = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(t / T, 1), reduction="batchmean",
                    log_target=True) * T * T
    return alpha * F.cross_entropy(logits, y) + (1 - alpha) * soft


def minimal_epochs(spec: StudentSpec, teacher: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   cfg: TrainConfig, epochs: int, device: torch.device, augment: str,
                   pad: torch.Tensor) -> tuple[list[float], list[float]]:
    """The hand-written loop; returns (wall seconds, CPU seconds) per epoch."""
    torch.manual_seed(cfg.seed)
    model = build(spec).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    aug = aug_module.resolve(augment, tuple(x.shape[1:]))
    pad_value = pad
    targets = None
    if not aug.active:
        with torch.no_grad():
            targets = torch.cat([teacher(x[i:i + 1024].to(device)).float().cpu() for i in range(0, len(x), 1024)])
    times, cpu = [], []
    gen = torch.Generator().manual_seed(0)
    steps = len(y) // cfg.batch_size
    for _ in range(epochs):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for b in range(steps):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if aug.active:
                xb = aug_module.apply(xb, aug, aug_module.sample(aug, len(idx), gen), pad_value)
            xb, yb = xb.to(device), yb.to(device)
            if targets is None:
                with torch.no_grad():
                    tb = teacher(xb)
            else:
                tb = targets[idx].to(device)
            loss = kd_loss(model(xb), yb, tb, cfg.temperature, cfg.alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return times, cpu


def edgekd_run(spec: StudentSpec, teacher: torch.nn.Module, data: Any, cfg: TrainConfig,
               folder: Path) -> tuple[list[float], list[float], float]:
    """(wall and CPU seconds per epoch from metrics.jsonl, whole run incl. setup) of the real
    trainer."""
    start = time.perf_counter()
    train_student(spec, [teacher], data, cfg, folder, progress=False)
    total = time.perf_counter() - start
    records = read_jsonl(folder / "metrics.jsonl")
    return [float(r["seconds"]) for r in records], [float(r["cpu_seconds"]) for r in records], total


def run_case(name: str, args: argparse.Namespace, spec: StudentSpec, teacher: torch.nn.Module,
             data: Any, x: torch.Tensor, y: torch.Tensor, device: torch.device, tmp: Path) -> dict:
    norm = data.normalization
    pad = -torch.tensor(norm.mean, dtype=torch.float32) / torch.tensor(norm.std, dtype=torch.float32)
    augment = "none" if name == "cached" else "auto"
    views = args.views if name == "aug-views" else 0
    cfg = TrainConfig(method="kd", epochs=args.epochs, augment=augment, teacher_views=views,
                      batch_size=args.batch_size, device=str(device), cache_dir=str(tmp / "cache"))
    ours: list[float] = []
    mine: list[float] = []
    ours_cpu: list[float] = []
    mine_cpu: list[float] = []
    totals: list[float] = []
    for r in range(args.rounds):
        order = ("edgekd", "minimal") if r % 2 == 0 else ("minimal", "edgekd")
        for who in order:
            if who == "edgekd":
                epochs, cpu, total = edgekd_run(spec, teacher, data, cfg, tmp / f"{name}-{r}")
                ours += epochs[1:] if len(epochs) > 1 else epochs  # epoch 1 warms the allocator up
                ours_cpu += cpu[1:] if len(cpu) > 1 else cpu
                totals.append(total)
            elif name != "aug-views":  # the views case compares trainer against trainer
                times, cpu = minimal_epochs(spec, teacher, x, y, cfg, args.epochs, device, augment, pad)
                mine += times[1:] if len(times) > 1 else times
                mine_cpu += cpu[1:] if len(cpu) > 1 else cpu
    row = {"case": name, "edgekd_epoch_s": statistics.median(ours), "edgekd_run_s": statistics.median(totals),
           "edgekd_epochs": ours, "edgekd_epoch_cpu_s": statistics.median(ours_cpu), "edgekd_epochs_cpu": ours_cpu}
    if mine:
        row.update(minimal_epoch_s=statistics.median(mine), minimal_epochs=mine,
                   ratio=statistics.median(ours) / statistics.median(mine),
                   minimal_epoch_cpu_s=statistics.median(mine_cpu), minimal_epochs_cpu=mine_cpu,
                   ratio_cpu=statistics.median(ours_cpu) / statistics.median(mine_cpu))
    print(json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data spec (default: the shipped MNIST subset)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--views", type=int, default=4, help="K of the aug-views case")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="cached,aug-per-batch,aug-views")
    parser.add_argument("--tag", default="")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset(args.data)
    teacher = builtin_teacher(data, progress=False).eval().to(device)
    spec = student_spec(tuple(data.input_shape), data.num_classes)
    train_idx, _ = split_train_val(len(data.y_train), 0.1, seed=0)
    x = to_tensor(data.x_train[train_idx], data.normalization)
    y = torch.as_tensor(data.y_train[train_idx], dtype=torch.long)
    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(c, args, spec, teacher, data, x, y, device, Path(tmp)) for c in args.cases.split(",")]
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "threads": args.threads, "device": str(device), "load_average_before": load_before,
                          "load_average": os.getloadavg(),
                          "note": (args.note + "; " if args.note else "") + f"process niceness {os.nice(0)}"},
              "command": " ".join(["python", *sys.argv]), "data": data.name, "student": spec.describe(),
              "train_images": int(len(y)), "epochs": args.epochs, "rounds": args.rounds,
              "wall_clock_s": round(time.perf_counter() - started, 1), "cases": rows}
    suffix = f"-{args.tag}" if args.tag else ""
    atomic_write_json(RESULTS / f"train_throughput{suffix}.json", result)
    atomic_write_text(RESULTS / f"train_throughput{suffix}.md", markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Training throughput: edgekd train --method kd vs a minimal PyTorch loop", "",
             f"Command: `{result['command']}`; {result['data']}, {result['train_images']} training images, "
             f"student {result['student']}, {result['epochs']} epochs x {result['rounds']} rounds (order "
             f"alternating; the first epoch of each run is left out), {m['threads']} torch thread(s) on "
             f"{m['device']}. Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}; "
             f"{m['note']}; load average (1/5/15 min) {_load(m.get('load_average_before'))} before, "
             f"{_load(m['load_average'])} after. Wall-clock: {result['wall_clock_s']} s.", "",
             "| case | edgekd epoch (s, median) | minimal epoch (s, median) | ratio | edgekd epoch CPU (s) "
             "| minimal epoch CPU (s) | ratio (CPU time) | edgekd whole run (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["cases"]:
        mine = row.get("minimal_epoch_s")
        minimal = "-" if mine is None else f"{mine:.2f}"
        ratio = "-" if mine is None else f"{row['ratio']:.3f}x"
        mine_cpu = row.get("minimal_epoch_cpu_s")
        ours_cpu = row.get("edgekd_epoch_cpu_s")
        cpu = "-" if mine_cpu is None else f"{mine_cpu:.2f}"
        ratio_cpu = "-" if mine_cpu is None else f"{row['ratio_cpu']:.3f}x"
        lines.append(f"| {row['case']} | {row['edgekd_epoch_s']:.2f} | {minimal} | {ratio} | "
                     f"{'-' if ours_cpu is None else f'{ours_cpu:.2f}'} | {cpu} | {ratio_cpu} | "
                     f"{row['edgekd_run_s']:.1f} |")
    lines += ["", "Aims: cached <= 1.05x, aug-per-batch <= 1.1x. The edgekd epoch includes its "
              "validation pass and checkpoint; the minimal loop has neither. aug-views vs "
              "aug-per-batch (whole run, setup included) says whether caching the teacher on K "
              "augmented views beats running it on every batch. On CPU the trainer computes the "
              "teacher's logits of augmented batches with a fused (BatchNorm folded), channels_last "
              "copy of the teacher (edgekd.distill.fast_infer); the minimal loop runs the teacher "
              "as it is.", ""]
    return "\n".join(lines)


def _load(values: Any) -> str:
    return "?" if not values else "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
