"""The benchmark teachers: a wide residual network on CIFAR-10 and a CNN on MNIST, trained
by edgekd itself and cached, so every study (distill_cifar.py, E's cifar_compress) uses the
same teacher and any edgekd command can load it: ``--teacher WORK/teacher-cifar10/checkpoint.pt``
(an edgekd checkpoint describes its own architecture; no ``--arch`` needed).

Recipe (recorded in the result files with the accuracy, MACs and wall-clock):

- CIFAR-10 (``../shared/data/cifar10.npz``: 10,000 training / 2,000 test images): residual
  spec, stem + 3 stages of 3 basic blocks, widths 32/64/128 (19 conv layers, about 4x the
  MACs of ResNet-20); random crop (4 px padding) + horizontal flip; SGD momentum 0.9,
  Nesterov, lr 0.1, weight decay 5e-4, batch 128, warm-up + cosine (the trainer's schedule);
  10% of the training images held out to select the best epoch.
- MNIST (``../shared/data/mnist.npz``, all 60,000 training images): residual spec, widths
  32/64/128 with 2 blocks per stage; random shifts of up to 2 px; same optimiser.

Usage:
    python benchmarks/cifar_teacher.py --data cifar10 --device cuda --epochs 60
    python benchmarks/cifar_teacher.py --data cifar10 --quick        # CPU smoke (~2 min)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

#: (input, stages as (width, blocks, stride)) of each data set's teacher
TEACHERS: dict[str, dict[str, Any]] = {
    "cifar10": {"input": (3, 32, 32), "stages": ((32, 3, 1), (64, 3, 2), (128, 3, 2)), "augment": "crop-flip"},
    "mnist": {"input": (1, 28, 28), "stages": ((32, 2, 1), (64, 2, 2), (128, 2, 2)), "augment": "shift"},
}
QUICK_STAGES = ((16, 1, 1), (32, 1, 2), (64, 1, 2))
#: ``--cpu``: a teacher sized for the 2-core machine (one torch thread each): residual d7
#: 16/32/64 x1 on MNIST, 9.4M MACs, about 3 core-minutes per epoch on all 54,000 training
#: images (measured 0.41 s per step of 128), so a few augmented epochs fit the study's budget;
#: the same shape on CIFAR-10 (12.5M MACs, a few core-minutes for 15 epochs of its 9,000
#: training images) when the GPU-trained teacher is not at hand.
CPU_STAGES: dict[str, tuple[tuple[int, int, int], ...]] = {"mnist": ((16, 1, 1), (32, 1, 2), (64, 1, 2)),
                                                           "cifar10": ((16, 1, 1), (32, 1, 2), (64, 1, 2))}


def load_data(name: str, data_dir: Path, quick: bool = False) -> Any:
    """The data set ``name`` (cifar10 | mnist) from ``data_dir``; ``quick`` cuts it to 3,000
    training and 1,000 test images (a smoke test, not a result)."""
    from edgekd.inputs.data import make_dataset
    from edgekd.inputs.loaders import load_dataset

    path = Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: pass --data-dir (default ../shared/data)")
    ds = load_dataset(str(path))
    if not quick:
        return ds
    import numpy as np

    test = np.sort(np.random.default_rng(0).permutation(len(ds.y_test))[:1000])  # MNIST's test set is sorted by class
    return make_dataset(name=f"{name}-quick", source=str(path), x_train=ds.x_train[:3000],
                        y_train=ds.y_train[:3000], x_test=ds.x_test[test], y_test=ds.y_test[test],
                        classes=list(ds.classes))


def teacher_spec(name: str, quick: bool = False, cpu: bool = False) -> Any:
    from edgekd.search.space import Stage, StudentSpec

    recipe = TEACHERS[name]
    if cpu and name not in CPU_STAGES:
        raise SystemExit(f"error: no CPU-sized teacher for {name}: use one of {', '.join(CPU_STAGES)}")
    stages = QUICK_STAGES if quick else CPU_STAGES[name] if cpu else recipe["stages"]
    return StudentSpec("residual", recipe["input"], 10, tuple(Stage(*s) for s in stages))


def teacher_config(name: str, epochs: int, device: str) -> Any:
    from edgekd.distill import TrainConfig

    return TrainConfig(method="scratch", epochs=epochs, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                       batch_size=128, seed=0, augment=TEACHERS[name]["augment"], device=device)


def ensure_teacher(name: str, work: Path, *, data_dir: Path, device: str, epochs: int,
                   quick: bool = False, cpu: bool = False) -> dict[str, Any]:
    """Train (or reuse the cached) teacher of ``name`` into ``work/teacher-NAME``; returns
    its record: checkpoint, recipe, test accuracy/error, MACs, params, seconds."""
    from edgekd.search.cost import spec_totals
    from edgekd.distill import train_student

    spec = teacher_spec(name, quick, cpu)
    ds = load_data(name, data_dir, quick)
    config = teacher_config(name, epochs, device)
    folder = Path(work) / f"teacher-{name}{'-quick' if quick else '-cpu' if cpu else ''}"
    started = time.monotonic()
    result = train_student(spec, [], ds, config, folder, progress=False)
    macs, params = spec_totals(spec)
    return {"data": name, "checkpoint": str(result.checkpoint), "spec": spec.to_dict(),
            "describe": spec.describe(), "recipe": {**config.to_dict(), "device": device},
            "test_acc": result.test_acc, "test_error_pct": 100 * (1 - result.test_acc),
            "val_acc": result.val_acc, "best_epoch": result.best_epoch, "macs": macs, "params": params,
            "train_seconds": result.seconds, "seconds_this_call": round(time.monotonic() - started, 1),
            "train_images": result.train_samples, "quick": quick, "cpu": cpu}


def record_from_checkpoint(name: str, path: Path) -> dict[str, Any]:
    """The record of a teacher trained earlier (e.g. on a GPU) from its edgekd checkpoint."""
    from edgekd.core.checkpoint import read_checkpoint
    from edgekd.search.cost import spec_totals
    from edgekd.search.space import StudentSpec

    data = read_checkpoint(Path(path))
    spec = StudentSpec.from_dict(data["spec"])
    metrics = data.get("metrics") or {}
    macs, params = spec_totals(spec)
    test_acc = float(metrics.get("test_acc", float("nan")))
    return {"data": name, "checkpoint": str(path), "spec": spec.to_dict(), "describe": spec.describe(),
            "recipe": {"epochs": metrics.get("epochs_done"), "device": "given checkpoint"},
            "test_acc": test_acc, "test_error_pct": 100 * (1 - test_acc), "val_acc": metrics.get("val_acc"),
            "best_epoch": metrics.get("best_epoch"), "macs": macs, "params": params,
            "train_seconds": float("nan"), "train_images": None, "quick": False, "given": True}


def write_record(record: dict[str, Any], out_dir: Path) -> Path:
    """benchmarks/results/teacher-NAME.json + .md (or under ``out_dir``)."""
    from edgekd.core.fileio import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if record["quick"] else "-cpu" if record.get("cpu") else ""
    stem = out_dir / f"teacher-{record['data']}{suffix}"
    import os

    import torch

    record = {**record, "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                    "loadavg_at_end": os.getloadavg()}}
    atomic_write_json(stem.with_suffix(".json"), record)
    lines = [f"# Benchmark teacher: {record['data']}", "",
             f"- architecture: {record['describe']} ({record['macs'] / 1e6:.1f}M MACs, "
             f"{record['params'] / 1e6:.2f}M parameters)",
             f"- test accuracy {100 * record['test_acc']:.2f}% (error {record['test_error_pct']:.2f}%), "
             f"best epoch {record['best_epoch']} of {record['recipe']['epochs']}",
             f"- wall-clock {record['train_seconds']:.0f} s on {record['recipe']['device']}",
             f"- recipe: `{json.dumps(record['recipe'])}`",
             f"- load it with `--teacher {record['checkpoint']}`", ""]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))
    return stem.with_suffix(".json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(TEACHERS), default="cifar10")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=60, help="(mnist: 10 is enough for <= 0.6%% error)")
    parser.add_argument("--quick", action="store_true", help="tiny teacher and data (smoke test)")
    parser.add_argument("--cpu", action="store_true", help="the CPU-sized teacher (CPU_STAGES)")
    args = parser.parse_args()
    epochs = 3 if args.quick else args.epochs
    record = ensure_teacher(args.data, args.work, data_dir=args.data_dir, device=args.device,
                            epochs=epochs, quick=args.quick, cpu=args.cpu)
    print(json.dumps({k: record[k] for k in ("checkpoint", "test_acc", "macs", "train_seconds")}))
    print(f"wrote {write_record(record, args.out)}")


if __name__ == "__main__":
    main()
