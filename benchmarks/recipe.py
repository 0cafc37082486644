"""Where a plain training script's points go in edgekd's trainer, one factor at a time.

The same student is trained (a) by a plain reference loop written here, the ~40-line script a
user would write (SGD momentum 0.9 Nesterov, weight decay 5e-4 on every parameter, batch 128,
``torch.optim.lr_scheduler.OneCycleLR`` to max lr 0.1, pad-4 crop + horizontal flip, every
training image, the last epoch kept; with ``--teacher`` its KD variant runs the teacher on
every batch on the same crop), and (b) by ``edgekd.distill.train_student`` with one
TrainConfig factor changed per cell: peak lr, schedule floor, validation hold-out, batch size,
augmentation, cached teacher views vs the teacher per batch, the hint stage.

The teacher of each set (a residual edgekd spec, about 10x the student's MACs) is trained once by
the reference loop on every training image, as a user's teacher would be (it has seen any
validation split carved from them), and cached in ``--work``. Runs are appended to
``--work/DATA-runs.jsonl`` (a rerun skips finished ones); the tables (mean +- std over seeds of
test top-1, balanced top-1 for imbalanced sets, CPU seconds) are rewritten after every run to
``benchmarks/results/recipe-DATA.{md,json}``.

Usage (one torch thread; through /work/bin/heavy on the shared machine):
    python benchmarks/recipe.py --data cifar10 --cells ref,ek-default,ek-lr,ek-lr-floor0,ek-new
    python benchmarks/recipe.py --data clothing96 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

#: per data set: student and teacher stages ((width, blocks, stride), ...), stem stride, epochs
SETS: dict[str, dict[str, Any]] = {
    "cifar10": {"student": ((16, 2, 1), (32, 2, 2), (64, 2, 2)),
                "teacher": ((32, 2, 1), (64, 2, 2), (128, 2, 2)),
                "stem": 2, "epochs": 10, "teacher_epochs": 15},
    "clothing96": {"student": ((8, 1, 1), (16, 1, 2), (32, 1, 2), (64, 1, 2)),
                   "teacher": ((12, 1, 1), (24, 1, 2), (48, 1, 2), (96, 1, 2)),
                   "stem": 2, "epochs": 10, "teacher_epochs": 15},
}

#: edgekd's training defaults before this benchmark, spelled out (cells must not move with TrainConfig)
OLD = {"lr": 0.05, "lr_floor": 0.01, "val_fraction": 0.1, "warmup_epochs": 1.0, "teacher_views": 0}
#: The new recipe (what the factor cells settled on) as TrainConfig overrides.
NEW = {**OLD, "lr": 0.1, "lr_floor": 0.0, "val_fraction": 0.0}
#: cell -> (trainer, method, TrainConfig overrides); "ref" cells are the plain loop
CELLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ref": ("ref", "scratch", {}),
    "ref-kd": ("ref", "kd", {}),
    # edgekd's defaults before this benchmark: lr 0.05, cosine to a 1% floor, 10% held out
    "ek-default": ("ek", "scratch", dict(OLD)),
    "ek-lr": ("ek", "scratch", {**OLD, "lr": 0.1}),                           # peak lr only
    "ek-floor0": ("ek", "scratch", {**OLD, "lr_floor": 0.0}),                 # schedule end only
    "ek-all": ("ek", "scratch", {**OLD, "val_fraction": 0.0}),                # no hold-out only
    "ek-new": ("ek", "scratch", dict(NEW)),
    "ek-new-warm30": ("ek", "scratch", {**NEW, "warmup_epochs": 3.0}),       # one-cycle's 30% warm-up
    "ek-new-lr0.2": ("ek", "scratch", {**NEW, "lr": 0.2}),
    "ek-new-b256": ("ek", "scratch", {**NEW, "lr": 0.2, "batch_size": 256}),  # linear scaling
    "ek-new-shift": ("ek", "scratch", {**NEW, "augment": "shift"}),           # weaker augmentation
    "ek-new-noaug": ("ek", "scratch", {**NEW, "augment": "none"}),
    "ek-kd-views8": ("ek", "kd", {**NEW, "teacher_views": 8}),
    "ek-kd-batch": ("ek", "kd", {**NEW, "teacher_views": 0}),
    "ek-kd-batch-warm30": ("ek", "kd", {**NEW, "teacher_views": 0, "warmup_epochs": 3.0}),  # one-cycle's warm-up
    "ek-kd-views8-old": ("ek", "kd", {**OLD, "teacher_views": 8}),
    "ek-fitnet-batch": ("ek", "fitnet", {**NEW, "teacher_views": 0, "hint_epochs": 1}),
    "ek-fitnet-views8": ("ek", "fitnet", {**NEW, "teacher_views": 8, "hint_epochs": 1}),  # compress on CPU
}


def spec_of(stages: Any, input_shape: tuple[int, ...], classes: int, family: str, stem: int) -> Any:
    from edgekd.search.space import Stage, StudentSpec

    return StudentSpec(family, tuple(input_shape), classes, tuple(Stage(*s) for s in stages), stem_stride=stem)


def balanced(pred: Any, y: Any, classes: int) -> float:
    """Mean over classes of per-class recall."""
    recalls = [float((pred[y == c] == c).float().mean()) for c in range(classes) if int((y == c).sum())]
    return sum(recalls) / len(recalls)


def evaluate(model: Any, x: Any, y: Any, classes: int) -> dict[str, float]:
    from edgekd.distill.evaluate import predict_logits

    pred = predict_logits(model, x, device="cpu").argmax(1)
    return {"test": float((pred == y).float().mean()), "test_balanced": balanced(pred, y, classes)}


def reference_loop(model: Any, x: Any, y: Any, pad_value: Any, epochs: int, seed: int,
                   teacher: Any = None, temperature: float = 4.0, alpha: float = 0.1) -> Any:
    """The plain script: SGD Nesterov + OneCycleLR(max 0.1), crop + flip, all images, last epoch;
    with a teacher: ``alpha*CE + (1-alpha)*T^2*KL`` on the same crop, teacher on every batch."""
    import torch
    import torch.nn.functional as F

    from edgekd.distill import augment

    torch.manual_seed(seed)
    aug = augment.resolve("crop-flip", tuple(x.shape[1:]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = (len(y) + 127) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for b in range(steps):
            idx = order[b * 128:(b + 1) * 128]
            xb = augment.apply(x[idx], aug, augment.sample(aug, len(idx), gen), pad_value)
            logits = model(xb)
            loss = F.cross_entropy(logits, y[idx])
            if teacher is not None:
                with torch.no_grad():
                    t = teacher(xb)
                soft = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(t / temperature, 1),
                                reduction="batchmean", log_target=True) * temperature ** 2
                loss = alpha * loss + (1 - alpha) * soft
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def load_set(name: str, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    from edgekd.inputs.data import to_tensor
    from edgekd.inputs.loaders import load_dataset

    ds = load_dataset(str(data_dir / f"{name}.npz"))
    norm = ds.normalization
    import torch

    mean, std = torch.tensor(norm.mean), torch.tensor(norm.std)
    t = {"x_train": to_tensor(ds.x_train, norm), "y_train": torch.as_tensor(ds.y_train),
         "x_test": to_tensor(ds.x_test, norm), "y_test": torch.as_tensor(ds.y_test),
         "pad": -mean / std}
    return ds, t


def get_teacher(name: str, ds: Any, t: dict[str, Any], work: Path) -> tuple[Any, dict[str, Any]]:
    """The set's teacher: trained once by the reference loop on every training image, cached."""
    import torch

    from edgekd.search.cost import spec_totals
    from edgekd.search.space import build

    cfg = SETS[name]
    spec = spec_of(cfg["teacher"], ds.input_shape, ds.num_classes, "residual", cfg["stem"])
    path, info_path = work / f"{name}-teacher.pt", work / f"{name}-teacher.json"
    model = build(spec)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), json.loads(info_path.read_text())
    start, cpu = time.monotonic(), time.process_time()
    reference_loop(model, t["x_train"], t["y_train"], t["pad"], cfg["teacher_epochs"], seed=1234)
    info = {"spec": spec.to_dict(), "macs": spec_totals(spec)[0], "epochs": cfg["teacher_epochs"],
            **evaluate(model, t["x_test"], t["y_test"], ds.num_classes),
            "wall_s": round(time.monotonic() - start, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    torch.save(model.state_dict(), path)
    info_path.write_text(json.dumps(info, indent=2))
    return model.eval(), info


def run_cell(cell: str, seed: int, name: str, ds: Any, t: dict[str, Any], teacher: Any, work: Path,
             epochs: int) -> dict[str, Any]:
    from edgekd.distill.config import TrainConfig
    from edgekd.distill.trainer import train_student
    from edgekd.search.space import build

    cfg = SETS[name]
    trainer, method, overrides = CELLS[cell]
    spec = spec_of(cfg["student"], ds.input_shape, ds.num_classes, "plain", cfg["stem"])
    start, cpu = time.monotonic(), time.process_time()
    row: dict[str, Any] = {"cell": cell, "seed": seed, "epochs": epochs}
    if trainer == "ref":
        import torch

        torch.manual_seed(seed)
        model = reference_loop(build(spec), t["x_train"], t["y_train"], t["pad"], epochs, seed,
                               teacher=teacher if method == "kd" else None)
    else:
        config = TrainConfig(**{"method": method, "epochs": epochs, "seed": seed, "augment": "crop-flip",
                                "device": "cpu", "cache_dir": str(work / "cache"), **overrides})
        result = train_student(spec, [teacher] if method != "scratch" else [], ds, config,
                               work / "runs" / name / f"{cell}-s{seed}-e{epochs}", progress=False)
        model = result.model.eval()
        row.update(val=result.val_acc, best_epoch=result.best_epoch, hint_r2=result.hint_r2,
                   hint_epochs_done=result.hint_epochs_done)
    row.update(evaluate(model, t["x_test"], t["y_test"], ds.num_classes))
    row.update(wall_s=round(time.monotonic() - start, 1), cpu_s=round(time.process_time() - cpu, 1))
    return row


def _ms(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f} (n={len(values)})"


def write_tables(name: str, rows: list[dict[str, Any]], teacher_info: dict[str, Any], meta: dict[str, Any],
                 tag: str = "") -> None:
    cells: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, int, int]] = set()
    for row in rows:
        if (row["cell"], row["seed"], row["epochs"]) in seen:  # two jobs ran the same run: keep the first
            continue
        seen.add((row["cell"], row["seed"], row["epochs"]))
        cells.setdefault(f"{row['cell']}@{row['epochs']}", []).append(row)
    summary = {key: {"test": _ms([r["test"] for r in rs]), "test_balanced": _ms([r["test_balanced"] for r in rs]),
                     "cpu_s": round(statistics.mean(r["cpu_s"] for r in rs), 1),
                     "overrides": CELLS[rs[0]["cell"]][2], "trainer": CELLS[rs[0]["cell"]][0],
                     "method": CELLS[rs[0]["cell"]][1]} for key, rs in cells.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {**meta, "teacher": teacher_info, "summary": summary, "runs": rows}
    stem = f"recipe-{name}-{tag}" if tag else f"recipe-{name}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    teacher_line = "Teacher: not trained yet (no KD cell run)." if not teacher_info else (
             f"Teacher: residual {teacher_info['macs'] / 1e6:.1f}M MACs, {teacher_info['epochs']} epochs of the "
             f"reference loop on every training image: test {100 * teacher_info['test']:.2f}% "
             f"(balanced {100 * teacher_info['test_balanced']:.2f}%), {teacher_info['cpu_s']:.0f} CPU-s.")
    lines = [f"# recipe: {name}", "", f"Command: `{meta['command']}`  ", f"Updated: {meta['updated']}  ",
             f"Machine: {meta['machine']}", "", teacher_line, "",
             f"Student: {meta['student']}", "",
             "| cell | trainer | method | changes | test top-1 % | balanced % | CPU-s/run |",
             "|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        lines.append(f"| {key} | {s['trainer']} | {s['method']} | {json.dumps(s['overrides'])} | {s['test']} "
                     f"| {s['test_balanced']} | {s['cpu_s']} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def save_teacher(args: argparse.Namespace, ds: Any, t: dict[str, Any]) -> None:
    """The set's teacher as a self-describing edgekd checkpoint (spec, classes, normalisation)."""
    from edgekd.core.checkpoint import save_student
    from edgekd.search.space import StudentSpec

    teacher, info = get_teacher(args.data, ds, t, args.work)
    save_student(args.save_teacher, teacher, spec=StudentSpec.from_dict(info["spec"]), classes=list(ds.classes),
                 input_shape=ds.input_shape, normalization=ds.normalization, method="scratch",
                 metrics={"test_acc": info["test"]}, extra={"recipe": f"benchmarks/recipe.py, {info['epochs']} epochs"})
    print(f"{args.save_teacher}: test {100 * info['test']:.2f}%, {info['macs'] / 1e6:.1f}M MACs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(SETS), required=True)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cells", default="ref,ek-default,ek-new")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekd-recipe"))
    parser.add_argument("--tag", default="", help="results go to recipe-DATA-TAG.{md,json} (a second teacher's table)")
    parser.add_argument("--save-teacher", type=Path, default=None,
                        help="write the set's teacher (trained if need be) as an edgekd checkpoint here and stop "
                             "(for cifar_compress.py --teacher)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds; stop before a new run after it")
    args = parser.parse_args()
    import torch

    from edgekd.search.cost import spec_totals

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    ds, t = load_set(args.data, args.data_dir)
    if args.teacher_epochs:
        SETS[args.data]["teacher_epochs"] = args.teacher_epochs
    teacher, teacher_info = None, {}
    if (args.work / f"{args.data}-teacher.json").is_file():  # for the table; trained at the first KD cell
        teacher, teacher_info = get_teacher(args.data, ds, t, args.work)
    if args.save_teacher:
        save_teacher(args, ds, t)
        return
    cfg = SETS[args.data]
    epochs = args.epochs or cfg["epochs"]
    student = spec_of(cfg["student"], ds.input_shape, ds.num_classes, "plain", cfg["stem"])
    log = args.work / f"{args.data}-runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    meta = {"command": "python benchmarks/recipe.py " + " ".join(sys.argv[1:]).replace(str(args.data_dir), "../shared/data"),
            "updated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread, 2-core host shared with other jobs (load in the results text)",
            "student": f"plain, stem stride {cfg['stem']}, stages {cfg['student']}, "
                       f"{spec_totals(student)[0] / 1e6:.2f}M MACs"}
    if teacher_info:
        meta["student"] += f" ({teacher_info['macs'] / spec_totals(student)[0]:.1f}x fewer than the teacher)"
    for seed in args.seeds:  # seed-major: a time limit leaves whole seeds of every cell
        for cell in args.cells.split(","):
            if any(r["cell"] == cell and r["seed"] == seed and r["epochs"] == epochs for r in rows):
                continue
            if args.time_limit and time.monotonic() - began > args.time_limit:
                print("time limit reached", flush=True)
                write_tables(args.data, rows, teacher_info, meta, args.tag)
                return
            if teacher is None and CELLS[cell][1] != "scratch":
                teacher, teacher_info = get_teacher(args.data, ds, t, args.work)
                meta["student"] += f" ({teacher_info['macs'] / spec_totals(student)[0]:.1f}x fewer than the teacher)"
            row = run_cell(cell, seed, args.data, ds, t, teacher, args.work, epochs)
            print(json.dumps(row), flush=True)
            rows.append(row)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            rows = [json.loads(line) for line in log.read_text().splitlines()]  # other jobs' runs too
            write_tables(args.data, rows, teacher_info, meta, args.tag)
    write_tables(args.data, rows, teacher_info, meta, args.tag)


if __name__ == "__main__":
    main()
