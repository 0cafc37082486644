"""How much top-1 accuracy does INT8 cost each student family? The INT8-vs-FP32 delta, measured.

One student per family (plain, residual, dwsep, mbconv; 7-12M MACs on CIFAR-10's 32x32 input),
trained from scratch for ``--epochs`` (crop + flip, SGD + cosine, one torch thread) per seed on
../shared/data/cifar10.npz, exported to ONNX, then quantized by the product's own route:
``edgekd.ship.int8.export_int8`` (the deploy kit's explicit Q/DQ quantizer, symmetric int8,
per-channel weights, MinMax on 512 training images) and both models run by ONNX Runtime (CPU) on
the same test images. Writes benchmarks/results/int8_delta[-TAG].json and .md: per run and per
family (mean +- std over seeds) the FP32 and INT8 accuracy, their delta in points and the top-1
agreement, against the bundle's default ``--int8-tolerance`` of 1 point.

    /work/bin/heavy python benchmarks/int8_delta.py --epochs 3 --tag cpu
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
TOLERANCE_POINTS = 1.0


def students(shape: tuple[int, int, int], classes: int) -> dict:
    from edgekd.search.space import Stage, StudentSpec

    three = (Stage(16, 2, 1), Stage(32, 2, 2), Stage(64, 2, 2))
    one = (Stage(16, 1, 1), Stage(32, 1, 2), Stage(64, 1, 2))
    return {
        "plain": StudentSpec("plain", shape, classes, three),
        "residual": StudentSpec("residual", shape, classes, one),
        "dwsep": StudentSpec("dwsep", shape, classes, (Stage(32, 2, 1), Stage(64, 2, 2), Stage(128, 2, 2))),
        "mbconv": StudentSpec("mbconv", shape, classes, (Stage(16, 1, 1), Stage(32, 2, 2), Stage(64, 2, 2)),
                              expansion=4),
    }


def one_run(spec, data, epochs: int, seed: int, folder: Path) -> dict:
    from edgekd.core.checkpoint import load_student
    from edgekd.distill import TrainConfig, train_student
    from edgekd.search.cost import spec_totals
    from edgekd.ship.export import export_onnx, parity_inputs, student_metadata
    from edgekd.ship.int8 import export_int8

    config = TrainConfig(method="scratch", epochs=epochs, seed=seed, augment="crop-flip", device="cpu")
    started = time.monotonic()
    train_student(spec, [], data, config, folder, progress=False)
    trained = time.monotonic() - started
    model, _info = load_student(folder / "checkpoint.pt")
    onnx_path = folder / f"{spec.family}.onnx"
    export_onnx(model, data.input_shape, onnx_path, parity_x=parity_inputs(data),
                metadata=student_metadata(spec=spec, normalization=data.normalization, model_id=spec.family))
    record = export_int8(onnx_path, data, data.normalization, val_samples=len(data.y_test))
    check = record["check"]
    return {"family": spec.family, "seed": seed, "macs": int(spec_totals(spec)[0]),
            "fp32_acc": check["fp32_accuracy"], "int8_acc": check["accuracy"],
            "delta_points": round(100 * (check["accuracy"] - check["fp32_accuracy"]), 2),
            "top1_agreement": check["top1_agreement"], "samples": check["samples"],
            "train_s": round(trained, 1), "total_s": round(time.monotonic() - started, 1)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]

        def stats(key: str, scale: float = 1.0) -> tuple[float, float]:
            values = [scale * r[key] for r in mine]
            return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

        out.append({"family": family, "n": len(mine), "macs": mine[0]["macs"],
                    "fp32": stats("fp32_acc", 100), "int8": stats("int8_acc", 100),
                    "delta": stats("delta_points"), "agreement": stats("top1_agreement", 100),
                    "worst_delta": min(r["delta_points"] for r in mine)})
    return out


def markdown(result: dict, summary: list[dict]) -> str:
    m = result["machine"]
    lines = ["# INT8 (explicit Q/DQ) vs FP32: top-1 delta per student family", "",
             f"Command: `{result['command']}`, {result['date']}. Data: {result['data']} "
             f"({result['train_images']} training images, {result['test_images']} test images, all used "
             f"for both models). Training: scratch, {result['epochs']} epochs, crop + flip, seeds "
             f"{result['seeds']}. INT8: `edgekd.ship.int8.export_int8` (Q/DQ on the inputs of Conv/Gemm/"
             "MatMul/Add, symmetric int8, per-channel weights, MinMax on 512 training images); both models "
             "run by ONNX Runtime (CPU), the Q/DQ arithmetic as written.", "",
             f"Machine: {m['platform']}, {m['cpu_count']} CPUs shared with other jobs, 1 torch thread, load "
             f"average {m['load_average_start']} -> {m['load_average_end']}; wall-clock {result['wall_clock_s']} s.",
             "", "| family | MACs | FP32 top-1 | INT8 top-1 | delta (points) | worst seed | top-1 agreement | "
             f"within {TOLERANCE_POINTS:g} point |", "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        ok = "yes" if s["worst_delta"] >= -TOLERANCE_POINTS else "no (bundle falls back to FP16)"
        lines.append(f"| {s['family']} | {s['macs'] / 1e6:.1f}M | {s['fp32'][0]:.2f}% ± {s['fp32'][1]:.2f} | "
                     f"{s['int8'][0]:.2f}% ± {s['int8'][1]:.2f} | {s['delta'][0]:+.2f} ± {s['delta'][1]:.2f} | "
                     f"{s['worst_delta']:+.2f} | {s['agreement'][0]:.2f}% ± {s['agreement'][1]:.2f} | {ok} |")
    lines += ["", "Per run:", "", "| family | seed | FP32 | INT8 | delta | agreement | train s |",
              "|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['family']} | {r['seed']} | {100 * r['fp32_acc']:.2f}% | {100 * r['int8_acc']:.2f}% | "
                     f"{r['delta_points']:+.2f} | {100 * r['top1_agreement']:.2f}% | {r['train_s']} |")
    lines += ["", "Host figures only: ONNX Runtime computes the same Q/DQ graph TensorRT builds, but no "
              "TensorRT engine was built or run for this table (TensorRT's INT8 kernels may round "
              "differently; `python3 -m deploy check model.engine --data val.npz` on the device measures it)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10.npz"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--families", default="plain,residual,dwsep,mbconv")
    parser.add_argument("--tag", default="")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in the results .json and train only the missing ones")
    args = parser.parse_args()
    import torch

    from edgekd.core.fileio import atomic_write_json, atomic_write_text
    from edgekd.inputs.loaders import load_dataset

    torch.set_num_threads(1)
    data = load_dataset(args.data)
    specs = students(tuple(data.input_shape), data.num_classes)
    started, load_start = time.monotonic(), os.getloadavg()
    rows: list[dict] = []
    tag = f"-{args.tag}" if args.tag else ""
    earlier_s, command = 0.0, " ".join(["python", "benchmarks/int8_delta.py", *sys.argv[1:]])
    previous = RESULTS / f"int8_delta{tag}.json"
    if args.resume and previous.is_file():
        import json
        before = json.loads(previous.read_text())
        rows, earlier_s = before["runs"], before["wall_clock_s"]
        command = before["command"].split("`")[0]
        command = f"{command}`, then `{command} --resume"  # markdown() wraps it in backticks
        load_start = tuple(before["machine"]["load_average_start"])
    done = {(r["family"], r["seed"]) for r in rows}
    result: dict | None = None
    data_name = ("../shared/data/" + Path(args.data).name) if "shared/data" in args.data else args.data
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for family in args.families.split(","):
                if (family, seed) in done:
                    continue
                rows.append(one_run(specs[family], data, args.epochs, seed, Path(tmp) / f"{family}-{seed}"))
                print(rows[-1], flush=True)
                # written after every run: a run cut short by its time budget keeps what it measured
                result = {"command": command,
                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "data": data_name,
                          "train_images": len(data.y_train), "test_images": len(data.y_test),
                          "epochs": args.epochs, "seeds": sorted({r["seed"] for r in rows}),
                          "students": {k: v.to_dict() for k, v in specs.items()},
                          "tolerance_points": TOLERANCE_POINTS,
                          "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                      "torch": torch.__version__, "threads": 1,
                                      "load_average_start": [round(v, 2) for v in load_start],
                                      "load_average_end": [round(v, 2) for v in os.getloadavg()]},
                          "wall_clock_s": round(earlier_s + time.monotonic() - started, 1), "runs": rows,
                          "summary": summarise(rows)}
                atomic_write_json(RESULTS / f"int8_delta{tag}.json", result)
                atomic_write_text(RESULTS / f"int8_delta{tag}.md", markdown(result, result["summary"]))
    print(markdown(result, result["summary"]) if result else "every run is already in the results: nothing to train")


if __name__ == "__main__":
    main()
