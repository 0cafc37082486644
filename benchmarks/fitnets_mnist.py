"""FitNets on MNIST: the shape of Romero et al. 2015's MNIST table, and their depth study.

Part 1 (main table): a CNN teacher of about 0.36M parameters; a thin, deep plain student
with at most 10% of the teacher's MACs, trained with ``scratch``, ``kd`` and ``fitnet`` for
the same total number of epochs (fitnet: ``hint_epochs`` of them are its hint stage), over
several seeds; mean and std of test error. (Paper: teacher 0.55%, student with ~8% of the
parameters: back-prop 1.90%, KD 0.65%, FitNet 0.51%.)

Part 2 (depth study): at one fixed, tight MAC budget (about 1/50 of the teacher's MACs:
MNIST at 1/8 is saturated, see DESIGN.md) plain stacks of depth 3, 5, 7, 9, 11, 13 (widths
chosen so every student costs about the same MACs), scratch vs kd vs fitnet.

Part 3: the time of one KD epoch with cached teacher outputs against one scratch epoch,
same student, same run (median of repeats).

Everything goes through ``edgekd.distill.train_student`` (the teacher itself is trained
with method ``scratch``). Data: a fixed random 20,000-image subset of the MNIST training set
(seed 0; 10% of it held out for validation/selection) and the full 10,000-image test set,
so the whole script fits in about 40 minutes on 2 shared CPU cores. Results are written
after every run (``benchmarks/results/fitnets_mnist.json`` + ``.md``); trial folders live
in ``--work`` and a rerun resumes from them (finished runs are not retrained).

Usage:
    python benchmarks/fitnets_mnist.py            # the full run (~25-45 min on 2 shared cores)
    python benchmarks/fitnets_mnist.py --quick    # smoke run (~2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgekd.inputs.data import make_dataset
from edgekd.distill import TrainConfig, train_student
from edgekd.core.fileio import atomic_write_json, atomic_write_text, read_json
from edgekd.search.space import Stage, StudentSpec, build

REPO = Path(__file__).resolve().parents[1]
MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist.npz"
RESULTS = REPO / "benchmarks/results"
METHODS = ("scratch", "kd", "fitnet")


class TeacherNet(nn.Module):
    """The benchmark teacher: 4 conv layers (32, 32, 64, 64) + a 96-unit hidden FC layer,
    about 0.37M parameters and 13M MACs at 28x28."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(block(1, 32), block(32, 32), nn.MaxPool2d(2), block(32, 64),
                                      nn.MaxPool2d(2), block(64, 64))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 96), nn.ReLU(),
                                        nn.Linear(96, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def macs_params(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """MACs (torch.utils.flop_counter FLOPs / 2) and parameters at batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was)
    return counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters())


def plain_spec(depth: int, width: int, width2: int | None = None) -> StudentSpec:
    """A plain stack of ``depth`` convs: stage 1 at 14x14 (stride-2 stem) with ``width``
    channels, stage 2 at 7x7 with ``width2`` (default twice as many); stage 2 gets
    ``depth // 2`` layers."""
    second = depth // 2
    return StudentSpec("plain", (1, 28, 28), 10,
                       (Stage(width, depth - second, 2), Stage(width2 or 2 * width, second, 2)))


def widths_for_budget(depth: int, budget: int) -> tuple[int, int, int]:
    """The costliest plain stack of ``depth`` layers within ``budget`` MACs, over widths
    ``w1 <= w2 <= 2*w1``: (w1, w2, MACs)."""
    best = (1, 2, 0)
    for w1 in range(1, 64):
        if macs_params(build(plain_spec(depth, w1, w1)), (1, 28, 28))[0] > budget:
            break
        for w2 in range(w1, 2 * w1 + 1):
            macs = macs_params(build(plain_spec(depth, w1, w2)), (1, 28, 28))[0]
            if macs > budget:
                break
            if macs > best[2]:
                best = (w1, w2, macs)
    return best


def load_mnist(train_size: int) -> Any:
    if not MNIST.exists():
        sys.exit(f"error: {MNIST} not found (this benchmark reads ../shared/data/mnist.npz)")
    with np.load(MNIST) as d:
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
        classes = [str(c) for c in d["classes"]]
    idx = np.sort(np.random.default_rng(0).permutation(len(y_train))[:train_size])
    return make_dataset(name=f"mnist-{train_size}", source=str(MNIST), x_train=x_train[idx],
                        y_train=y_train[idx], x_test=x_test, y_test=y_test, classes=classes)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_at_start": load,
            "note": "shared 2-core machine: other engineers' jobs ran at the same time; timings are noisy"}


class Recorder:
    """Holds the results dict and rewrites JSON + Markdown after every run."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.data = read_json(path) if path.exists() else {}
        if self.data.get("settings") != header["settings"]:
            self.data = {}
        self.data.update(header)
        self.data.setdefault("runs", {})

    def get(self, key: str) -> dict[str, Any] | None:
        return self.data["runs"].get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data["runs"][key] = value
        self.save()

    def save(self) -> None:
        self.data["summary"] = summarize(self.data)
        atomic_write_json(self.path, self.data)
        atomic_write_text(self.path.with_suffix(".md"), markdown(self.data))


def _err(run: dict[str, Any]) -> float:
    return 100.0 * (1.0 - run["test_acc"])


def _mean_std(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    runs = data["runs"]
    out: dict[str, Any] = {}
    if "teacher" in runs:
        out["teacher_error_pct"] = _err(runs["teacher"])
    main = {}
    for method in METHODS:
        errs = [_err(r) for k, r in runs.items() if k.startswith(f"main/{method}/")]
        if errs:
            main[method] = _mean_std(errs)
    out["main"] = main
    depth: dict[str, dict[str, Any]] = {}
    for key, run in runs.items():
        if key.startswith("depth/"):
            _, d, method, _seed = key.split("/")
            depth.setdefault(d, {}).setdefault(method, []).append(_err(run))
    out["depth"] = {d: {m: _mean_std(v) for m, v in ms.items()} for d, ms in depth.items()}
    if "timing" in runs:
        out["timing"] = runs["timing"]
    if main.get("kd") and main.get("scratch") and main.get("fitnet"):
        out["aims"] = {
            "student_at_or_below_teacher": min(v["mean"] for v in main.values()) <= out.get("teacher_error_pct", -1),
            "fitnet_at_or_below_kd": main["fitnet"]["mean"] <= main["kd"]["mean"],
            "kd_below_scratch": main["kd"]["mean"] < main["scratch"]["mean"],
        }
        if "timing" in runs:
            out["aims"]["kd_epoch_at_most_1.1x_scratch"] = runs["timing"]["ratio_kd_over_scratch"] <= 1.1
    return out


def markdown(data: dict[str, Any]) -> str:
    s, st = data["summary"], data["settings"]
    lines = ["# FitNets on MNIST (edgekd)", "",
             f"Command: `{data.get('command', '')}`  ", f"Machine: {json.dumps(data['machine'])}  ",
             f"Settings: {json.dumps(st)}", ""]
    info = data.get("models", {})
    if "teacher_error_pct" in s:
        t = info.get("teacher", {})
        lines += [f"Teacher: {t.get('params', '?')} params, {t.get('macs', '?')} MACs, "
                  f"test error **{s['teacher_error_pct']:.2f}%**", ""]
    if s.get("main"):
        m = info.get("main_student", {})
        lines += [f"## Main table: student {m.get('describe', '')}, {m.get('params', '?')} params "
                  f"({m.get('params_pct', 0):.1f}% of the teacher), {m.get('macs', '?')} MACs "
                  f"({m.get('macs_pct', 0):.1f}%)", "",
                  "| method | test error % (mean ± std) | seeds | values |", "|---|---|---|---|"]
        for method, v in s["main"].items():
            lines.append(f"| {method} | {v['mean']:.2f} ± {v['std']:.2f} | {v['n']} | "
                         f"{', '.join(f'{x:.2f}' for x in v['values'])} |")
        lines.append("")
    if s.get("depth"):
        lines += [f"## Depth study at ~{st['depth_budget_macs']} MACs "
                  f"({100 * st['depth_budget_macs'] / max(info.get('teacher', {}).get('macs', 1), 1):.1f}% of the teacher)",
                  "", "| depth | width | MACs | params | scratch | kd | fitnet |", "|---|---|---|---|---|---|---|"]
        for d in sorted(s["depth"], key=int):
            ds = info.get("depth_students", {}).get(d, {})
            cells = []
            for method in METHODS:
                v = s["depth"][d].get(method)
                cells.append(f"{v['mean']:.2f} ± {v['std']:.2f} (n={v['n']})" if v else "-")
            lines.append(f"| {d} | {ds.get('width', '?')} | {ds.get('macs', '?')} | {ds.get('params', '?')} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if s.get("timing"):
        t = s["timing"]
        lines += ["## Epoch time, same student, cached teacher outputs", "",
                  f"scratch epoch {t['scratch_s']:.2f} s, KD epoch {t['kd_s']:.2f} s "
                  f"(median of {t['repeats']}), ratio **{t['ratio_kd_over_scratch']:.3f}** "
                  f"(ratio of the fastest repeats: {t.get('ratio_of_minima', float('nan')):.3f}); all: {t['all']}", ""]
    if data.get("notes"):
        lines += ["## Notes", ""] + [f"- {n if isinstance(n, str) else json.dumps(n)}" for n in data["notes"]] + [""]
    if s.get("aims"):
        lines += ["## Aims", ""] + [f"- {k}: {'yes' if v else 'NO'}" for k, v in s["aims"].items()] + [""]
    lines += ["Errors are test-set errors (%) of the weights selected by validation accuracy. "
              "The machine was shared with other jobs during the run: times are noisy.", ""]
    return "\n".join(lines)


def run_one(rec: Recorder, key: str, student: Any, teachers: list[nn.Module], ds: Any,
            cfg: TrainConfig, work: Path, fps: list[str]) -> dict[str, Any]:
    done = rec.get(key)
    if done is not None:
        return done
    t0 = time.monotonic()
    result = train_student(student, teachers, ds, cfg, work / key, teacher_fps=fps, progress=False)
    entry = {k: v for k, v in result.to_dict().items() if k not in ("config", "checkpoint")}
    entry["wall_s"] = round(time.monotonic() - t0, 2)
    rec.put(key, entry)
    print(f"{key:28s} test error {_err(entry):5.2f}%  val {entry['val_acc']}  {entry['wall_s']:.0f}s", flush=True)
    return entry


def epoch_timing(student: StudentSpec, teacher: nn.Module, ds: Any, base: TrainConfig, work: Path,
                 fps: list[str], repeats: int) -> dict[str, Any]:
    """One epoch of scratch vs one epoch of KD (teacher logits from the on-disk cache,
    warmed beforehand), alternating, median of ``repeats``."""
    from edgekd.core.fileio import read_jsonl

    times: dict[str, list[float]] = {"scratch": [], "kd": []}
    for r in range(repeats):
        for method in ("scratch", "kd") if r % 2 == 0 else ("kd", "scratch"):
            folder = work / f"timing/{method}-{r}"
            cfg = TrainConfig(**{**base.to_dict(), "method": method, "epochs": 1, "seed": 100 + r})
            train_student(student, [teacher], ds, cfg, folder, teacher_fps=fps, progress=False)
            times[method].append(float(read_jsonl(folder / "metrics.jsonl")[-1]["seconds"]))
    scratch, kd = statistics.median(times["scratch"]), statistics.median(times["kd"])
    return {"scratch_s": scratch, "kd_s": kd, "ratio_kd_over_scratch": kd / scratch,
            "ratio_of_minima": min(times["kd"]) / min(times["scratch"]),
            "repeats": repeats, "all": times,
            "note": "per-epoch seconds from metrics.jsonl (training pass + validation pass)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (~2 min)")
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10, help="total epochs per student run")
    parser.add_argument("--hint-epochs", type=int, default=2)
    parser.add_argument("--depth-epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--depth-seeds", type=int, default=1)
    parser.add_argument("--depths", default="3,5,7,9,11,13")
    parser.add_argument("--depth-budget", type=int, default=263_000,
                        help="MACs of each depth-study student (default: 1/50 of the teacher)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekd-fitnets-mnist"))
    parser.add_argument("--out", type=Path, default=RESULTS / "fitnets_mnist.json")
    args = parser.parse_args()
    if args.quick:
        args.train_size, args.teacher_epochs, args.epochs, args.hint_epochs = 3000, 1, 2, 1
        args.depth_epochs, args.seeds, args.depths = 2, 1, "3,7"
        args.out = args.out.with_name(args.out.stem + "_quick.json")
        args.work = args.work.with_name(args.work.name + "-quick")
    # One thread: on the shared 2-core machine, 2 threads were 4-10x SLOWER per step than 1
    # (thread contention with other jobs; measured 2026-11-24, load average ~5).
    torch.set_num_threads(1)
    started = time.monotonic()
    ds = load_mnist(args.train_size)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("work", "out")}
    settings["depth_budget_macs"] = args.depth_budget
    rec = Recorder(args.out, {"settings": settings, "machine": machine(),
                              "command": "python benchmarks/fitnets_mnist.py" + (" --quick" if args.quick else ""),
                              "data": {"train_subset": args.train_size, "test": int(len(ds.y_test)),
                                       "subset_seed": 0, "val_fraction": 0.1}})
    work = args.work
    shape = tuple(ds.input_shape)

    # --- teacher ---------------------------------------------------------------------------
    torch.manual_seed(0)
    teacher_net = TeacherNet()
    t_macs, t_params = macs_params(teacher_net, shape)
    teacher_cfg = TrainConfig(method="scratch", epochs=args.teacher_epochs, optimizer="sgd", lr=0.05,
                              seed=0, cache_dir=str(work / "cache"))
    run_one(rec, "teacher", teacher_net, [], ds, teacher_cfg, work, [])
    teacher = TeacherNet()
    teacher.load_state_dict(torch.load(work / "teacher/checkpoint.pt", weights_only=True)["state_dict"])
    teacher.eval()
    from edgekd.core.fileio import sha256_file

    fps = [sha256_file(work / "teacher/checkpoint.pt")]
    models: dict[str, Any] = {"teacher": {"params": t_params, "macs": t_macs}}

    # --- main table ------------------------------------------------------------------------
    main_spec = StudentSpec("plain", shape, 10, (Stage(6, 2, 1), Stage(10, 3, 2), Stage(20, 3, 2)))
    s_macs, s_params = macs_params(build(main_spec), shape)
    models["main_student"] = {"spec": main_spec.to_dict(), "describe": main_spec.describe(),
                              "macs": s_macs, "params": s_params,
                              "macs_pct": 100 * s_macs / t_macs, "params_pct": 100 * s_params / t_params}
    depths = [int(d) for d in args.depths.split(",")]
    models["depth_students"] = {}
    for d in depths:
        w1, w2, macs = widths_for_budget(d, args.depth_budget)
        spec = plain_spec(d, w1, w2)
        models["depth_students"][str(d)] = {"width": f"{w1}/{w2}", "macs": macs, "spec": spec.to_dict(),
                                            "params": macs_params(build(spec), shape)[1]}
    rec.data["models"] = models
    rec.save()
    print(f"teacher {t_params} params {t_macs} MACs; main student {main_spec.describe()} {s_params} params "
          f"{s_macs} MACs ({100 * s_macs / t_macs:.1f}%)", flush=True)

    base = TrainConfig(method="kd", epochs=args.epochs, hint_epochs=args.hint_epochs, temperature=4.0,
                       alpha=0.1, optimizer="sgd", lr=0.05, batch_size=128, cache_dir=str(work / "cache"))

    # --- epoch timing (early: it is short and wants the cache warm) -------------------------
    if rec.get("timing") is None:
        from edgekd.inputs.logits import teacher_logits

        teacher_logits(teacher, ds.x_train, ds.normalization, cache_dir=work / "cache", teacher_fp=fps[0])
        rec.put("timing", epoch_timing(main_spec, teacher, ds, base, work, fps, repeats=1 if args.quick else 3))
        print("timing", rec.get("timing"), flush=True)

    for seed in range(args.seeds):
        for method in METHODS:
            cfg = TrainConfig(**{**base.to_dict(), "method": method, "seed": seed})
            run_one(rec, f"main/{method}/{seed}", main_spec, [teacher], ds, cfg, work, fps)

    # --- depth study -------------------------------------------------------------------------
    for seed in range(args.depth_seeds):
        for d in depths:
            spec = StudentSpec.from_dict(models["depth_students"][str(d)]["spec"])
            for method in METHODS:
                cfg = TrainConfig(**{**base.to_dict(), "method": method, "seed": seed,
                                     "epochs": args.depth_epochs})
                run_one(rec, f"depth/{d}/{method}/{seed}", spec, [teacher], ds, cfg, work, fps)

    rec.data["total_wall_s"] = round(time.monotonic() - started, 1)
    rec.save()
    print(markdown(rec.data))


if __name__ == "__main__":
    main()
