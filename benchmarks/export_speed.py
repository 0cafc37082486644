"""ONNX Runtime (CPU, through the deploy kit) vs PyTorch eager, batch 1 and 32.

For the built-in teacher architecture and a few thin, deep students from edgekd.search.space
(random initialisation: speed does not depend on the weights), each model is exported to
ONNX with a static batch (edgekd.ship.export.export_onnx, parity-checked on 256 real MNIST test
images), then timed in alternating rounds:

* PyTorch eager: ``model(x)`` under ``torch.inference_mode``, ``time.perf_counter_ns``
  around each call (this script is the only place outside deploy/ that times anything);
* ONNX Runtime: ``edgekd.ship.measure.measure_onnx`` -> ``python -m deploy bench`` in a
  subprocess (the project's one timing routine).

Both use the same warm-up, iteration count and intra-op thread count. Each round gives one
median per engine; the ratio torch/ORT is taken per round and the median over rounds is
reported, so both sides of a ratio were measured in the same minute of the same run.

Usage:
    python benchmarks/export_speed.py          # a few minutes on 2 shared CPU cores

Writes benchmarks/results/export_speed.json and .md.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.inputs.data import to_tensor
from edgekd.inputs.loaders import load_dataset
from edgekd.ship.export import export_onnx
from edgekd.core.fileio import atomic_write_json, atomic_write_text
from edgekd.ship.measure import measure_onnx
from edgekd.search.space import Stage, StudentSpec, build
from edgekd.inputs.teachers import BUILTIN_ARCH, build_arch

REPO = Path(__file__).resolve().parents[1]
MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist.npz"
RESULTS = REPO / "benchmarks/results"
BATCHES = (1, 32)
ROUNDS = 3
WARMUP = 20
ITERS = {1: 300, 32: 60}
THREADS = os.cpu_count() or 1

STUDENTS = {
    "plain-6 (thin)": StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                                  stages=(Stage(8, 2, 1), Stage(16, 2, 2), Stage(32, 2, 2))),
    "plain-9 (thin, deep)": StudentSpec(family="plain", input=(1, 28, 28), classes=10,
                                        stages=(Stage(8, 3, 1), Stage(16, 3, 2), Stage(24, 3, 2))),
    "residual-13": StudentSpec(family="residual", input=(1, 28, 28), classes=10,
                               stages=(Stage(8, 2, 1), Stage(16, 2, 2), Stage(32, 2, 2))),
}


def test_images(n: int) -> tuple[np.ndarray, object, str]:
    """Real MNIST test images (the full set when ../shared has it, else the subset)."""
    dataset = load_dataset(str(MNIST) if MNIST.is_file() else None)
    return dataset.x_test[:n], dataset.normalization, dataset.source


def torch_median_ms(model: torch.nn.Module, x: torch.Tensor, warmup: int, iters: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        samples = []
        for _ in range(iters):
            start = time.perf_counter_ns()
            model(x)
            samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def bench_model(name: str, model: torch.nn.Module, x_parity: np.ndarray, x_batch: np.ndarray,
                folder: Path) -> list[dict]:
    from edgekd.search.cost import macs_params

    model = model.eval()
    macs, params = macs_params(model, (1, 28, 28))
    rows = []
    for batch in BATCHES:
        path = export_onnx(model, (1, 28, 28), folder / f"{name.split()[0]}-b{batch}.onnx",
                           batch=batch, parity_x=x_parity)
        x = torch.from_numpy(x_batch[:batch].copy())
        torch_ms, ort_ms, ratios = [], [], []
        for _ in range(ROUNDS):
            t = torch_median_ms(model, x, WARMUP, ITERS[batch])
            m = measure_onnx(path, batch=batch, warmup=WARMUP, iters=ITERS[batch], threads=THREADS)
            o = m["latency_ms"]["median"]
            torch_ms.append(t)
            ort_ms.append(o)
            ratios.append(t / o)
        row = {"model": name, "macs": macs, "params": params, "batch": batch,
               "torch_eager_ms": statistics.median(torch_ms), "ort_ms": statistics.median(ort_ms),
               "speedup_ort_vs_torch": statistics.median(ratios),
               "rounds": {"torch_ms": torch_ms, "ort_ms": ort_ms, "ratio": ratios},
               "ort_device": m["device"], "onnx_bytes": path.stat().st_size}
        print(f"{name:22s} batch {batch:2d}: torch {row['torch_eager_ms']:.4f} ms, "
              f"ORT {row['ort_ms']:.4f} ms, ORT speed-up x{row['speedup_ort_vs_torch']:.2f}",
              flush=True)
        rows.append(row)
    return rows


def main() -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x_uint8, norm, source = test_images(256)
    x_parity = to_tensor(x_uint8, norm).numpy()
    load_start = os.getloadavg()[0]
    started = time.time()
    models = {"teacher (builtin-cnn)": build_arch(BUILTIN_ARCH, num_classes=10, input_shape=(1, 28, 28))}
    models.update({name: build(spec) for name, spec in STUDENTS.items()})
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        for name, model in models.items():
            rows += bench_model(name, model, x_parity, x_parity, Path(tmp))
    import onnxruntime

    result = {
        "benchmark": "export_speed",
        "machine": {"platform": platform.platform(), "cpu": rows[0]["ort_device"],
                    "cpus": os.cpu_count(), "threads": THREADS,
                    "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
                    "note": "shared machine, other jobs running: absolute times are noisy; "
                            "ratios are per round, both sides measured back to back"},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "settings": {"warmup": WARMUP, "iters": ITERS, "rounds": ROUNDS, "data": source,
                     "statistic": "median latency per round; ratio = median over rounds of "
                                  "torch_median / ort_median"},
        "seconds": round(time.time() - started, 1),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "export_speed.json", result)
    lines = ["# ONNX Runtime vs PyTorch eager (benchmarks/export_speed.py)", "",
             f"Machine: {result['machine']['cpu']}, {os.cpu_count()} CPUs, {THREADS} threads for "
             f"both engines; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}. "
             f"Shared and noisy (load average {load_start:.1f} at start, "
             f"{result['machine']['load_average_end']:.1f} at end). Random weights; ONNX static "
             f"batch, parity-checked on 256 real test images. Median of {ROUNDS} rounds "
             f"(warm-up {WARMUP}, {ITERS[1]} iterations at batch 1, {ITERS[32]} at batch 32).", "",
             "| model | MACs | params | batch | PyTorch eager ms | ORT ms | ORT speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['macs']:,} | {r['params']:,} | {r['batch']} | "
                     f"{r['torch_eager_ms']:.4f} | {r['ort_ms']:.4f} | x{r['speedup_ort_vs_torch']:.2f} |")
    atomic_write_text(RESULTS / "export_speed.md", "\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'export_speed.json'} and .md ({result['seconds']} s)")


if __name__ == "__main__":
    sys.exit(main())
