"""How far the default report's speed-up repeats: the host measurement of one finished run,
redone several times.

1. ``edgekd compress --out RUN`` (the embedded default job) once, unless RUN is finished already.
2. ``--repeats`` times: remove RUN/measurements/host-*.json and run ``edgekd compress --resume
   --out RUN``, which trains nothing (every trial is finished) and measures teacher and students
   again the way compress does (one ``python -m deploy bench`` call, 5 rounds interleaved, one
   thread), then rebuilds the report. Each repeat's teacher and winner latency, speed-up and
   its range over the rounds are read from report/summary.json.
3. For contrast, the protocol compress used before: teacher and winner each measured alone
   (``python -m deploy bench MODEL --iters 500 --warmup 50``, ONNX Runtime's default threads),
   the same number of times; speed-up = teacher median / winner median.

Usage:
    python benchmarks/latency_repeat.py --out ../runs/latency-repeat [--repeats 5]

Writes benchmarks/results/latency_repeat.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks/results"


def edgekd(*args: str) -> float:
    """Run ``python -m edgekd ARGS`` (output to our stderr); its wall-clock seconds."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "edgekd", *args], check=True, stdout=sys.stderr)
    return time.monotonic() - start


def interleaved(run: Path) -> dict:
    """One repeat of compress's own host measurement; the figures its report shows."""
    for path in (run / "measurements").glob("host-*.json"):
        path.unlink()
    seconds = edgekd("compress", "--resume", "--out", str(run), "--no-progress")
    summary = json.loads((run / "report" / "summary.json").read_text())
    winner = next(s for s in summary["students"] if s["trial"] == summary["winner"])
    return {"teacher_ms": summary["teacher"]["latency"]["host"]["ms"],
            "winner_ms": winner["latency"]["host"]["ms"], "speedup": winner["speedup"]["host"],
            "spread": winner["speedup_spread"]["host"], "seconds": round(seconds, 1),
            "load_1min": os.getloadavg()[0]}


def alone(run: Path, winner: str) -> dict:
    """One repeat of the former protocol: each model measured alone, default threads."""
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("teacher", winner):
            out = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, "-m", "deploy", "bench", str(run / "export" / f"{name}.onnx"),
                            "--iters", "500", "--warmup", "50", "--out", str(out)], check=True,
                           stdout=subprocess.DEVNULL, cwd=REPO)
            medians[name] = json.loads(out.read_text())["latency_ms"]["median"]
    return {"teacher_ms": medians["teacher"], "winner_ms": medians[winner],
            "speedup": round(medians["teacher"] / medians[winner], 2), "load_1min": os.getloadavg()[0]}


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f}x, range {min(values):.2f}-{max(values):.2f}x "
            f"(max/min {max(values) / min(values):.2f})")


def markdown(result: dict) -> str:
    rows = ["| repeat | protocol | teacher ms | winner ms | speed-up | its range over the rounds | load (1 min) |",
            "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(result["interleaved"], 1):
        s = r["spread"]
        rows.append(f"| {i} | interleaved (compress now) | {r['teacher_ms']:.4f} | {r['winner_ms']:.4f} | "
                    f"{r['speedup']:.2f}x | {s['low']:.2f}-{s['high']:.2f}x over {s['rounds']} | {r['load_1min']:.1f} |")
    for i, r in enumerate(result["alone"], 1):
        rows.append(f"| {i} | each alone (before) | {r['teacher_ms']:.4f} | {r['winner_ms']:.4f} | "
                    f"{r['speedup']:.2f}x | - | {r['load_1min']:.1f} |")
    m = result["machine"]
    return "\n".join([
        "# latency_repeat: how far the default report's speed-up repeats", "",
        f"Date {result['date']}. Command: `{result['command']}`. Run: the embedded default job "
        f"(`edgekd compress`), winner `{result['winner']}`. Machine: {m['platform']}, "
        f"{m['cpu_count']} cores, {m['note']}; load average at start {m['load_at_start']}. "
        f"Wall-clock {result['wall_s']:.0f} s (compress {result['compress_s']:.0f} s of it).", "",
        *rows, "",
        f"- Interleaved (what compress does now): speed-up {spread([r['speedup'] for r in result['interleaved']])}.",
        f"- Each model alone (what compress did before): speed-up {spread([r['speedup'] for r in result['alone']])}.",
        "", result["reading"], ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the run folder (made when absent)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started, load = time.monotonic(), os.getloadavg()
    compress_s = 0.0
    if not (args.out / "report" / "summary.json").exists():
        compress_s = edgekd("compress", "--out", str(args.out), "--no-progress")
    winner = json.loads((args.out / "report" / "summary.json").read_text())["winner"]
    result = {"command": "python benchmarks/latency_repeat.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "winner": winner,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "load_at_start": [round(v, 1) for v in load],
                          "note": "shared with other jobs (run through /work/bin/heavy: one slot, 1 thread)"},
              "compress_s": round(compress_s, 1), "interleaved": [], "alone": []}
    for _ in range(args.repeats):  # alternate, so both protocols meet the same load
        result["interleaved"].append(interleaved(args.out))
        result["alone"].append(alone(args.out, winner))
    result["wall_s"] = round(time.monotonic() - started, 1)
    ours = [r["speedup"] for r in result["interleaved"]]
    theirs = [r["speedup"] for r in result["alone"]]
    result["reading"] = (
        f"Over {args.repeats} repeats the interleaved speed-up varied by a factor of "
        f"{max(ours) / min(ours):.2f} (max/min), measuring each model alone by {max(theirs) / min(theirs):.2f}.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency_repeat.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latency_repeat.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
