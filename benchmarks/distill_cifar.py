"""The distillation study of issue 12: does FitNets' hint stage earn its place?

(a) teachers: ``benchmarks/cifar_teacher.py`` (a wide residual network on CIFAR-10, a residual
    CNN on MNIST; cached; loadable with ``--teacher``).
(b) main table on CIFAR-10 at ~1/10 of the teacher's MACs (a thin, deep plain student):
    scratch, kd, dkd, lskd, fitnet (+kd), fitnet-dkd, fitnet-lskd, ``--seeds`` seeds each.
    ``budget=E``: every method trains ``E`` epochs on labels/logits (fitnet's hint stage of at
    most ``H`` epochs comes on top); ``budget=E+H``: scratch/kd/dkd/lskd get the ``H`` extra
    epochs instead, the equal-wall-clock comparison (a hint epoch costs about a KD epoch: the
    measured seconds are in the table).
(c) depth study at ~1/50 of the teacher's MACs: plain and residual students of depth 3..19
    (widths fitted to the budget), scratch vs kd vs fitnet.
(d) MNIST: a converged, augmented MNIST teacher; main table at ~1/50 of its MACs.

Every student is trained by ``edgekd.distill.train_student`` in its own folder under
``--work`` (a rerun reuses finished ones); independent runs go to ``--workers`` processes
(multiprocessing spawn, each with its own seed and torch thread budget). Results: JSON +
Markdown in ``--out`` (default benchmarks/results), rewritten after every run.

Usage:
    python benchmarks/distill_cifar.py --device cuda --workers 12           # the GPU study
    nice -n 10 python benchmarks/distill_cifar.py --quick --workers 2      # CPU smoke (minutes)
    python benchmarks/distill_cifar.py --parts main --seeds 1 --epochs 4 --hint-epochs 1 --tag cpu
    # the CPU MNIST study (benchmarks/results/distill_cifar-cpu.md; teacher: cifar_teacher.py --data mnist --cpu)
    python benchmarks/distill_cifar.py --parts mnist --device cpu --workers 1 --threads 1 \
        --mnist-teacher WORK/teacher-mnist-cpu/checkpoint.pt --mnist-fractions 10,50 \
        --mnist-methods scratch,kd,dkd,fitnet-dkd,fitnet-dkd+multi,fitnet-dkd+joint \
        --mnist-small-methods scratch,kd,fitnet-dkd --mnist-train-size 10000 --mnist-epochs 6 \
        --mnist-hint-epochs 2 --mnist-augment none --tag cpu --time-limit 3600
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cifar_teacher  # noqa: E402
from distill_study import fit_width, init_worker, markdown_tables, run_job, summarize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAIN_METHODS = ("scratch", "kd", "dkd", "lskd", "fitnet", "fitnet-dkd", "fitnet-lskd")
DEPTH_METHODS = ("scratch", "kd", "fitnet")
DEPTHS = (3, 5, 7, 9, 11, 15, 19)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--workers", type=int, default=1, help="parallel training processes")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench")
    p.add_argument("--data-dir", type=Path, default=cifar_teacher.DEFAULT_DATA_DIR)
    p.add_argument("--quick", action="store_true", help="tiny data, teacher and schedule (smoke test)")
    p.add_argument("--parts", default="main,depth,mnist", help="comma list of main, depth, mnist")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20, help="KD epochs of the main table (MNIST: half)")
    p.add_argument("--hint-epochs", type=int, default=4, help="hint budget (on top of --epochs)")
    p.add_argument("--depth-epochs", type=int, default=10)
    p.add_argument("--depth-hint-epochs", type=int, default=3)
    p.add_argument("--depths", default=",".join(map(str, DEPTHS)))
    p.add_argument("--families", default="plain,residual", help="student families of the depth study")
    p.add_argument("--main-methods", default=",".join(MAIN_METHODS), help="methods of the CIFAR-10 main table")
    p.add_argument("--time-methods", default="scratch,kd,dkd,lskd",
                   help="main-table methods that also get an equal-wall-clock arm (E+H epochs)")
    p.add_argument("--depth-methods", default=",".join(DEPTH_METHODS), help="methods of the depth study")
    p.add_argument("--teacher-views", type=int, default=0,
                   help="CIFAR-10 runs: 0 runs the teacher on every augmented batch; K > 0 serves K "
                        "augmented views per image whose teacher logits are computed once per seed and "
                        "shared by every run of that seed (the CPU schedule: a teacher pass costs ~6 "
                        "student epochs there)")
    p.add_argument("--teacher-epochs", type=int, default=60)
    p.add_argument("--mnist-teacher-epochs", type=int, default=10)
    p.add_argument("--cifar-teacher", type=Path, default=None,
                   help="use this edgekd checkpoint as the CIFAR-10 teacher instead of training one")
    p.add_argument("--mnist-teacher", type=Path, default=None, help="same for MNIST")
    p.add_argument("--cifar-train-size", type=int, default=None, help="CIFAR students' training images [all]")
    p.add_argument("--mnist-train-size", type=int, default=20000, help="MNIST students' training images")
    p.add_argument("--mnist-fractions", default="50",
                   help="MNIST student budgets as fractions of the teacher's MACs, e.g. 10,50 (the "
                        "smallest fraction gets --mnist-methods, the others --mnist-small-methods)")
    p.add_argument("--mnist-methods", default="scratch,kd,lskd,fitnet,fitnet-lskd",
                   help="methods of the MNIST main table (METHOD+multi / METHOD+joint: a hint mode)")
    p.add_argument("--mnist-small-methods", default="scratch,kd,fitnet",
                   help="methods at the other MNIST fractions")
    p.add_argument("--mnist-time-methods", default="",
                   help="MNIST main-table methods that also get an equal-wall-clock arm (E+H epochs)")
    p.add_argument("--mnist-depth", type=int, default=7)
    p.add_argument("--mnist-epochs", type=int, default=None, help="MNIST KD epochs [--epochs / 2]")
    p.add_argument("--mnist-hint-epochs", type=int, default=None, help="MNIST hint budget [--hint-epochs]")
    p.add_argument("--mnist-augment", default="shift", help="MNIST students' augmentation (none: "
                   "the teacher's logits are cached once instead of a teacher pass per batch)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker [the CPU count / --workers]")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--main-family", default="plain")
    p.add_argument("--main-depth", type=int, default=9)
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. cpu)")
    p.add_argument("--note", default="", help="a paragraph printed at the top of the Markdown (schedule, caveats)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in this --tag's JSON (same settings) and train only the "
                        "missing ones, e.g. those a --time-limit cancelled (give a fresh --work)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds after which runs not yet started are cancelled (results so far are kept)")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.hint_epochs, args.depth_epochs, args.depth_hint_epochs, args.seeds = 2, 1, 1, 1, 1
        args.teacher_epochs, args.mnist_teacher_epochs, args.depths = 3, 1, "3,11"
        args.mnist_train_size, args.tag = 3000, args.tag or "quick"
    return args


def student_config(args: argparse.Namespace, method: str, epochs: int, seed: int, augment: str,
                   hint_epochs: int | None = None, teacher_views: int = 0) -> dict[str, Any]:
    """The TrainConfig of one run. ``method`` may carry a hint mode, ``fitnet-dkd+multi`` or
    ``fitnet-dkd+joint`` (``--hint-mode``), and method options after ``@`` separated by ``;``,
    ``lskd@lskd.kd=0.9`` or ``dkd@label_smoothing=0.1`` (``--method-opt``); ``epochs`` are KD
    epochs: the trainer adds fitnet's hint stage (at most ``hint_epochs``) on top of them."""
    from edgekd.distill.methods import OPTION_FIELDS

    hint = args.hint_epochs if hint_epochs is None else hint_epochs
    method, _, opts = method.partition("@")
    options = {k: float(v) for k, _, v in (o.partition("=") for o in opts.split(";") if o)}
    name, _, mode = method.partition("+")
    config = {"method": name, "epochs": epochs, "hint_epochs": hint,
              "seed": seed, "batch_size": args.batch_size, "lr": args.lr, "optimizer": "sgd",
              "augment": augment, "device": args.device}
    if mode:
        config["hint_mode"] = mode
    config.update({OPTION_FIELDS[k]: options.pop(k) for k in list(options) if k in OPTION_FIELDS})
    if options:
        config["method_options"] = options
    if teacher_views and name != "scratch":
        config["teacher_views"] = teacher_views
    return config


def plan(args: argparse.Namespace, teachers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every job of the parts asked for, longest first."""
    parts, jobs = set(args.parts.split(",")), []

    def add(key: str, data: str, spec: Any, macs: int, config: dict[str, Any], train_size: int | None = None) -> None:
        jobs.append({"key": key, "data": data, "data_dir": str(args.data_dir), "quick": args.quick,
                     "train_size": train_size, "spec": spec.to_dict(), "macs": macs, "config": config,
                     "teacher": teachers[data]["checkpoint"], "folder": str(args.work / "students" / key)})

    seeds = range(args.seeds)
    if "main" in parts:  # seed-major: a time limit leaves every method with its first seeds
        t = teachers["cifar10"]
        spec, macs = fit_width(args.main_family, args.main_depth, t["macs"] / 10, (3, 32, 32))
        for seed in seeds:
            for method in args.main_methods.split(","):
                budgets = [("E", args.epochs)]
                if method in args.time_methods.split(","):
                    budgets.append(("E+H", args.epochs + args.hint_epochs))
                for label, epochs in budgets:
                    add(f"cifar10/main/{method}/{label}/{seed}", "cifar10", spec, macs,
                        student_config(args, method, epochs, seed, "crop-flip", None, args.teacher_views),
                        args.cifar_train_size)
    if "mnist" in parts:
        t = teachers["mnist"]
        fractions = [int(f) for f in args.mnist_fractions.split(",")]
        epochs = args.mnist_epochs or (args.epochs // 2 or 1)
        hint = args.hint_epochs if args.mnist_hint_epochs is None else args.mnist_hint_epochs
        for seed in seeds:  # seed-major: a time limit leaves every method with its first seeds
            for fraction in fractions:
                spec, macs = fit_width("plain", args.mnist_depth, t["macs"] / fraction, (1, 28, 28))
                main = fraction == min(fractions)
                for method in (args.mnist_methods if main else args.mnist_small_methods).split(","):
                    budgets = [("E", epochs)]
                    if main and method in args.mnist_time_methods.split(","):
                        budgets.append(("E+H", epochs + hint))  # the equal-wall-clock arm
                    for label, kd_epochs in budgets:
                        add(f"mnist/main-1of{fraction}/{method}/{label}/{seed}", "mnist", spec, macs,
                            student_config(args, method, kd_epochs, seed, args.mnist_augment, hint),
                            args.mnist_train_size)
    if "depth" in parts:
        t = teachers["cifar10"]
        for seed in seeds:
            for family in args.families.split(","):
                for depth in (int(d) for d in args.depths.split(",")):
                    spec, macs = fit_width(family, depth, t["macs"] / 50, (3, 32, 32))
                    for method in args.depth_methods.split(","):
                        add(f"cifar10/depth/{family}/{depth}/{method}/{seed}", "cifar10", spec, macs,
                            student_config(args, method, args.depth_epochs, seed, "crop-flip",
                                           args.depth_hint_epochs, args.teacher_views), args.cifar_train_size)
    return jobs


def machine(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "device": args.device, "workers": args.workers,
            "loadavg_at_start": os.getloadavg(), "threads_per_worker": args.threads}


class Results:
    """The results file (JSON + Markdown), rewritten after every finished run."""

    def __init__(self, args: argparse.Namespace, teachers: dict[str, Any]) -> None:
        stem = "distill_cifar" + (f"-{args.tag}" if args.tag else "")
        self.json, self.md = args.out / f"{stem}.json", args.out / f"{stem}.md"
        self.data = {"command": "python " + " ".join(sys.argv), "machine": machine(args),
                     "settings": {k: str(v) for k, v in vars(args).items()}, "teachers": teachers,
                     "runs": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.started = time.monotonic()
        self.earlier_s = 0.0  # wall-clock of the calls this one resumes

    def resume(self) -> None:
        """Take over the runs (and wall-clock) of an earlier call with the same tag."""
        if not self.json.is_file():
            return
        earlier = json.loads(self.json.read_text())
        self.data["runs"] = earlier.get("runs", {})
        self.earlier_s = float(earlier.get("wall_clock_s", 0.0))
        self.data["resumed"] = earlier.get("resumed", []) + [
            {"command": earlier.get("command"), "runs": len(self.data["runs"]),
             "wall_clock_s": self.earlier_s, "machine": earlier.get("machine")}]

    def add(self, run: dict[str, Any]) -> None:
        self.data["runs"][run["key"]] = run
        self.save()

    def save(self) -> None:
        from edgekd.core.fileio import atomic_write_json, atomic_write_text

        self.data["wall_clock_s"] = round(self.earlier_s + time.monotonic() - self.started, 1)
        self.data["summary"] = summarize(self.data["runs"])
        self.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.json, self.data)
        head = [f"# Distillation study (issue 12){' — ' + self.data['settings']['tag'] if self.data['settings']['tag'] else ''}",
                "", *([f"> {self.data['settings']['note']}", ""] if self.data["settings"].get("note") else []),
                f"Command: `{self.data['command']}`  ",
                f"Machine: `{json.dumps(self.data['machine'])}`  ",
                f"Wall-clock so far: {self.data['wall_clock_s']:.0f} s for {len(self.data['runs'])} runs "
                "(teachers included when trained in this call).", ""]
        atomic_write_text(self.md, "\n".join(head + markdown_tables(self.data["summary"], self.data["teachers"])))


def main() -> None:
    args = parse_args()
    start = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    teachers: dict[str, Any] = {}
    needed = {"cifar10": bool(parts & {"main", "depth"}), "mnist": "mnist" in parts}
    for data, epochs in (("cifar10", args.teacher_epochs), ("mnist", args.mnist_teacher_epochs)):
        given = args.cifar_teacher if data == "cifar10" else args.mnist_teacher
        if needed[data] and given is not None:
            teachers[data] = cifar_teacher.record_from_checkpoint(data, given)
        elif needed[data]:
            teachers[data] = cifar_teacher.ensure_teacher(data, args.work, data_dir=args.data_dir,
                                                          device=args.device, epochs=epochs, quick=args.quick)
            cifar_teacher.write_record(teachers[data], args.out)
        if needed[data]:
            print(f"teacher {data}: {100 * teachers[data]['test_acc']:.2f}% "
                  f"({teachers[data]['train_seconds']:.0f} s)", flush=True)
    results = Results(args, teachers)
    jobs = plan(args, teachers)
    if args.resume:
        results.resume()
        jobs = [job for job in jobs if job["key"] not in results.data["runs"]]
    print(f"{len(jobs)} runs on {args.workers} worker(s)", flush=True)
    if args.teacher_views:
        from distill_study import prefetch_views

        firsts = {}  # one job per (data, seed) that uses the views
        for job in jobs:
            if job["config"].get("teacher_views"):
                firsts.setdefault((job["data"], job["config"]["seed"]), job)
        for (data, seed), job in sorted(firsts.items()):
            began = time.monotonic()
            prefetch_views(job)
            print(f"teacher views {data} seed {seed}: {time.monotonic() - began:.0f} s", flush=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.workers))
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(args.workers, mp_context=context, initializer=init_worker,
                                     initargs=(threads, str(REPO))) as pool:
        pending = {pool.submit(run_job, job): job["key"] for job in jobs}
        for done in futures.as_completed(pending):
            if args.time_limit and time.monotonic() - start > args.time_limit:
                cancelled = sum(f.cancel() for f in pending)
                if cancelled:
                    print(f"time limit: {cancelled} runs cancelled", flush=True)
                    results.data["cancelled_runs"] = results.data.get("cancelled_runs", 0) + cancelled
            if done.cancelled():
                continue
            try:
                run = done.result()
            except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
                print(f"FAILED {pending[done]}: {error!r}", flush=True)
                continue
            results.add(run)
            print(f"{run['key']}: {100 * run['test_acc']:.2f}% ({run['seconds']:.0f} s)", flush=True)
    results.data["total_seconds_with_teachers"] = round(time.monotonic() - start, 1)
    results.data["machine"]["loadavg_at_end"] = os.getloadavg()
    results.save()
    print(f"wrote {results.json} and {results.md} ({results.data['wall_clock_s']:.0f} s)")


if __name__ == "__main__":
    main()
