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
    nice -n 10 python benchmarks/cifar_compress.py --device cpu --workers 1 --tag cpu \
        --teacher T.pt --teacher-record benchmarks/results/teacher-cifar10-gpu-preview.json \
        --time-limit 5400 -- --method fitnet-dkd --epochs 12   # a given teacher, stopped in time

``--time-limit`` (or SIGTERM / Ctrl-C) stops compress and still writes the results: the
trials finished so far (``"partial": true``), read from the run folder. Results never hold
absolute paths: the data folder is written ``../shared/data``, ``--work`` ``<scratch>``, and
the teacher ``--teacher-label``.

``--quick`` cuts data, teacher and search to a smoke test: it proves the pipeline, not the aim.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
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
        from edgekd.inputs.loaders import load_dataset
        from edgekd.inputs.teachers import load_teacher
        from edgekd.search.cost import module_cost

        if args.teacher_record:  # the recipe, accuracy and MACs recorded where it was trained
            record = json.loads(args.teacher_record.read_text())
            return {**{k: record[k] for k in ("describe", "macs", "params", "recipe", "test_acc",
                                                "wall_clock_s", "best_epoch") if k in record},
                    "checkpoint": str(args.teacher),
                    "record": args.teacher_record.resolve().relative_to(REPO).as_posix()}
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
           str(teacher["checkpoint"]), "--max-macs", str(budget), *([] if args.no_baselines else ["--baselines"]),
           "--device", args.device, "--out", str(out), "--no-progress", "--no-bundle", "--seed", str(args.seed)]
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
    parser.add_argument("--teacher-record", type=Path, default=None,
                        help="JSON of the --teacher's recipe/test_acc/macs (cifar_teacher.py's record)")
    parser.add_argument("--teacher-label", default=None,
                        help="how the results name --teacher (default: its path, scratch-relative)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="stop compress after this many seconds and write the partial results")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip compress --baselines (kd and scratch on the winner's architecture): "
                             "extra seeds of the gap only")
    parser.add_argument("--tag", default="")
    parser.add_argument("extra", nargs="*", help="more compress options (after --)")
    args = parser.parse_args()
    started = time.monotonic()
    load_start = os.getloadavg()
    teacher = teacher_record(args)
    data = data_file(args)
    out = args.work / f"cifar-compress{'-' + args.tag if args.tag else ''}"
    cmd = compress_command(args, teacher, data, out)
    print("running:", " ".join(cmd), flush=True)
    mark = time.monotonic()
    returncode, stopped = run_compress(cmd, args.time_limit)
    compress_s = time.monotonic() - mark
    partial = not (out / "report" / "summary.json").is_file()
    if returncode != 0 and not (stopped and (out / "halving.jsonl").is_file()):
        raise SystemExit(f"error: compress exited with {returncode}")
    result = (collect_partial if partial else collect)(out, teacher, cmd, compress_s,
                                                      time.monotonic() - started, args)
    result["load_average"] = {"start": [round(v, 2) for v in load_start],
                              "end": [round(v, 2) for v in os.getloadavg()]}
    result["stopped"] = stopped
    result = scrub(result, args)
    tag = f"-{args.tag}" if args.tag else ""
    from edgekd.core.fileio import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / f"cifar_compress{tag}.json", result)
    atomic_write_text(RESULTS / f"cifar_compress{tag}.md", markdown(result))
    print(markdown(result))


def run_compress(cmd: list[str], time_limit: float | None) -> tuple[int, str | None]:
    """Run compress; on ``time_limit``, SIGTERM or Ctrl-C stop it (SIGINT, SIGTERM after 60 s,
    SIGKILL 30 s later: the run folder survives a kill) and say why: (exit status, None or the reason it was stopped)."""
    # a background job of a non-interactive shell starts with SIGINT ignored, and an ignored
    # signal stays ignored across exec: give both processes Python's Ctrl-C back first
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    reason: list[str] = []

    def on_term(signum: int, frame: Any) -> None:
        reason.append(f"signal {signum}")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        reason.append(f"time limit {time_limit:.0f} s")
    except KeyboardInterrupt:
        reason.append(reason.pop() if reason else "interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous)
        for stop, grace in ((signal.SIGINT, 60), (signal.SIGTERM, 30), (signal.SIGKILL, None)):
            if proc.poll() is not None:
                break
            proc.send_signal(stop)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
    return proc.returncode, (reason[0] if reason else None)


def scrub(value: Any, args: argparse.Namespace) -> Any:
    """``value`` with this machine's paths replaced: the teacher by ``--teacher-label``, the
    data folder by ../shared/data, ``--work`` by <scratch>, the repository by ``.``."""
    pairs = []
    if args.teacher:
        pairs.append((str(args.teacher), args.teacher_label or str(args.teacher)))
    pairs += [(str(args.data_dir.resolve()), "../shared/data"), (str(args.data_dir), "../shared/data"),
              (str(args.work.resolve()), "<scratch>"), (str(args.work), "<scratch>"), (str(REPO), "."),
              (sys.executable, "python")]
    if isinstance(value, dict):
        return {k: scrub(v, args) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, args) for v in value]
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
    return value


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
        "teacher_bias": summary["search"].get("teacher_bias"),  # where selection happened (run.selection)
        "arm_scores": summary["search"].get("arm_scores"),
        "config": summary["run"]["config"],
        "compress_wall_clock_s": round(compress_s, 1), "total_wall_clock_s": round(total_s, 1),
    }


def collect_partial(out: Path, teacher: dict[str, Any], cmd: list[str], compress_s: float,
                    total_s: float, args: argparse.Namespace) -> dict[str, Any]:
    """What a stopped run has: the teacher's test accuracy and every finished (rung, trial)
    from halving.jsonl, the best by validation accuracy standing in for the winner."""
    from edgekd.search.space import StudentSpec

    def lines(path: Path) -> list[dict]:
        rows = []
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line torn by the stop
        return rows

    depth = {c["id"]: StudentSpec.from_dict(c["spec"]).depth for c in lines(out / "candidates.jsonl")}
    teacher_json = out / "teacher.json"
    t_acc = json.loads(teacher_json.read_text()).get("test_acc") if teacher_json.is_file() else None
    t_acc = teacher.get("test_acc") if t_acc is None else t_acc
    trials = []
    for rec in lines(out / "halving.jsonl"):
        res = rec.get("result", {})
        metrics = res.get("metrics", {}) if isinstance(res.get("metrics"), dict) else {}
        base = rec["trial"].split("-")[0]
        trials.append({"rung": rec["rung"], "trial": rec["trial"], "epochs": rec["epochs"],
                       "method": res.get("method") or res.get("config", {}).get("method"),
                       "depth": depth.get(base), "macs": res.get("macs") or metrics.get("macs"),
                       "val_acc": res.get("val_acc", metrics.get("val_acc")),
                       "test_acc": res.get("test_acc", metrics.get("test_acc"))})
    scored = [t for t in trials if t["val_acc"] is not None and t["test_acc"] is not None]
    best = max(scored, key=lambda t: (t["epochs"], t["val_acc"]), default=None)
    import torch

    return {
        "command": " ".join(["python", "benchmarks/cifar_compress.py", *sys.argv[1:]]),
        "compress_command": " ".join(["edgekd", *cmd[3:]]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpu": None,
                    "torch": torch.__version__, "python": platform.python_version()},
        "quick": args.quick, "partial": True,
        "teacher": {k: v for k, v in teacher.items() if k != "model"},
        "teacher_test_acc": t_acc, "teacher_macs": teacher.get("macs"),
        "best_so_far": best, "trials": trials,
        "gap_points": (round(100 * (t_acc - best["test_acc"]), 2) if best and t_acc is not None else None),
        "aim_points": AIM_POINTS,
        "rung_depths": [sorted(t["depth"] for t in trials if t["rung"] == r and t["depth"] is not None)
                        for r in sorted({t["rung"] for t in trials if t["rung"] >= 0})],
        "compress_wall_clock_s": round(compress_s, 1), "total_wall_clock_s": round(total_s, 1),
    }


def _header(r: dict[str, Any]) -> list[str]:
    m, t = r["machine"], r["teacher"]
    load = r.get("load_average")
    recipe = t.get("recipe", "")
    if isinstance(recipe, dict):
        keys = ("epochs", "optimizer", "lr", "weight_decay", "batch_size", "augment", "warmup_epochs",
                "lr_floor", "label_smoothing", "device")
        recipe = ", ".join(f"{k}={recipe[k]}" for k in keys if k in recipe)
    lines = ["# edgekd compress on CIFAR-10 at 1/10 of the teacher's MACs", "",
             f"Command: `{r['command']}`, which ran `{r['compress_command']}`.", "",
             f"Machine: {m['platform']}, {m['cpu_count']} CPUs, GPU {m['gpu'] or 'none'}, torch {m['torch']}. "
             f"compress wall-clock {r['compress_wall_clock_s']} s (total with the teacher "
             f"{r['total_wall_clock_s']} s)." + (" **Quick smoke run: small data, not a result.**" if r["quick"] else "")]
    if load:
        lines[-1] += f" Load average (1/5/15 min) at the start {load['start']}, at the end {load['end']}."
    if r.get("stopped"):
        lines[-1] += f" **Stopped ({r['stopped']}): partial results.**"
    t_acc = r["teacher_test_acc"]
    lines += ["", f"Teacher: `{t.get('checkpoint')}`" + (f" ({t['describe']})" if t.get("describe") else "")
              + f", recipe: {recipe}" + (f" (recorded in {t['record']})" if t.get("record") else "")
              + (f" — test acc {100 * t_acc:.2f}%" if t_acc is not None else "")
              + (f", {r['teacher_macs'] / 1e6:.1f}M MACs." if r.get("teacher_macs") else "."), ""]
    return lines


def markdown(r: dict[str, Any]) -> str:
    if r.get("partial"):
        return markdown_partial(r)
    return _markdown_full(r)


def markdown_partial(r: dict[str, Any]) -> str:
    lines = _header(r)
    best = r.get("best_so_far")
    if best:
        gap = r["gap_points"]
        met = "met" if gap is not None and gap <= r["aim_points"] else "MISSED"
        lines += [f"Best finished trial so far (longest-trained, then by validation): `{best['trial']}` "
                  f"({best['method']}, depth {best['depth']}, {best['epochs']} epochs), test acc "
                  f"{100 * best['test_acc']:.2f}%. Gap to the teacher: **{gap} points** "
                  f"(aim <= {r['aim_points']}: {met}; no final report, the run was stopped).", ""]
    lines += [f"Depths per selection rung: {r['rung_depths']}.", "",
              "| rung | trial | method | depth | epochs | val acc | test acc |", "|---|---|---|---|---|---|---|"]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines += [f"| {t['rung']} | {t['trial']} | {t['method']} | {t['depth']} | {t['epochs']} | "
              f"{pct(t['val_acc'])} | {pct(t['test_acc'])} |" for t in r["trials"]]
    return "\n".join(lines) + "\n"


def _markdown_full(r: dict[str, Any]) -> str:
    w = r["winner"]
    met = "met" if r["gap_points"] <= r["aim_points"] else "MISSED"
    lines = _header(r) + [
             f"Winner: `{w['trial']}` ({w['method']}, depth {w['depth']}), {w['macs'] / 1e6:.2f}M MACs, "
             f"test acc {100 * w['test_acc']:.2f}%, measured host speed-up {w['speedup_host']:.2f}x. "
             f"Gap to the teacher: **{r['gap_points']:.2f} points** (aim <= {r['aim_points']}: {met}).", "",
             f"Depths per rung: {r['rung_depths']}; winning method (by validation): {r['winner_method']}.", ""]
    if (carved := (r.get("teacher_bias") or {}).get("carved")):
        bias = r["teacher_bias"]
        lines += [f"The teacher scored {100 * bias['val']:.2f}% on the validation split held out of its training "
                  f"images and {100 * bias['test']:.2f}% on the test images, so compress selected on "
                  f"{carved['selection']} test images (a seeded half) and every test figure here is on the other "
                  f"{carved['report']}.", ""]
    if r.get("ablation"):
        lines += ["| method | trial | epochs | val acc | test acc |", "|---|---|---|---|---|"]
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731  (a retrained arm has no validation)
        lines += [f"| {a['method']}{', retrained on train + val' if a.get('retrained') else ''} | {a['trial']} | "
                  f"{a['epochs']} | {pct(a['val_acc'])} | {pct(a['test_acc'])} |" for a in r["ablation"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
