"""Peak memory and time per epoch of edgekd's trainer on a 224-px set of 10,000 images, on CPU.

The pixels are synthetic (uniform noise, 10 classes): this measures memory and time, not accuracy.
One trial as compress runs it: method kd from a torchvision teacher (mobilenet_v3_small, random
weights: the cost of a teacher pass is what matters) with one cached augmented view per image
(crop + flip, computed in chunks), 10% held out for validation, one epoch, then the ONNX export
of the student with its parity check on 256 images. The student is a searched mbconv student
(stride-2 stem, 4 stages, 224 -> 14 px).

Reported: the peak resident memory of the process (``ru_maxrss``) after each phase, the seconds
of each phase, and what the train split would take as one float32 tensor (the layout before
splits were kept as uint8 and normalised per batch).

Usage:
    /work/bin/heavy python benchmarks/real_memory.py --tag cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """The resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def noise_images(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    """``n`` uint8 noise images, drawn 256 at a time (a draw of all at once makes an int64
    temporary of 8x the images' size, which would set the process's peak by itself)."""
    x = np.empty((n, 3, side, side), dtype=np.uint8)
    for i in range(0, n, 256):
        x[i:i + 256] = rng.integers(0, 256, size=(min(256, n - i), 3, side, side), dtype=np.uint8)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    import torch
    import torchvision

    from edgekd.distill.commands import run_train
    from edgekd.distill.config import TrainConfig
    from edgekd.inputs.data import make_dataset
    from edgekd.inputs.teachers import model_fingerprint
    from edgekd.search.cost import spec_totals
    from edgekd.search.space import Stage, StudentSpec
    from edgekd.ship.export import export_onnx, parity_inputs

    torch.set_num_threads(1)
    phases: dict[str, dict[str, float]] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = {"seconds": round(time.monotonic() - mark, 1), "peak_rss_mb": round(peak_mb()),
                        "rss_mb": round(rss_mb())}
        print(f"[real_memory] {name}: {phases[name]}", flush=True)
        mark = time.monotonic()

    phase("start")
    rng = np.random.default_rng(0)
    n, side = args.images, args.side
    x = noise_images(rng, n, side)
    y = rng.integers(0, 10, n)
    xt = noise_images(rng, n // 10, side)
    dataset = make_dataset(name="synthetic224", source="synthetic", x_train=x, y_train=y, x_test=xt,
                           y_test=rng.integers(0, 10, n // 10))
    del x, xt
    phase("data")
    teacher = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()
    spec = StudentSpec("mbconv", (3, side, side), 10, (Stage(16, 1, 1), Stage(24, 2, 2), Stage(40, 2, 2),
                                                       Stage(80, 2, 2)), stem_stride=2, expansion=2, act="relu6")
    config = TrainConfig(method="kd", epochs=1, teacher_views=1, augment="crop-flip", batch_size=64,
                         device="cpu", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGEKD_CACHE_DIR"] = tmp  # no teacher-view file left behind
        result = run_train(spec=spec, teachers=[(teacher, model_fingerprint(teacher))], dataset=dataset,
                           config=config, out_dir=Path(tmp) / "trial", progress=False)
        phase("train (teacher views + 1 epoch + validation + test)")
        metrics = [json.loads(line) for line in (Path(tmp) / "trial" / "metrics.jsonl").read_text().splitlines()]
        export_onnx(result.model.eval(), (3, side, side), Path(tmp) / "student.onnx",
                    parity_x=parity_inputs(dataset))
        phase("export (ONNX + parity on 256 images)")
    macs, params = spec_totals(spec)
    n_train = int(round(n * 0.9))
    record = {
        "tag": args.tag, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
        "load": [round(v, 2) for v in os.getloadavg()],
        "command": "python benchmarks/real_memory.py" + (f" --images {n}" if n != 10_000 else ""),
        "images": n, "side": side, "student": spec.describe(), "student_macs": macs, "student_params": params,
        "teacher": "torchvision mobilenet_v3_small (random weights)", "config": config.to_dict(),
        "phases": phases, "epoch_metrics": metrics,
        "dataset_uint8_mb": round(dataset.x_train.nbytes / 2**20), "train_split_uint8_mb": round(n_train * 3 * side * side / 2**20),
        "train_split_float32_mb": round(n_train * 3 * side * side * 4 / 2**20),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"real_memory-{args.tag}.json").write_text(json.dumps(record, indent=2))
    lines = [f"# Memory and time at 224 px on CPU ({args.tag})", "",
             f"Date {record['date']}; {record['machine']}; load average {record['load']}.", "",
             f"Command: `{record['command']}` (through /work/bin/heavy: one core).", "",
             f"{n:,} synthetic RGB images at {side}x{side} (uint8 {record['dataset_uint8_mb']:,} MB), 10% held out; "
             f"student {spec.describe()} ({macs / 1e6:.1f}M MACs, {params / 1e6:.2f}M params); teacher "
             f"{record['teacher']}; kd, one cached crop-flip teacher view per image, batch 64, one epoch.", "",
             "| phase | seconds | peak RSS so far (MB) | RSS at its end (MB) |", "|---|---|---|---|"]
    lines += [f"| {name} | {p['seconds']} | {p['peak_rss_mb']:,} | {p['rss_mb']:,} |" for name, p in phases.items()]
    lines += ["", f"The train split is kept as uint8 ({record['train_split_uint8_mb']:,} MB) and normalised per "
              f"batch; as one float32 tensor it would take {record['train_split_float32_mb']:,} MB on its own.",
              f"Epoch time from the trainer's metrics: {[m.get('seconds') for m in metrics]} s."]
    (RESULTS / f"real_memory-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
