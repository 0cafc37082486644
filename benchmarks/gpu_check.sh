#!/usr/bin/env bash
# The GPU check, in one command, on a machine with an NVIDIA GPU and only this checkout (plus
# ../shared/data/cifar10.npz and ../shared/data/clothing96.npz). Sized for under 8 minutes on one H100:
#
#   1. install: `pip install --no-deps -e .` (offline; the machine's torch with CUDA is used), else
#      the source tree through PYTHONPATH; records nvidia-smi, torch, CUDA, ONNX Runtime;
#   2. the test suite with `pytest -n` (pytest-xdist, the dev extra), CUDA visible, 240 s at most;
#   3. `edgekd compress` training on CUDA (AMP is on by default there, the teacher on the GPU and run
#      on every batch: --teacher-views 0) on cifar10.npz and on clothing96.npz, 90 s budget each;
#   4. writes the figures between the gpu_check markers of benchmarks/results/gpu.md and the raw
#      record to benchmarks/results/gpu_check.json.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${EDGEKD_DATA:-$ROOT/../shared/data}
WORK=$(mktemp -d /tmp/edgekd-gpu-check.XXXXXX)
LOG=$WORK/log
STARTED=$(date +%s)
step() { echo "[gpu_check $(( $(date +%s) - STARTED ))s] $*" | tee -a "$LOG"; }

step "install"
if pip install --no-deps --no-build-isolation -q -e . >>"$LOG" 2>&1; then INSTALL="pip install --no-deps -e ."
else INSTALL="PYTHONPATH (pip install failed, see the log)"; export PYTHONPATH=$ROOT; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$WORK/gpu.txt" 2>&1 || true
python - >"$WORK/versions.json" <<'EOF'
import json, platform
import torch
try:
    import onnxruntime as ort; ort_v = ort.__version__
except ImportError:
    ort_v = None
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cuda_available": torch.cuda.is_available(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "onnxruntime": ort_v}))
EOF

step "test suite (pytest -n, 240 s)"
PARALLEL=""; PER_TEST=""  # pytest-xdist and pytest-timeout come with the dev extra, if installed
if python -c "import xdist" 2>/dev/null; then PARALLEL="-n 12"; fi
if python -c "import pytest_timeout" 2>/dev/null; then PER_TEST="--timeout 120"; fi
timeout 240 python -m pytest -q -p no:cacheprovider $PARALLEL $PER_TEST >"$WORK/pytest.txt" 2>&1
PYTEST_RC=$?
step "pytest exit $PYTEST_RC: $(tail -1 "$WORK/pytest.txt")"

compress() {  # name data extra-args...
  local name=$1 data=$2; shift 2
  step "compress $name on CUDA"
  local t0=$(date +%s)
  timeout 150 python -m edgekd compress --device cuda --data "$data" --teacher-views 0 --candidates 4 \
      --epochs 6 --finalists 1 --no-bundle --no-progress --out "$WORK/run-$name" "$@" >"$WORK/$name.txt" 2>&1
  echo "$name $? $(( $(date +%s) - t0 ))" >>"$WORK/compress.txt"
  step "compress $name exit $(tail -1 "$WORK/compress.txt" | cut -d' ' -f2)"
}
compress cifar10 "$DATA/cifar10.npz" --max-macs 16M
compress clothing96 "$DATA/clothing96.npz" --max-macs 60M

step "writing benchmarks/results/gpu.md"
python - "$WORK" "$INSTALL" "$PYTEST_RC" "$(( $(date +%s) - STARTED ))" <<'EOF'
import json, sys, time
from pathlib import Path
work, install, pytest_rc, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
versions = json.loads((work / "versions.json").read_text() or "{}")
runs = []
for line in (work / "compress.txt").read_text().splitlines():
    name, rc, wall = line.split()
    summary = work / f"run-{name}" / "report" / "summary.json"
    best = {}
    if summary.is_file():
        data = json.loads(summary.read_text())
        winner = next((s for s in data.get("students", []) if s.get("trial") == data.get("winner")), {})
        best = {"id": winner.get("trial", "-"), "test_acc": winner.get("test_acc", "-"),
                "teacher_acc": data.get("teacher", {}).get("test_acc", "-")}
    tail = (work / f"{name}.txt").read_text().strip().splitlines()[-1:] or [""]
    runs.append({"data": name, "exit": int(rc), "wall_s": int(wall), "best": best, "last_line": tail[0][:200]})
record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gpu": (work / "gpu.txt").read_text().strip(),
          "versions": versions, "install": install, "pytest_exit": pytest_rc,
          "pytest_last_line": ((work / "pytest.txt").read_text().strip().splitlines() or [""])[-1],
          "compress": runs, "wall_clock_s": seconds}
Path("benchmarks/results/gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
rows = "\n".join(f"| `edgekd compress` on {r['data']} (CUDA, AMP, teacher per batch) | exit {r['exit']}, "
                 f"{r['wall_s']} s; winner {r['best'].get('id', '-')} top-1 {r['best'].get('test_acc', '-')} "
                 f"(teacher {r['best'].get('teacher_acc', '-')}) |"
                 for r in runs)
section = f"""<!-- gpu_check:begin -->
## benchmarks/gpu_check.sh: run {record['date']}

Machine: {record['gpu']}; torch {versions.get('torch')} (CUDA {versions.get('cuda')}), ONNX Runtime
{versions.get('onnxruntime')}; installed with {install}. Wall-clock {seconds} s.

| what | result |
|---|---|
| test suite (`pytest -n`, 240 s limit) | exit {pytest_rc}: {record['pytest_last_line']} |
{rows}

Raw record: `benchmarks/results/gpu_check.json`.
<!-- gpu_check:end -->"""
gpu_md = Path("benchmarks/results/gpu.md")
text = gpu_md.read_text()
begin, end = text.index("<!-- gpu_check:begin -->"), text.index("<!-- gpu_check:end -->") + len("<!-- gpu_check:end -->")
gpu_md.write_text(text[:begin] + section + text[end:])
EOF
step "done: benchmarks/results/gpu.md, log in $LOG"
