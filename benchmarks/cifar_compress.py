"""``edgekd compress`` on CIFAR-10 at 1/10 of the teacher's MACs, as a user would run it.

1. The teacher: benchmarks/cifar_teacher.py's recipe (a residual network trained by edgekd with
   crop + flip, cached in WORK/teacher-cifar10/), or ``--teacher CHECKPOINT``.
2. ``edgekd compress --data ../shared/data/cifar10.npz --teacher CKPT --max-macs MACS/10
   --baselines --device DEVICE`` (default epochs from the data size, crop + flip, selection
   rungs with kd and depth groups, fitnet for the finalists), as a subprocess.
3. The report's numbers: teacher and winner accuracy, the gap, MACs, measured host speed-up,
   which method won, the depths per rung; written to benchmarks/results/cifar_compress[-TAG].json
   and .md with the command, the machine and the wall-clock.

Usage:
    python benchmarks/cifar_compress.py --device cuda --workers 16        # the GPU run
    nice -n 10 python benchmarks/cifar_compress.py --quick --tag cpu-quick  # CPU smoke (minutes)

``--quick`` cuts data, teacher and search to a smoke test: it proves the pipeline, not the aim.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
AIM_POINTS = 2.0


def teacher_record(args: argparse.Namespace) -> dict[str, Any]:
    """The teacher checkpoint and its recorded recipe/accuracy/MACs (cifar_teacher.py)."""
    if args.teacher:
        from edgekd.inputs.data import load_dataset
        from edgekd.inputs.teachers import load_teacher
        from edgekd.search.cost import module_cost

        data = load_dataset(str(args.data_dir / "cifar10.npz"))
        model = load_teacher(str(args.teacher), dataset=data)
        return {"checkpoint": str(args.teacher), "macs": module_cost(model, data.input_shape).macs,
                "recipe": "given with --teacher"}
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import cifar_teacher
    except ImportError:
        raise SystemExit("error: benchmarks/cifar_teacher.py is missing: pass --teacher CHECKPOINT") from None
    return cifar_teacher.ensure_teacher("cifar10", args.work, data_dir=args.data_dir, device=args.device,
                                        epochs=args.teacher_epochs, quick=args.quick)


def data_file(args: argparse.Namespace) -> Path:
    """The CIFAR npz compress reads (``--quick``: the same 3,000/1,000-image cut as the teacher)."""
    path = args.data_dir / "cifar10.npz"
    if not args.quick:
        return path
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    import cifar_teacher

    ds = cifar_teacher.load_data("cifar10", args.data_dir, quick=True)
    out = args.work / "cifar10-quick.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
             classes=np.array(ds.classes))
    return out


def compress_command(args: argparse.Namespace, teacher: dict[str, Any], data: Path, out: Path) -> list[str]:
    budget = int(teacher["macs"]) // 10
    cmd = [sys.executable, "-m", "edgekd", "compress", "--data", str(data), "--teacher",
           str(teacher["checkpoint"]), "--max-macs", str(budget), "--baselines", "--device", args.device,
           "--out", str(out), "--no-progress", "--no-bundle", "--seed", str(args.seed)]
    if args.workers:
        cmd += ["--threads-per-trial", str(args.workers)]
    if args.quick:
        cmd += ["--candidates", "3", "--epochs", "3", "--measure-iters", "50"]
    return cmd + list(args.extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (trials and teacher)")
    parser.add_argument("--workers", type=int, default=None, help="torch threads per trial")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--teacher", type=Path, default=None, help="use this teacher checkpoint")
    parser.add_argument("--teacher-epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: small data, teacher and search")
    parser.add_argument("--tag", default="")
    parser.add_argument("extra", nargs="*", help="more compress options (after --)")
    args = parser.parse_args()
    started = time.monotonic()
    teacher = teacher_record(args)
    data = data_file(args)
    out = args.work / f"cifar-compress{'-' + args.tag if args.tag else ''}"
    cmd = compress_command(args, teacher, data, out)
    print("running:", " ".join(cmd), flush=True)
    mark = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    compress_s = time.monotonic() - mark
    if proc.returncode != 0:
        raise SystemExit(f"error: compress exited with {proc.returncode}")
    result = collect(out, teacher, cmd, compress_s, time.monotonic() - started, args)
    tag = f"-{args.tag}" if args.tag else ""
    from edgekd.core.fileio import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / f"cifar_compress{tag}.json", result)
    atomic_write_text(RESULTS / f"cifar_compress{tag}.md", markdown(result))
    print(markdown(result))


def collect(out: Path, teacher: dict[str, Any], cmd: list[str], compress_s: float, total_s: float,
            args: argparse.Namespace) -> dict[str, Any]:
    summary = json.loads((out / "report" / "summary.json").read_text())
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    t_acc = summary["teacher"]["test_acc"]
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "command": " ".join(["python", "benchmarks/cifar_compress.py", *sys.argv[1:]]),
        "compress_command": " ".join(["edgekd", *cmd[3:]]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpu": gpu,
                    "torch": torch.__version__, "python": platform.python_version()},
        "quick": args.quick,
        "teacher": {k: v for k, v in teacher.items() if k != "model"},
        "teacher_test_acc": t_acc, "teacher_macs": summary["teacher"]["macs"],
        "winner": {"trial": winner["trial"], "method": winner["method"], "depth": winner["depth"],
                   "macs": winner["macs"], "test_acc": winner["test_acc"],
                   "speedup_host": winner["speedup"]["host"]},
        "gap_points": round(100 * (t_acc - winner["test_acc"]), 2),
        "aim_points": AIM_POINTS,
        "ablation": summary.get("ablation"),
        "rung_depths": summary["search"].get("rung_depths"),
        "winner_method": summary["search"].get("winner_method"),
        "config": summary["run"]["config"],
        "compress_wall_clock_s": round(compress_s, 1), "total_wall_clock_s": round(total_s, 1),
    }


def markdown(r: dict[str, Any]) -> str:
    w, m = r["winner"], r["machine"]
    met = "met" if r["gap_points"] <= r["aim_points"] else "MISSED"
    lines = ["# edgekd compress on CIFAR-10 at 1/10 of the teacher's MACs", "",
             f"Command: `{r['command']}`, which ran `{r['compress_command']}`.", "",
             f"Machine: {m['platform']}, {m['cpu_count']} CPUs, GPU {m['gpu'] or 'none'}, torch {m['torch']}. "
             f"compress wall-clock {r['compress_wall_clock_s']} s (total with the teacher "
             f"{r['total_wall_clock_s']} s)." + (" **Quick smoke run: small data, not a result.**" if r["quick"] else ""),
             "",
             f"Teacher: {r['teacher'].get('recipe', '')} — test acc {100 * r['teacher_test_acc']:.2f}%, "
             f"{r['teacher_macs'] / 1e6:.1f}M MACs.", "",
             f"Winner: `{w['trial']}` ({w['method']}, depth {w['depth']}), {w['macs'] / 1e6:.2f}M MACs, "
             f"test acc {100 * w['test_acc']:.2f}%, measured host speed-up {w['speedup_host']:.2f}x. "
             f"Gap to the teacher: **{r['gap_points']:.2f} points** (aim <= {r['aim_points']}: {met}).", "",
             f"Depths per rung: {r['rung_depths']}; winning method (by validation): {r['winner_method']}.", ""]
    if r.get("ablation"):
        lines += ["| method | trial | epochs | val acc | test acc |", "|---|---|---|---|---|"]
        lines += [f"| {a['method']} | {a['trial']} | {a['epochs']} | {100 * a['val_acc']:.2f}% | "
                  f"{100 * a['test_acc']:.2f}% |" for a in r["ablation"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
